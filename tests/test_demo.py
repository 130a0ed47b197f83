"""``madspatial demo`` end to end in quick mode: the synthetic tissue, and a user SpatialData
read from zarr (through the command line) that lacks the synthetic ground truth."""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from madspatial._constants import UNS_SYNTHETIC
from madspatial._demo import DEMO_CPU_PRESET, MODELS, QUICK_PRESET, run_demo

pytestmark = pytest.mark.filterwarnings("ignore")  # tiny runs: weak-signal and fit warnings

SECTIONS = (
    "Tissue",
    "Cell views",
    "Pretraining",
    "Embeddings and clusters",
    "Metrics",
    "Virtual spatial expression",
    "Canonical correlation with expression",
    "Pseudotime",
    "Differential expression and enrichment",
    "Summary",
    "Timings",
)
NAMES = [m.name for m in MODELS]


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(s) for s in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


_GLOBAL_STATE: dict = {}  # matplotlib's rcParams and open figures around the quick demo


def _matplotlib_state():
    import matplotlib
    import matplotlib.pyplot as plt

    # reading "backend" resolves matplotlib's automatic choice: not the demo's doing
    params = {k: v for k, v in matplotlib.rcParams.items() if k != "backend"}
    return params, plt.get_fignums()


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    _GLOBAL_STATE["before"] = _matplotlib_state()
    path = run_demo(out=out, quick=True, strict=True)
    _GLOBAL_STATE["after"] = _matplotlib_state()
    return out, path


def test_demo_leaves_matplotlib_state_alone(quick_demo):
    (params0, figs0), (params1, figs1) = _GLOBAL_STATE["before"], _GLOBAL_STATE["after"]
    changed = {k for k in params0 if str(params0[k]) != str(params1[k])}
    assert not changed  # e.g. figure.max_open_warning is set in a local context only
    assert figs1 == figs0  # every figure drawn for the report is closed


def test_report_has_every_section_and_embedded_figures(quick_demo):
    out, path = quick_demo
    assert path == out / "report.html"
    html = path.read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f">{title}</h2>" in html, title
    images = _images(html)
    # overview, views, curves, UMAPs, metrics, per-gene, maps, pseudotime, volcano, enrichment
    assert len(images) == 10
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") and len(img) > 5000 for img in images)
    # nothing points outside the file: it opens offline
    assert not re.search(r'(src|href)="(?!data:|#)', html)
    assert 'class="fail"' not in html and 'class="skip"' not in html
    # the preset is stated, with the paper's sizes as the library default
    assert "ViT-L/14, 70 px morphology and 224 px microenvironment" in html
    # a short run: recipe="auto" trained the paper's loss, and the report says so
    assert "cross-view terms: the paper's loss, which" in html
    assert len(list((out / "figures").glob("*.png"))) == 10


def test_metric_tables_are_sane(quick_demo):
    out, _ = quick_demo
    m = pd.read_csv(out / "metrics.csv", index_col="model")
    assert list(m.index) == NAMES
    for col in (
        "louvain_ari",
        "louvain_purity",
        "knn_accuracy",
        "decoder_accuracy",
        "expression_pearson",
        "pseudotime_spearman",
        "cca_mean_r",
    ):
        assert m[col].notna().all(), col
    assert m["louvain_ari"].between(-0.5, 1).all()
    for col in ("louvain_purity", "knn_accuracy", "decoder_accuracy", "decoder_balanced_accuracy"):
        assert m[col].between(0, 1).all(), col
    # 8 subtypes: every probe beats always answering the commonest one? not at 4 steps;
    # but purity can never be below the largest class share
    summary = pd.read_csv(out / "summary.csv")
    assert summary["cells"].sum() == QUICK_PRESET["n_cells"]
    share = summary.groupby("cell_type")["cells"].sum().max() / summary["cells"].sum()
    assert (m["louvain_purity"] >= share - 1e-9).all()
    assert m[["expression_pearson", "pseudotime_spearman"]].abs().le(1).all().all()
    # cross-view recall exists only for MAD (the ablations have one view)
    assert np.isfinite(m.loc["MAD", "crossview_recall@10"])
    assert m.loc[NAMES[1:], "crossview_recall@10"].isna().all()

    per_gene = pd.read_csv(out / "per_gene_pearson.csv", index_col="gene")
    assert per_gene.shape[1] == 3 and len(per_gene) > 100
    assert np.allclose(per_gene.mean(), m["expression_pearson"].to_numpy(), atol=1e-6)
    pairs = pd.read_csv(out / "pair_accuracy.csv")
    assert len(pairs) == 4 and pairs[NAMES].stack().between(0, 1).all()
    de = pd.read_csv(out / "de_measured.csv")
    assert {"gene", "log2FC", "pvalue", "fdr"} <= set(de.columns)
    # the planted CAF program comes out of the measured CAF vs stromal fibroblast test
    assert {"FAP", "POSTN"} <= set(de.loc[(de["fdr"] < 0.05) & (de["log2FC"] > 0), "gene"])
    enr = pd.read_csv(out / "enrichment_measured.csv")
    assert enr.iloc[0]["term"] == "CAF"

    t = pd.read_csv(out / "timings.csv", index_col="step")
    assert (t["seconds"] >= 0).all()
    assert t.loc["total", "seconds"] == pytest.approx(t["seconds"].drop("total").sum())
    assert {"pretrain MAD", "pretrain morphology only", "umap"} <= set(t.index)


