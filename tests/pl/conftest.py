"""Tiny, seeded inputs for the plotting tests, and the stored-image comparison helper."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anndata as ad
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control

BASELINE_DIR = Path(__file__).parent / "baseline"
#: Set MADSPATIAL_REGEN_BASELINES=1 to (re)write the stored images instead of comparing.
REGEN = os.environ.get("MADSPATIAL_REGEN_BASELINES", "") not in ("", "0")
IMAGE_TOL = 15.0  # RMS on 0-255: passes font/antialiasing jitter, fails a changed plot
IMAGE_DPI = 60


@pytest.fixture(autouse=True)
def _plot_style():
    """Every plot test starts from matplotlib's defaults and closes its figures."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        plt.style.use("default")
        matplotlib.rcParams["font.family"] = "DejaVu Sans"  # shipped with matplotlib
        yield
    plt.close("all")


@pytest.fixture
def check_image(tmp_path):
    """``check_image(fig, name)``: compare a figure with tests/pl/baseline/<name>.png."""
    from matplotlib.testing.compare import compare_images

    def _check(fig, name: str, tol: float = IMAGE_TOL) -> None:
        actual = tmp_path / f"{name}.png"
        fig.savefig(actual, dpi=IMAGE_DPI)
        expected = BASELINE_DIR / f"{name}.png"
        if REGEN:
            BASELINE_DIR.mkdir(exist_ok=True)
            shutil.copyfile(actual, expected)
            return
        if not expected.is_file():
            pytest.fail(
                f"no stored image {expected}; generate it with "
                "MADSPATIAL_REGEN_BASELINES=1 pytest tests/pl and check it by eye"
            )
        err = compare_images(str(expected), str(actual), tol=tol)
        assert err is None, err

    return _check


# --------------------------------------------------------------------------- data


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def embedded_adata():
    """90 cells in three well-separated groups of a 12-d embedding."""
    rng = np.random.default_rng(1)
    n_per, k = 30, 3
    centers = rng.normal(scale=6.0, size=(k, 12))
    emb = np.concatenate([centers[i] + rng.normal(size=(n_per, 12)) for i in range(k)])
    truth = np.repeat(["T", "B", "epi"], n_per)
    clusters = np.repeat(["0", "1", "2"], n_per)
    clusters[:5] = "1"  # a few mistakes, so the ARI is high but not 1
    a = ad.AnnData(
        np.zeros((k * n_per, 2), dtype=np.float32),
        obs=pd.DataFrame(
            {
                "cell_type": pd.Categorical(truth),
                "mad_louvain": pd.Categorical(clusters),
                "score": rng.normal(size=k * n_per),
            },
            index=[f"c{i}" for i in range(k * n_per)],
        ),
    )
    a.obsm["X_mad"] = emb.astype(np.float32)
    a.obsm["X_mad_morphology"] = emb[:, :6].astype(np.float32)
    return a


@pytest.fixture
def spatial_adata():
    """150 cells on a grid with raw counts of three genes and a noisy prediction."""
    rng = np.random.default_rng(2)
    n = 150
    xy = np.stack([rng.uniform(0, 300, n), rng.uniform(0, 200, n)], axis=1)
    # gene A rises left to right, gene B top to bottom, gene C is noise
    lam = np.stack([1 + 8 * xy[:, 0] / 300, 1 + 8 * xy[:, 1] / 200, np.full(n, 3.0)], axis=1)
    counts = rng.poisson(lam).astype(np.float32)
    counts = np.concatenate([counts, rng.poisson(20, size=(n, 2)).astype(np.float32)], axis=1)
    counts[0, 3] = 40  # a count above the log range, so .X reads as raw counts
    genes = ["EPCAM", "CD3E", "MKI67", "ACTB", "GAPDH"]
    a = ad.AnnData(
        counts, var=pd.DataFrame(index=genes), obs=pd.DataFrame(index=map(str, range(n)))
    )
    a.obsm["spatial"] = xy
    a.layers["counts"] = counts.copy()
    totals = counts.sum(1, keepdims=True)
    logn = np.log1p(counts / totals * 1e4)  # the decoders' target scale
    a.layers["mad_pred"] = (logn + rng.normal(scale=0.3, size=logn.shape)).astype(np.float32)
    return a