def test_models_share_one_budget(quick_demo):
    out, _ = quick_demo
    configs, steps = [], []
    for m in MODELS:
        d = out / "models" / m.mode
        configs.append(json.loads((d / "config.json").read_text()))
        steps.append(len(json.loads((d / "history.json").read_text())["loss"]))
    assert steps == [QUICK_PRESET["steps"]] * 3
    assert [c["mode"] for c in configs] == [m.mode for m in MODELS]
    # same backbone, head and view sizes; only the mode and what follows from it differ
    own = ("mode", "metadata", "pixel_mean", "pixel_std", "integrity")
    strip = [{k: v for k, v in c.items() if k not in own} for c in configs]
    assert strip[0] == strip[1] == strip[2]
    # each model standardises the views it sees: MAD and the microenvironment model the
    # microenvironment views' statistics, the morphology model the (darker) masked cells'
    by_mode = {c["mode"]: c for c in configs}
    assert by_mode["mad"]["pixel_mean"] == by_mode["microenvironment"]["pixel_mean"]
    assert max(by_mode["morphology"]["pixel_mean"]) < min(by_mode["mad"]["pixel_mean"])


def test_cpu_preset_is_small_and_patch_aligned():
    for p in (DEMO_CPU_PRESET, QUICK_PRESET):
        assert p["morphology_size"] % 14 == 0 and p["microenvironment_size"] % 14 == 0
    assert DEMO_CPU_PRESET["microenvironment_size"] < 224  # the paper's size stays the default


@pytest.fixture(scope="module")
def user_zarr(tmp_path_factory):
    """A user-like SpatialData on disk: image + segmentation + counts, other element names,
    no cell types, no trajectory."""
    import madspatial as mad

    tissue = mad.datasets.synthetic_tissue(n_cells=300, seed=3)
    table = tissue.tables["table"][:, ::3]  # a smaller panel
    counts = pd.DataFrame(
        table.layers["counts"].toarray(),
        index=table.obs["instance_id"].to_numpy(),
        columns=table.var_names,
    )
    sdata = mad.io.sdata_from_arrays(
        tissue.images["morphology"].data.compute(),
        tissue.labels["cell_labels"].data.compute(),
        counts,
        channel_names=list(tissue.images["morphology"].c.values),
        image_key="stains",
        labels_key="segmentation",
        table_key="cells",
    )
    assert "cell_type" not in sdata.tables["cells"].obs
    assert UNS_SYNTHETIC not in sdata.tables["cells"].uns
    # a nucleus segmentation with its own table, listed first: the demo must pick the table
    # annotating --labels-key, not the first one
    sdata.labels["nuclei"] = sdata.labels["segmentation"]
    sdata.tables["a_nuclei"] = _table_annotating("nuclei", n=5)
    sdata.tables = {"a_nuclei": sdata.tables["a_nuclei"], "cells": sdata.tables["cells"]}
    path = tmp_path_factory.mktemp("user") / "user.zarr"
    sdata.write(path)
    return path


def _table_annotating(region: str, *, n: int):
    import anndata as ad
    from spatialdata.models import TableModel

    obs = pd.DataFrame({"region": pd.Categorical([region] * n), "instance_id": np.arange(1, n + 1)})
    obs.index = obs.index.astype(str)
    return TableModel.parse(
        ad.AnnData(obs=obs), region=region, region_key="region", instance_key="instance_id"
    )


def test_demo_on_user_sdata_via_cli(user_zarr, tmp_path):
    from madspatial.cli import main

    out = tmp_path / "out"
    code = main(
        [
            "-q",
            "demo",
            "--quick",
            "--out",
            str(out),
            "--sdata",
            str(user_zarr),
            "--image-key",
            "stains",
            "--labels-key",
            "segmentation",
        ]
    )
    assert code == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="fail"' not in html
    # ground-truth-only steps are skipped, and the report says so
    assert "Skipped <b>ARI and purity</b>" in html
    assert "Skipped <b>cell-type probes and decoders</b>" in html
    assert "Skipped <b>pseudotime vs ground truth</b>" in html
    assert "Skipped <b>enrichment</b>" in html
    m = pd.read_csv(out / "metrics.csv", index_col="model")
    assert list(m.index) == NAMES
    assert "louvain_ari" not in m and "decoder_accuracy" not in m
    assert m["expression_pearson"].between(-1, 1).all()
    assert (m["louvain_n_clusters"] >= 1).all()
    assert len(_images(html)) >= 7
    assert pd.read_csv(out / "de_measured.csv")["group"].astype(str).eq("0").all()


def test_user_sdata_bad_key_says_what_exists(user_zarr, tmp_path):
    with pytest.raises(KeyError, match=r"'nope'.*\['stains'\]"):
        run_demo(out=tmp_path, quick=True, sdata_path=user_zarr, image_key="nope")


def test_user_zarr_lists_the_nucleus_table_first(user_zarr):
    import spatialdata

    # what makes test_demo_on_user_sdata_via_cli check the table choice
    assert list(spatialdata.read_zarr(user_zarr).tables) == ["a_nuclei", "cells"]


def test_sdata_tables_are_picked_by_the_labels_they_annotate(copy_tissue):
    from madspatial._elements import pick_elements

    sdata = copy_tissue
    sdata.tables = {"nuclei": _table_annotating("nucleus_labels", n=3), **sdata.tables}
    # the chosen labels decide the table (the first table annotates other labels)
    assert pick_elements(sdata, labels_key="cell_labels") == ("morphology", "cell_labels", "table")
    assert pick_elements(sdata, labels_key="nucleus_labels")[2] == "nuclei"
    # a named table decides the labels
    assert pick_elements(sdata, table_key="nuclei")[1] == "nucleus_labels"
    # two tables, two segmentations, nothing named: really ambiguous
    with pytest.raises(ValueError, match=r"annotate several segmentations \['nucleus_labels', "):
        pick_elements(sdata)
    sdata.tables["cells2"] = _table_annotating("cell_labels", n=3)
    with pytest.raises(ValueError, match=r"several tables .* annotate 'cell_labels': \['table', "):
        pick_elements(sdata, labels_key="cell_labels")
    del sdata.tables["nuclei"], sdata.tables["cells2"]
    with pytest.raises(ValueError, match="no table of the SpatialData annotates 'nucleus_labels'"):
        pick_elements(sdata, labels_key="nucleus_labels")


def test_demo_threads_are_the_cores_this_process_may_use(monkeypatch):
    from madspatial._demo import _presets
    from madspatial._settings import settings

    def no_load_average():
        raise AssertionError("the thread count must not depend on the load average")

    monkeypatch.setattr(_presets.os, "getloadavg", no_load_average, raising=False)
    monkeypatch.setattr(_presets.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5, 7}, raising=False)
    monkeypatch.setattr(settings, "n_threads", None)
    n, why = _presets.torch_threads(None)
    assert (n, why) == (3, "the cores this process may run on: 3 of 64")
    assert settings.resolve_n_jobs(-1) == 3  # n_jobs=-1 counts the same cores
    monkeypatch.setattr(settings, "n_threads", 2)
    assert _presets.torch_threads(None) == (2, "mad.settings.n_threads")
    assert _presets.torch_threads(5) == (5, "as asked")  # run_demo(threads=) / --threads
    with pytest.raises(ValueError, match=r"must be a positive int.*got 0 \(int\)"):
        _presets.torch_threads(0)