@pytest.fixture
def de_table():
    rng = np.random.default_rng(3)
    n = 300
    lfc = rng.normal(scale=1.0, size=n)
    lfc[:12] = rng.choice([-1, 1], 12) * rng.uniform(1.5, 4, 12)
    p = rng.uniform(size=n)
    p[:12] = 10.0 ** -rng.uniform(4, 12, 12)
    p[12:20] = 10.0 ** -rng.uniform(3, 6, 8)  # significant but small fold change
    fdr = false_discovery_control(p)
    genes = [f"GENE{i}" for i in range(n)]
    return pd.DataFrame(
        {"gene": genes, "log2FC": lfc, "pvalue": p, "fdr": fdr, "score": lfc * -np.log10(p)}
    )


@pytest.fixture
def pearson_table():
    rng = np.random.default_rng(4)
    n = 30
    mad = np.clip(rng.beta(4, 3, n), 0, 1)
    return pd.DataFrame(
        {
            "X_mad": mad,
            "X_mad_morphology": mad - rng.uniform(-0.1, 0.25, n),
            "X_mad_microenvironment": mad - rng.uniform(-0.05, 0.2, n),
            "pixel_pca": mad * 0.5 + rng.normal(scale=0.05, size=n),
        },
        index=pd.Index([f"G{i}" for i in range(n)], name="gene"),
    )


@pytest.fixture
def enrich_table():
    terms = [
        "T cell receptor signaling",
        "Epithelial cell differentiation",
        "Cell cycle G2/M checkpoint with a deliberately long name that must be shortened",
        "Interferon gamma response",
        "Hypoxia",
        "Ribosome",
    ]
    fdr = [1e-6, 3e-4, 2e-3, 0.03, 0.2, 0.6]
    return pd.DataFrame(
        {
            "term": terms,
            "overlap": ["12/40", "9/55", "6/30", "4/25", "3/60", "1/80"],
            "pvalue": np.array(fdr) / 3,
            "fdr": fdr,
            "genes": ["A;B"] * 6,
        }
    )


@pytest.fixture
def evaluate_table():
    rng = np.random.default_rng(5)
    rows = []
    base = {"X_mad": 0.7, "X_mad_morphology": 0.55, "X_mad_microenvironment": 0.6, "pixel_pca": 0.3}
    for metric, scale in (("ARI", 1.0), ("kNN accuracy", 1.2), ("gene Pearson", 0.6)):
        for rep, b in base.items():
            for seed in (0, 1):
                v = b * scale + rng.normal(scale=0.02)
                rows.append(
                    {
                        "rep": rep,
                        "metric": metric,
                        "seed": seed,
                        "value": v,
                        "ci_low": v - 0.05,
                        "ci_high": v + 0.04,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def history():
    """A history dict shaped like train._history.History.to_dict()."""
    steps = np.arange(60)
    k = 256
    return {
        "step": steps.tolist(),
        "epoch": (steps // 20).tolist(),
        "loss": (np.log(k) * (0.6 + 0.4 * np.exp(-steps / 15)) + 0.05 * np.sin(steps)).tolist(),
        "lr": np.minimum(steps / 10, 1.0).tolist(),
        "teacher_temp": np.linspace(0.04, 0.07, 60).tolist(),
        "teacher_entropy": np.linspace(5.0, 3.0, 60).tolist(),
        "teacher_batch_entropy": np.linspace(5.4, 5.0, 60).tolist(),
        "eval_step": [0, 20, 40, 59],
        "recall@1": [0.02, 0.1, 0.2, 0.3],
        "recall@5": [0.08, 0.3, 0.5, 0.6],
        "n_prototypes": k,
        "ln_k": float(np.log(k)),
        "recall_chance": {"recall@1": 1 / 64, "recall@5": 5 / 64},
        "collapsed": False,
    }


class FakeViewStore:
    """The ViewStore surface pl.cell_views uses: batch, instance_id, channel_names, len."""

    def __init__(self, n: int = 6, c: int = 2, hm: int = 14, he: int = 28, seed: int = 0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:hm, :hm]
        disc = (yy - hm / 2) ** 2 + (xx - hm / 2) ** 2 < (hm / 3) ** 2
        self.morphology = np.zeros((n, c, hm, hm), dtype=np.uint8)
        self.morphology[:, 0][:, disc] = 200
        self.morphology[:, 1] = rng.integers(0, 120, size=(n, hm, hm)) * disc
        self.microenvironment = rng.integers(0, 255, size=(n, c, he, he)).astype(np.uint8)
        self.instance_id = np.arange(101, 101 + n, dtype=np.int64)
        self.channel_names = ["DAPI", "PanCK"][:c] + [f"ch{i}" for i in range(2, c)]
        self.calls: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.instance_id)

    def batch(self, idx):
        idx = np.asarray(idx)
        self.calls.append(idx)
        return self.morphology[idx], self.microenvironment[idx]


@pytest.fixture
def view_store():
    return FakeViewStore()
