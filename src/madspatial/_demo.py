"""``madspatial demo``: the whole pipeline on the synthetic tissue (or the user's data),
ending in ``OUT/report.html``.

Synthetic tissue (or ``--sdata``) -> normalize -> cell views -> pretrain MAD and its two
single-view ablations with one budget -> embed -> Louvain -> decoders (cell type,
expression) -> CCA -> pseudotime -> differential expression (measured vs predicted) ->
enrichment -> an HTML report with embedded figures, CSV tables and a timing summary.

Steps that need ground truth the data lacks (cell types, genes, a trajectory) are skipped
and the report says so. A step that raises is logged, reported in red and the demo goes
on (``strict=True`` re-raises instead, for tests).
"""

from __future__ import annotations

import html
import os
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._constants import (
    CELL_LABELS_KEY,
    IMAGE_KEY,
    LAYER_PRED,
    MODE_MAD,
    MODE_MICROENVIRONMENT,
    MODE_MORPHOLOGY,
    NORMALIZED_SUFFIX,
    OBS_BORDER,
    OBS_CELL_TYPE,
    OBS_LOUVAIN,
    OBS_MORPH_CLASS,
    OBS_NICHE,
    OBS_PSEUDOTIME,
    OBS_TRAJECTORY,
    OBSM_MAD,
    OBSM_MAD_MICROENVIRONMENT,
    OBSM_MAD_MORPHOLOGY,
    OBSM_SPATIAL,
    TABLE_KEY,
    UNS_CCA,
    UNS_DE,
    UNS_DECODER_PREFIX,
)
from ._elements import pick_elements
from ._logging import logger
from ._report import Report
from ._settings import available_cores, settings

#: The demo's CPU budget. The library defaults stay the paper's (ViT-L/14, 70 px morphology
#: and 224 px microenvironment views, 4 local crops, 65,536 prototypes); this preset shrinks
#: everything so that the three pretraining runs and all analyses fit in ~10 minutes on 2 CPU
#: cores. All three models (MAD and the two single-view ablations) get the same budget.
DEMO_CPU_PRESET: dict[str, Any] = {
    "n_cells": 3000,
    "model": {"preset": "vit_pico", "embed_dim": 96, "depth": 3, "num_heads": 3},
    "morphology_size": 56,
    "microenvironment_size": 112,
    "n_local": 2,
    "batch_size": 64,
    "steps": 150,
    "lr": 2e-3,
    "n_prototypes": 1024,
    "head_hidden_dim": 512,
    "head_bottleneck_dim": 128,
    "n_holdout": 256,
    "n_evals": 10,
    "decoder_epochs": 100,
    "threads": None,
}

#: ``--quick``: a smoke run of every step (tests); numbers from it mean nothing.
QUICK_PRESET: dict[str, Any] = {
    "n_cells": 400,
    "model": "vit_pico",
    "morphology_size": 28,
    "microenvironment_size": 56,
    "n_local": 1,
    "batch_size": 32,
    "steps": 4,
    "lr": 2e-3,
    "n_prototypes": 64,
    "head_hidden_dim": 64,
    "head_bottleneck_dim": 32,
    "n_holdout": 48,
    "n_evals": 2,
    "decoder_epochs": 15,
    "threads": None,
}

#: The paper's setting, which the library defaults follow (stated in the report).
PAPER_SETTING = "ViT-L/14, 70 px morphology and 224 px microenvironment views, 4 local crops"


@dataclass(frozen=True)
class _Model:
    name: str  # shown in the report
    mode: str  # tl.pretrain mode
    rep: str  # .obsm key of its embedding


MODELS = (
    _Model("MAD", MODE_MAD, OBSM_MAD),
    _Model("morphology only", MODE_MORPHOLOGY, OBSM_MAD + "_morph_only"),
    _Model("microenvironment only", MODE_MICROENVIRONMENT, OBSM_MAD + "_micro_only"),
)
PALETTE = {"MAD": "#c44e52", "morphology only": "#4c72b0", "microenvironment only": "#55a868"}

#: Planted genes shown as maps on the synthetic tissue: one per design question.
SYNTHETIC_MAP_GENES = {
    "MKI67": "proliferation: tumour_proliferative vs quiescent differ by morphology only",
    "FAP": "CAF program: CAF vs stromal fibroblast differ by niche only",
    "MS4A1": "B cells (in immune aggregates) vs T cells: niche only",
    "ACTA2": "fibroblast activation trajectory",
}


def _louvain_key(m: _Model) -> str:
    return OBS_LOUVAIN if m.mode == MODE_MAD else f"{OBS_LOUVAIN}_{m.mode}"


# --------------------------------------------------------------------------- bookkeeping
class _Timer:
    """Wall-clock and CPU seconds (this process, all threads) per step. On a shared machine
    the wall time grows with the load while the CPU time stays close to the work done."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    @contextmanager
    def step(self, name: str):
        logger.info("» %s", name)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            self.rows.append((name, dt, dc))
            logger.info("  %s: %.1f s (cpu %.1f s)", name, dt, dc)

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=["step", "seconds", "cpu_seconds"]).set_index("step")
        df.loc["total"] = df.sum()
        return df


@dataclass
class _Run:
    out: Path
    figdir: Path
    preset: dict[str, Any]
    seed: int
    quick: bool
    synthetic: bool
    strict: bool
    report: Report
    timer: _Timer = field(default_factory=_Timer)
    adata: Any = None
    sdata: Any = None
    models: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)  # tidy: model, metric, value
    decoders: dict[str, Any] = field(default_factory=dict)
    per_gene: pd.DataFrame | None = None
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def has_types(self) -> bool:
        obs = self.adata.obs
        return OBS_CELL_TYPE in obs and obs[OBS_CELL_TYPE].nunique(dropna=True) >= 2

    @property
    def has_genes(self) -> bool:
        return self.adata.n_vars > 0

    @property
    def has_trajectory(self) -> bool:
        obs = self.adata.obs
        return OBS_TRAJECTORY in obs and int(np.isfinite(obs[OBS_TRAJECTORY]).sum()) >= 20

    @contextmanager
    def stage(self, name: str):
        """Time a step; a failure is logged and reported, and the demo goes on."""
        with self.timer.step(name):
            try:
                yield
            except Exception as err:
                if self.strict:
                    raise
                logger.warning("demo step %r failed:\n%s", name, traceback.format_exc())
                self.failed.append(f"{name}: {type(err).__name__}: {err}")
                self.report.text(
                    f"Step <b>{html.escape(name)}</b> failed: "
                    f"<code>{html.escape(type(err).__name__)}: {html.escape(str(err))}</code> "
                    "(traceback in the log).",
                    kind="fail",
                )

    def skip(self, what: str, why: str) -> None:
        logger.info("  skipped %s: %s", what, why)
        self.skipped.append(f"{what}: {why}")
        self.report.text(f"Skipped <b>{html.escape(what)}</b>: {html.escape(why)}.", kind="skip")

    def metric(self, model: str, metric: str, value: float) -> None:
        self.metrics.append({"model": model, "metric": metric, "value": float(value)})

    def figure(self, fig, name: str, caption: str) -> None:
        self.report.figure(fig, caption, save_to=self.figdir / f"{name}.png")

    def csv(self, df: pd.DataFrame, name: str, *, index: bool = False) -> None:
        df.to_csv(self.out / f"{name}.csv", index=index)

    def metrics_wide(self) -> pd.DataFrame:
        if not self.metrics:
            return pd.DataFrame()
        tidy = pd.DataFrame(self.metrics).drop_duplicates(["model", "metric"], keep="last")
        wide = tidy.pivot(index="model", columns="metric", values="value")
        order = [m.name for m in MODELS if m.name in wide.index]
        cols = list(dict.fromkeys(tidy["metric"]))
        return wide.loc[order, cols]


# --------------------------------------------------------------------------- data
def _load_data(*, n_cells, seed, quick, sdata_path, image_key, labels_key, table_key, preset):
    if sdata_path is not None:
        import spatialdata

        sdata = spatialdata.read_zarr(sdata_path)
        # the table is the one annotating the chosen labels (not merely the first)
        image_key, labels_key, table_key = pick_elements(
            sdata,
            image_key=image_key,
            labels_key=labels_key,
            table_key=table_key,
            where=str(sdata_path),
        )
        return sdata, image_key, labels_key, table_key, False
    from .datasets import synthetic_tissue

    n = n_cells or preset["n_cells"]
    sdata = synthetic_tissue(n_cells=n, seed=seed)
    return sdata, IMAGE_KEY, CELL_LABELS_KEY, TABLE_KEY, True


def summary_table(adata) -> pd.DataFrame:
    """Cells per subtype, with their morphological class and niche (synthetic ground truth)."""
    obs = adata.obs
    cols = [c for c in (OBS_CELL_TYPE, OBS_MORPH_CLASS, OBS_NICHE) if c in obs]
    if not cols:
        return pd.DataFrame({"cells": [adata.n_obs]}, index=["all"])
    g = obs.groupby(cols, observed=True).size().rename("cells").reset_index()
    g["share"] = g["cells"] / g["cells"].sum()
    return g


def _preset_table(preset: dict[str, Any], *, synthetic: bool) -> pd.DataFrame:
    rows = []
    for k, v in preset.items():
        if k == "n_cells" and not synthetic:
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif v is None:
            v = "auto"
        rows.append((k, str(v)))
    return pd.DataFrame(rows, columns=["setting", "value"])


def _torch_threads(requested: int | None) -> tuple[int, str]:
    """Torch CPU threads for the demo and why: the ``threads`` asked for, else
    ``mad.settings.n_threads``, else every core this process may run on (its affinity
    mask, so ``taskset``, cgroup cpusets and SLURM allocations are respected)."""
    if requested is not None:
        return settings.resolve_n_threads(requested), "as asked"
    if settings.n_threads is not None:
        return settings.resolve_n_threads(), "mad.settings.n_threads"
    n = available_cores()
    return n, f"the cores this process may run on: {n} of {os.cpu_count()}"


def _image_shape(element) -> tuple[int, ...]:
    """Shape of an image element, single-scale or multiscale (its full-resolution level)."""
    if hasattr(element, "shape"):
        return tuple(element.shape)
    return tuple(element["scale0"].image.shape)


def _model_size(model) -> str:
    n = sum(t.numel() for t in model.parameters())
    return f"{n / 1e6:.2f} M"


# --------------------------------------------------------------------------- steps
def _tissue(run: _Run, image_key: str, labels_key: str, table_key: str) -> None:
    from . import pl

    adata = run.adata
    run.report.section("Tissue")
    color = OBS_CELL_TYPE if run.has_types else None
    fig = pl.tissue_overview(
        run.sdata,
        image_key=image_key,
        labels_key=labels_key,
        table_key=table_key,
        color=color,
        return_fig=True,
    )
    run.figure(
        fig,
        "tissue_overview",
        "Image channels as a composite; segmentation outlines coloured by "
        + (color or "nothing (no cell types in the table)"),
    )
    summary = summary_table(adata)
    run.csv(summary, "summary")
    if run.synthetic:
        run.report.text(
            "The synthetic tissue's eight subtypes are built so that <b>neither view alone "
            "recovers them all</b>: CAF/stromal fibroblast, TAM/stromal macrophage and "
            "T/B cell differ only by their niche; proliferative/quiescent tumour cells only by "
            "their own morphology. Stromal fibroblasts carry a continuous activation "
            "trajectory."
        )
    run.report.table(summary, "Cells per ground-truth subtype", index=False)


def _views(run: _Run, image_key: str, labels_key: str, table_key: str) -> str:
    """Normalize (unless the image already is) and cut the views; returns the image used."""
    from . import pp

    p = run.preset
    if image_key.endswith(NORMALIZED_SUFFIX):
        norm_key = image_key
    else:
        with run.timer.step("normalize"):
            pp.normalize(run.sdata, image_key=image_key, n_jobs=2, seed=run.seed)
        norm_key = image_key + NORMALIZED_SUFFIX
    with run.timer.step("cell views"):
        n_chan = _image_shape(run.sdata.images[image_key])[0]
        n_px = p["morphology_size"] ** 2 + p["microenvironment_size"] ** 2
        # small data stays in memory (fastest); a large table gets a zarr store in OUT
        store = None if run.adata.n_obs * n_chan * n_px < 2e9 else run.out / "views.zarr"
        pp.cell_views(
            run.sdata,
            image_key=norm_key,
            labels_key=labels_key,
            table_key=table_key,
            morphology_size=p["morphology_size"],
            microenvironment_size=p["microenvironment_size"],
            missing="raise" if run.synthetic else "intersect",
            store=store,
            overwrite=True,
            n_jobs=2,
        )
        run.adata = run.sdata.tables[table_key]
        if OBSM_SPATIAL not in run.adata.obsm:  # the maps need centroids: take the views'
            from .io import read_views

            run.adata.obsm[OBSM_SPATIAL] = np.asarray(read_views(run.adata).centroid)
    return norm_key


def _example_views(run: _Run) -> None:
    from . import pl
    from ._constants import UNS_VIEWS

    adata = run.adata
    run.report.section("Cell views")
    info = adata.uns[UNS_VIEWS]
    run.report.text(
        f"Every cell gets a <b>morphology view</b> (the segmented cell alone, everything "
        f"outside its mask set to 0; a {info['morphology_window_px']:.0f} px window resized to "
        f"{info['morphology_size']} px) and a <b>microenvironment view</b> (a "
        f"{info['window_px']:.0f} px window holding ~{info['n_neighbors']} neighbours, resized "
        f"to {info['microenvironment_size']} px). {info.get('n_border', 0)} cells touch the "
        "image border (zero-padded)."
    )
    rng = np.random.default_rng(run.seed)
    inner = ~adata.obs[OBS_BORDER].to_numpy(bool) if OBS_BORDER in adata.obs else None
    if run.has_types:
        cells = []
        types = adata.obs[OBS_CELL_TYPE]
        for t in types.cat.categories if hasattr(types, "cat") else pd.unique(types):
            idx = np.flatnonzero((types == t).to_numpy() & (inner if inner is not None else True))
            if len(idx):
                cells.append(int(rng.choice(idx)))
        label = OBS_CELL_TYPE
    else:
        pool = (
            np.flatnonzero(inner) if inner is not None and inner.any() else np.arange(adata.n_obs)
        )
        cells = sorted(rng.choice(pool, size=min(6, len(pool)), replace=False).tolist())
        label = None
    fig = pl.cell_views(adata, cells=cells, label=label, ncols=4, return_fig=True)
    run.figure(fig, "cell_views", "Morphology (left) and microenvironment (right) view of "
               + ("one random cell per subtype" if label else "random cells"))  # fmt: skip


def _pretrain(run: _Run) -> None:
    from . import tl

    p = run.preset
    steps = p["steps"]
    common = {
        "model": p["model"],
        "max_steps": steps,
        "batch_size": p["batch_size"],
        "lr": p["lr"],
        "n_local": p["n_local"],
        "n_prototypes": p["n_prototypes"],
        "head_hidden_dim": p["head_hidden_dim"],
        "head_bottleneck_dim": p["head_bottleneck_dim"],
        "n_holdout": min(p["n_holdout"], max(16, run.adata.n_obs // 10)),
        "eval_every": max(1, steps // p["n_evals"]),
        "precision": "auto",
        "seed": run.seed,
        "resume": False,
    }
    for m in MODELS:
        with run.stage(f"pretrain {m.name}"):
            with warnings.catch_warnings():
                # a short CPU run trips the collapse/weak-signal watch; the report shows it
                warnings.simplefilter("ignore", RuntimeWarning)
                run.models[m.name] = tl.pretrain(
                    run.adata,
                    mode=m.mode,
                    checkpoint_dir=run.out / "models" / m.mode,
                    **common,
                )


def _training_report(run: _Run) -> None:
    from . import pl

    p = run.preset
    run.report.section("Pretraining")
    if not run.models:
        run.report.text("No model was trained.", kind="fail")
        return
    epochs = p["steps"] * p["batch_size"] / max(1, run.adata.n_obs)
    any_model = next(iter(run.models.values()))
    run.facts["epochs"] = epochs
    run.report.text(
        f"Three models with the <b>same budget</b>: {p['steps']} steps of {p['batch_size']} "
        f"cells (~{epochs:.1f} epochs), seed {run.seed}, lr {p['lr']}, {p['n_local']} local "
        f"crops per view, {p['n_prototypes']} prototypes, backbone "
        f"<code>{html.escape(str(p['model']))}</code> ({_model_size(any_model)} parameters "
        "with head). MAD distils both views into one backbone (with cross-view terms); the "
        "ablations see one view only."
    )
    fig = pl.training_curves(dict(run.models), palette=PALETTE, smooth=5, return_fig=True)
    run.figure(fig, "training_curves", "Loss (dashed: ln K, the uniform-collapse level), "
               "learning rate, teacher temperature and held-out cross-view Recall@K, "
               "all three models overlaid")  # fmt: skip
    rows = []
    for name, model in run.models.items():
        h = model.history
        rows.append(
            {
                "model": name,
                "final loss": np.mean(h["loss"][-5:]),
                "ln K": h["ln_k"],
                "teacher entropy": np.mean(h["teacher_entropy"][-5:]),
                "recall@10": h["recall@10"][-1] if h.get("recall@10") else np.nan,
                "recall@10 chance": h["recall_chance"]["recall@10"],
                "cells/s": np.median(h["cells_per_s"]) if h.get("cells_per_s") else np.nan,
                "collapsed": bool(h.get("collapsed")),
            }
        )
    df = pd.DataFrame(rows)
    run.csv(df, "training")
    run.report.table(df, "End of training (loss and entropy: mean of the last 5 steps)",
                     index=False)  # fmt: skip
    collapsed = [r["model"] for r in rows if r["collapsed"]]
    if collapsed:
        run.report.text(
            f"The collapse watch flags {', '.join(collapsed)}: the teacher's outputs are "
            "(nearly) uniform, expected this early in a DINO run. The embeddings are still "
            "the backbone's class tokens, which carry the views' structure (see below).",
            note=True,
        )


def _embed(run: _Run) -> None:
    from . import tl

    for m in MODELS:
        if m.name not in run.models:
            continue
        with run.stage(f"embed {m.name}"):
            tl.embed(run.adata, model=run.models[m.name], key_added=m.rep, precision="auto")


def _available(run: _Run) -> list[_Model]:
    return [m for m in MODELS if m.rep in run.adata.obsm]


def _clusters(run: _Run) -> None:
    import matplotlib.pyplot as plt

    from . import metrics, pl, tl

    adata = run.adata
    run.report.section("Embeddings and clusters")
    models = _available(run)
    if not models:
        run.skip("clustering", "no embedding")
        return
    with run.stage("louvain"):
        for m in models:
            tl.louvain(adata, use_rep=m.rep, key_added=_louvain_key(m), seed=run.seed)
            labels = adata.obs[_louvain_key(m)]
            run.metric(m.name, "louvain_n_clusters", labels.nunique())
            if run.has_types:
                ok = adata.obs[OBS_CELL_TYPE].notna().to_numpy()
                truth = adata.obs[OBS_CELL_TYPE].to_numpy()[ok]
                run.metric(m.name, "louvain_ari", metrics.ari(truth, labels.to_numpy()[ok]))
                run.metric(m.name, "louvain_purity", metrics.purity(truth, labels.to_numpy()[ok]))
    if not run.has_types:
        run.skip("ARI and purity", f"the table has no '{OBS_CELL_TYPE}' column to compare with")
    with run.stage("umap"):
        ncol = 2 if run.has_types else 1
        fig, axes = plt.subplots(
            len(models), ncol, figsize=(6.2 * ncol, 4.6 * len(models)), squeeze=False,
            layout="constrained",
        )  # fmt: skip
        size = max(4.0, min(30.0, 60000 / adata.n_obs))
        wide = run.metrics_wide()
        for i, m in enumerate(models):
            col = 0
            tl.umap(adata, use_rep=m.rep)
            if run.has_types:
                pl.umap(adata, use_rep=m.rep, color=OBS_CELL_TYPE, ax=axes[i, 0], show=False,
                        title=f"{m.name}: ground truth", size=size,
                        legend_loc="right margin" if i == 0 else "none")  # fmt: skip
                col = 1
            title = f"{m.name}: Louvain ({int(wide.loc[m.name, 'louvain_n_clusters'])} clusters)"
            if run.has_types:
                title += f", ARI {wide.loc[m.name, 'louvain_ari']:.2f}"
            pl.umap(adata, use_rep=m.rep, color=_louvain_key(m), ax=axes[i, col], show=False,
                    title=title, size=size, legend_loc="on data", legend_fontsize=7)  # fmt: skip
        run.figure(fig, "umap", "UMAP of each model's embedding (cosine kNN graph of 30 "
                   "neighbours, min_dist 0.1, seed 42): ground-truth subtype (left) and Louvain "
                   "clusters with the adjusted Rand index against the subtypes (right)"
                   if run.has_types else "UMAP of each model's embedding, Louvain clusters")  # fmt: skip


def _pair_accuracy(run: _Run, preds: dict[str, np.ndarray], truth: np.ndarray) -> None:
    from .datasets import MORPHOLOGY_ONLY_PAIRS, NICHE_ONLY_PAIRS

    rows = []
    for kind, pairs in (("morphology", MORPHOLOGY_ONLY_PAIRS), ("niche", NICHE_ONLY_PAIRS)):
        for a, b in pairs:
            sel = np.isin(truth, [a, b])
            if sel.sum() < 10:
                continue
            row = {"pair": f"{a} / {b}", "told apart by": f"{kind} only", "cells": int(sel.sum())}
            for name, pred in preds.items():
                row[name] = float(np.mean(pred[sel] == truth[sel]))
            rows.append(row)
    if not rows:
        return
    df = pd.DataFrame(rows)
    run.csv(df, "pair_accuracy")
    run.facts["pairs"] = df
    run.report.table(
        df,
        "kNN-probe accuracy (out of fold) on the cells of each designed subtype pair: the share "
        "of the pair's cells given their own label. A morphology-only model should fail the "
        "niche pairs and a microenvironment-only model the morphology pair; MAD should manage "
        "both.",
        index=False,
    )


def _decoders(run: _Run) -> None:
    from . import metrics, pl, tl

    adata = run.adata
    p = run.preset
    models = _available(run)
    run.report.section("Metrics")
    dec_kw = {"max_epochs": p["decoder_epochs"], "patience": 10, "seed": run.seed}
    preds: dict[str, np.ndarray] = {}
    truth = np.array([])
    if run.has_types:
        with run.stage("cell type probes and decoders"):
            ok = adata.obs[OBS_CELL_TYPE].notna().to_numpy()
            truth = adata.obs[OBS_CELL_TYPE].astype(str).to_numpy()[ok]
            for m in models:
                X = np.asarray(adata.obsm[m.rep])[ok]
                pred = metrics.probe_predictions(X, truth, method="knn", seed=run.seed)
                preds[m.name] = np.asarray(pred).astype(str)
                run.metric(m.name, "knn_accuracy", np.mean(preds[m.name] == truth))
                dec = tl.fit_decoder(
                    adata, target=OBS_CELL_TYPE, use_rep=m.rep, loss="cross_entropy",
                    key_added=f"{UNS_DECODER_PREFIX}{OBS_CELL_TYPE}_{m.mode}", **dec_kw,
                )  # fmt: skip
                run.metric(m.name, "decoder_accuracy", dec.metrics["accuracy"])
                run.metric(m.name, "decoder_balanced_accuracy", dec.metrics["balanced_accuracy"])
    else:
        run.skip("cell-type probes and decoders", f"no '{OBS_CELL_TYPE}' column")
    if run.has_genes:
        with run.stage("expression decoders"):
            per_gene = {}
            for m in models:
                dec = tl.fit_decoder(
                    adata, target="expression", use_rep=m.rep,
                    key_added=f"{UNS_DECODER_PREFIX}expression_{m.mode}", **dec_kw,
                )  # fmt: skip
                run.decoders[m.name] = dec
                run.metric(m.name, "expression_pearson", dec.metrics["mean_pearson"])
                per_gene[m.name] = pd.Series(dec.metrics["pearson_per_gene"])
            run.per_gene = pd.DataFrame(per_gene)
            if "MAD" in run.decoders:
                tl.predict(run.decoders["MAD"], adata)  # -> layers["mad_pred"]
    else:
        run.skip("expression decoders", "the table has no genes")
    if OBSM_MAD_MORPHOLOGY in adata.obsm and OBSM_MAD_MICROENVIRONMENT in adata.obsm:
        rec = metrics.recall_at_k(
            adata.obsm[OBSM_MAD_MORPHOLOGY], adata.obsm[OBSM_MAD_MICROENVIRONMENT],
            k=10, symmetric=True,
        )  # fmt: skip
        run.metric("MAD", "crossview_recall@10", rec)
        run.facts["recall_chance"] = 10 / adata.n_obs

    wide = run.metrics_wide()
    if wide.empty:
        return
    run.csv(wide, "metrics", index=True)
    run.csv(pd.DataFrame(run.metrics), "metrics_long")
    run.report.table(
        wide,
        "Per model: Louvain ARI and purity against the subtypes, number of clusters, kNN-probe "
        "accuracy (5-fold, cosine, 15 neighbours), held-out accuracy of a 2-layer MLP decoder "
        "(plain and class-balanced), mean held-out Pearson r of the expression decoder over "
        "genes, and MAD's cross-view Recall@10 (morphology token -> microenvironment token of "
        "the same cell, both directions; chance "
        f"{10 / adata.n_obs:.4f}). Also in metrics.csv.",
    )
    tidy = pd.DataFrame(run.metrics).rename(columns={"model": "rep"})
    tidy = tidy[tidy["metric"] != "louvain_n_clusters"]
    if not tidy.empty:
        fig = pl.embedding_comparison(tidy, palette=PALETTE, return_fig=True)
        run.figure(fig, "metrics", "The metrics table as bars, one colour per model")
    if preds:
        _pair_accuracy(run, preds, truth)


def _expression(run: _Run) -> None:
    from . import pl

    adata = run.adata
    run.report.section("Virtual spatial expression")
    if run.per_gene is None or run.per_gene.empty:
        run.skip("expression plots", "no expression decoder was fitted")
        return
    run.csv(run.per_gene.rename_axis("gene"), "per_gene_pearson", index=True)
    mad_r = run.per_gene.get("MAD")
    fig = pl.gene_correlation(run.per_gene, reference="MAD", palette=PALETTE, return_fig=True)
    run.figure(fig, "gene_correlation", "Held-out Pearson r per gene: MAD's bars sorted, the "
               "ablations as lines (left); MAD against each ablation per gene (right)")  # fmt: skip
    if mad_r is not None:
        if run.synthetic:
            genes = [g for g in SYNTHETIC_MAP_GENES if g in adata.var_names]
        else:
            genes = mad_r.dropna().sort_values(ascending=False).index[:3].tolist()
        if LAYER_PRED in adata.layers and genes:
            fig = pl.spatial_expression(adata, genes=genes, return_fig=True)
            why = "; ".join(f"{g}: {SYNTHETIC_MAP_GENES[g]}" for g in genes) if run.synthetic \
                else "the three genes MAD predicts best"  # fmt: skip
            run.figure(fig, "spatial_expression", "Measured (log-normalized) vs MAD-predicted "
                       f"expression in tissue coordinates ({why})")  # fmt: skip


def _cca(run: _Run) -> None:
    from . import tl

    adata = run.adata
    run.report.section("Canonical correlation with expression")
    if not run.has_genes:
        run.skip("CCA", "the table has no genes")
        return
    rows = []
    with run.stage("cca"):
        for m in _available(run):
            key = f"{UNS_CCA}_{m.mode}"
            tl.cca(adata, use_rep=m.rep, groupby=OBS_CELL_TYPE if run.has_types else None,
                   n_components=5, key_added=key, seed=run.seed)  # fmt: skip
            res = adata.uns[key]
            row = {"model": m.name}
            for i, r in enumerate(np.asarray(res["correlations"])[:5]):
                row[f"CC{i + 1}"] = float(r)
            row["mean CC1-5"] = float(np.mean(np.asarray(res["correlations"])[:5]))
            if "groups" in res:
                row["subtype centroids, CC1"] = float(np.asarray(res["groups"]["correlations"])[0])
            rows.append(row)
            run.metric(m.name, "cca_mean_r", row["mean CC1-5"])
    if rows:
        df = pd.DataFrame(rows)
        run.csv(df, "cca")
        run.report.table(df, "Held-out canonical correlations between each embedding and the "
                         "measured expression (both reduced to 50 PCs)"
                         + ("; last column: correlation of the subtype centroids on CC1"
                            if run.has_types else ""), index=False)  # fmt: skip


def _pseudotime(run: _Run) -> None:
    import matplotlib.pyplot as plt

    from . import pl, tl

    adata = run.adata
    run.report.section("Pseudotime")
    models = _available(run)
    if not models:
        return
    if run.has_trajectory:
        with run.stage("pseudotime"):
            traj = adata.obs[OBS_TRAJECTORY].to_numpy(float)
            sub = adata[np.isfinite(traj)].copy()
            root = sub.obs_names[int(np.argmin(sub.obs[OBS_TRAJECTORY].to_numpy(float)))]
            rows = []
            fig, axes = plt.subplots(1, len(models), figsize=(3.8 * len(models), 3.4),
                                     layout="constrained", squeeze=False)  # fmt: skip
            for ax, m in zip(axes[0], models, strict=True):
                key = f"{OBS_PSEUDOTIME}_{m.mode}"
                expr = "X" if (run.has_genes and m.mode == MODE_MAD) else None
                tl.pseudotime(sub, use_rep=m.rep, root=root, reference=OBS_TRAJECTORY,
                              expression=expr, key_added=key, seed=run.seed)  # fmt: skip
                info = sub.uns[key]
                r = info["reference"]["spearman"]
                row = {"model": m.name, "spearman vs trajectory": r,
                       "cells": info["reference"]["n_cells"]}  # fmt: skip
                if "expression" in info:
                    row["spearman vs expression DPT"] = info["expression"]["spearman"]
                    run.facts["expr_pt"] = info["expression"]["spearman"]
                rows.append(row)
                run.metric(m.name, "pseudotime_spearman", r)
                ax.scatter(sub.obs[OBS_TRAJECTORY], sub.obs[key], s=6, alpha=0.6,
                           color=PALETTE[m.name])  # fmt: skip
                ax.set_xlabel("ground-truth activation")
                ax.set_ylabel("diffusion pseudotime")
                ax.set_title(f"{m.name}: Spearman {r:.2f}")
            df = pd.DataFrame(rows)
            run.csv(df, "pseudotime")
            run.report.text(
                f"Diffusion pseudotime on the {sub.n_obs} cells with a ground-truth trajectory "
                "(stromal fibroblasts, activation rising towards the tumour nests), rooted at "
                "the least activated cell, compared with the true activation (Spearman)."
            )
            run.figure(fig, "pseudotime", "Pseudotime against ground-truth activation")
            run.report.table(df, "Spearman correlation of pseudotime with the trajectory"
                             + (" and, for MAD, with a DPT computed on expression from the "
                                "same root" if run.has_genes else ""), index=False)  # fmt: skip
        return
    run.skip("pseudotime vs ground truth", f"no '{OBS_TRAJECTORY}' column with values")
    with run.stage("pseudotime"):
        m = models[0]
        key = f"{OBS_PSEUDOTIME}_{m.mode}"
        tl.pseudotime(adata, use_rep=m.rep, expression="X" if run.has_genes else None,
                      key_added=key, seed=run.seed)  # fmt: skip
        info = adata.uns[key]
        text = (f"Diffusion pseudotime on the {m.name} embedding from an automatic root (one "
                "end of the first diffusion component; the direction is arbitrary).")  # fmt: skip
        if "expression" in info:
            text += (" Spearman with a pseudotime computed on expression from the same root: "
                     f"{info['expression']['spearman']:.2f}.")  # fmt: skip
        run.report.text(text)
        tl.umap(adata, use_rep=m.rep)
        fig = pl.umap(adata, use_rep=m.rep, color=key, return_fig=True)
        run.figure(fig, "pseudotime", f"{m.name} UMAP coloured by pseudotime")


def _de_groups(run: _Run) -> tuple[str, str, str] | None:
    obs = run.adata.obs
    if run.has_types:
        cats = set(obs[OBS_CELL_TYPE].astype(str))
        if {"CAF", "stromal_fibroblast"} <= cats:
            return OBS_CELL_TYPE, "CAF", "stromal_fibroblast"
        return OBS_CELL_TYPE, obs[OBS_CELL_TYPE].astype(str).value_counts().index[0], "rest"
    if OBS_LOUVAIN in obs:
        return OBS_LOUVAIN, "0", "rest"
    return None


def _de(run: _Run, gene_sets) -> None:
    import matplotlib.pyplot as plt

    from . import pl, tl

    adata = run.adata
    run.report.section("Differential expression and enrichment")
    groups = _de_groups(run)
    if not run.has_genes or groups is None:
        run.skip("differential expression", "no genes" if not run.has_genes else "no groups")
        return
    groupby, group, ref = groups
    with run.stage("differential expression"):
        de = {"measured": tl.differential_expression(
            adata, groupby=groupby, group=group, reference=ref, key_added=UNS_DE)}  # fmt: skip
        if LAYER_PRED in adata.layers:
            de["MAD-predicted"] = tl.differential_expression(
                adata, groupby=groupby, group=group, reference=ref, layer=LAYER_PRED,
                key_added=UNS_DE + "_predicted",
            )  # fmt: skip
        for k, df in de.items():
            run.csv(df, "de_" + ("measured" if k == "measured" else "predicted"))
        fig, axes = plt.subplots(1, len(de), figsize=(6 * len(de), 4.6), layout="constrained",
                                 squeeze=False)  # fmt: skip
        for ax, (k, df) in zip(axes[0], de.items(), strict=True):
            pl.volcano(df, ax=ax, title=f"{k}: {group} vs {ref}", show=False)
        run.figure(fig, "volcano", f"Volcano plots of {group} vs {ref} ({groupby}) on measured "
                   "and on MAD-predicted expression (Wilcoxon, BH-adjusted)")  # fmt: skip
        if len(de) == 2:
            m, p = (d.set_index("gene") for d in de.values())
            common = m.index.intersection(p.index)
            rho = m.loc[common, "log2FC"].corr(p.loc[common, "log2FC"], method="spearman")
            top_m = set(m[m["log2FC"] > 0].sort_values("fdr").index[:20])
            top_p = set(p[p["log2FC"] > 0].sort_values("fdr").index[:20])
            run.facts["de_rho"] = rho
            run.report.text(
                f"Measured and predicted log2 fold changes agree with Spearman {rho:.2f} over "
                f"{len(common)} genes; {len(top_m & top_p)} of the 20 most significant "
                "up-regulated genes are shared."
            )
    if gene_sets is None:
        run.skip("enrichment", "no gene sets (pass --gene-sets a .gmt file)")
        return
    with run.stage("enrichment"):
        enr = {k: tl.enrich(df, gene_sets=gene_sets) for k, df in de.items()}
        fig, axes = plt.subplots(1, len(enr), figsize=(6.2 * len(enr), 4), layout="constrained",
                                 squeeze=False)  # fmt: skip
        rows = []
        for ax, (k, df) in zip(axes[0], enr.items(), strict=True):
            run.csv(df, "enrichment_" + ("measured" if k == "measured" else "predicted"))
            if len(df):
                pl.enrichment(df, ax=ax, title=f"{k}: up in {group}", top=10, show=False)
            else:
                ax.set_axis_off()
                ax.set_title(f"{k}: no gene passed the DE thresholds")
            for _, r in df.head(5).iterrows():
                rows.append({"expression": k, "term": r["term"], "overlap": r["overlap"],
                             "set size": r["set_size"], "fdr": r["fdr"]})  # fmt: skip
        run.figure(fig, "enrichment", "Over-representation of the gene sets among genes up in "
                   f"{group} (hypergeometric, background: the panel)")  # fmt: skip
        if rows:
            run.report.table(pd.DataFrame(rows), "Top enriched sets", index=False,
                             float_format="{:.2g}")  # fmt: skip


# --------------------------------------------------------------------------- verdict
def _fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.3f}"


def _verdict(run: _Run) -> str:
    """Plain sentences comparing MAD with its ablations, whatever the outcome."""
    wide = run.metrics_wide()
    if wide.empty or "MAD" not in wide.index or len(wide.index) < 2:
        return "No comparison between models is available."
    names = {
        "louvain_ari": "Louvain ARI",
        "knn_accuracy": "kNN accuracy",
        "decoder_accuracy": "decoder accuracy",
        "expression_pearson": "mean expression Pearson r",
        "pseudotime_spearman": "pseudotime Spearman",
    }
    wins, losses, parts = [], [], []
    for key, label in names.items():
        if key not in wide:
            continue
        col = wide[key].dropna()
        if "MAD" not in col or len(col) < 2:
            continue
        others = col.drop("MAD")
        best = others.idxmax()
        parts.append(f"{label} {_fmt(col['MAD'])} (best ablation: {best} {_fmt(others.max())})")
        (wins if col["MAD"] > others.max() else losses).append(label)
    text = "MAD vs the single-view ablations: " + "; ".join(parts) + ". "
    if not losses:
        text += "MAD scores highest on every one of these."
    else:
        text += (
            f"MAD {'beats both ablations on ' + ', '.join(wins) if wins else 'beats neither ablation on any of them'}"
            f"{' but not on ' + ', '.join(losses) if wins else ''}. "
        )
    p = run.preset
    text += (
        f" These models saw {p['steps']} steps of {p['batch_size']} cells "
        f"(~{run.facts.get('epochs', float('nan')):.1f} epochs) of a "
        f"{'toy' if run.quick else 'small'} ViT on 2 CPU cores, orders of magnitude less than "
        "the paper's training (which also starts from DINOv2 weights, not from random ones). "
        "At this budget the run is in DINO's early phase (teacher entropy near ln K, "
        "cross-view recall near chance) and far from converged: the embeddings improve with "
        "every few hundred steps (see benchmarks/results/learning.md in the repository), "
        "and gaps of a few hundredths are within run-to-run noise."
    )
    if run.quick:
        text += " This is a --quick smoke run: its numbers are meaningless."
    return text


# --------------------------------------------------------------------------- main
def run_demo(
    *,
    out: str | Path = "demo_output",
    n_cells: int | None = None,
    seed: int = 0,
    quick: bool = False,
    sdata_path: str | Path | None = None,
    image_key: str | None = None,
    labels_key: str | None = None,
    table_key: str | None = None,
    gene_sets: str | Path | None = None,
    preset: dict[str, Any] | None = None,
    threads: int | None = None,
    strict: bool = False,
) -> Path:
    """Run the demo pipeline and write ``out/report.html``; returns the report path.

    Parameters
    ----------
    out
        Output folder: ``report.html``, ``figures/*.png``, CSV tables, trained models.
    n_cells
        Cells of the synthetic tissue (default from the preset).
    seed
        Seed of the tissue, training, clustering and decoders.
    quick
        Use :data:`QUICK_PRESET` (a smoke run of every step) instead of
        :data:`DEMO_CPU_PRESET`.
    sdata_path
        A SpatialData zarr to run on instead of the synthetic tissue.
    image_key, labels_key, table_key
        Elements of ``sdata_path`` (default: the first of each kind).
    gene_sets
        ``.gmt`` file for the enrichment of user data (the synthetic tissue brings its own).
    preset
        Overrides of the preset's entries.
    threads
        Torch CPU threads (default: the preset's ``"threads"``, else
        ``mad.settings.n_threads``, else every core this process may run on).
    strict
        Re-raise the first failing step instead of reporting it and going on.
    """
    import torch

    p = dict(QUICK_PRESET if quick else DEMO_CPU_PRESET)
    p.update(preset or {})
    threads_before = torch.get_num_threads()
    threads, why = _torch_threads(threads if threads is not None else p.get("threads"))
    torch.set_num_threads(threads)
    try:
        return _pipeline(
            p, out=out, n_cells=n_cells, seed=seed, quick=quick, sdata_path=sdata_path,
            image_key=image_key, labels_key=labels_key, table_key=table_key,
            gene_sets=gene_sets, strict=strict, threads=(threads, why),
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads_before)


def _pipeline(p, *, out, n_cells, seed, quick, sdata_path, image_key, labels_key, table_key,
              gene_sets, strict, threads) -> Path:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    wall0 = time.perf_counter()
    run = _Run(out=out, figdir=figdir, preset=p, seed=seed, quick=quick,
               synthetic=sdata_path is None, strict=strict,
               report=Report("madspatial demo report"))  # fmt: skip
    report = run.report

    with run.timer.step("load data"):
        run.sdata, image_key, labels_key, table_key, synthetic = _load_data(
            n_cells=n_cells, seed=seed, quick=quick, sdata_path=sdata_path, image_key=image_key,
            labels_key=labels_key, table_key=table_key, preset=p,
        )  # fmt: skip
        run.adata = run.sdata.tables[table_key]
    adata = run.adata
    report.text(
        f"{'Synthetic tissue' if synthetic else 'User data <code>' + html.escape(str(sdata_path)) + '</code>'}: "
        f"{adata.n_obs:,} cells, {adata.n_vars} genes, image <code>{html.escape(image_key)}</code> "
        f"of shape {_image_shape(run.sdata.images[image_key])}; seed {seed}."
    )
    glance = report.mark()
    report.text(
        f"<b>{'Quick smoke run' if quick else 'CPU preset'}.</b> To fit ~10 minutes on 2 CPU "
        "cores the demo uses a small ViT, small views and a short training (table below). "
        f"The paper's sizes stay the library default ({PAPER_SETTING}, 65,536 prototypes); "
        "<code>mad.tl.pretrain</code> and <code>mad.pp.cell_views</code> use them unless told "
        "otherwise.",
        note=True,
    )
    report.table(_preset_table(p, synthetic=synthetic), "Demo preset", index=False)
    report.text(f"Torch uses {threads[0]} CPU thread(s) ({threads[1]}).")
    plt.rcParams["figure.max_open_warning"] = 0

    with run.stage("tissue overview"):
        _tissue(run, image_key, labels_key, table_key)
    _views(run, image_key, labels_key, table_key)
    run.adata = adata = run.sdata.tables[table_key]
    with run.stage("example views"):
        _example_views(run)
    _pretrain(run)
    with run.stage("training report"):
        _training_report(run)
    _embed(run)
    _clusters(run)
    _decoders(run)
    with run.stage("expression plots"):
        _expression(run)
    _cca(run)
    _pseudotime(run)
    if gene_sets is None and synthetic:
        from .datasets import synthetic_gene_sets

        gene_sets = synthetic_gene_sets()
    elif gene_sets is not None:
        gene_sets = str(gene_sets)
    _de(run, gene_sets)

    # ------------------------------------------------------------------ closing summary
    wide = run.metrics_wide()
    if not wide.empty:
        run.csv(wide, "metrics", index=True)
        run.csv(pd.DataFrame(run.metrics), "metrics_long")
    verdict = _verdict(run)
    report.section("Summary")
    report.text(verdict)
    if not wide.empty:
        report.table(wide, "All metrics (metrics.csv)")
    if run.skipped:
        report.text("Skipped: " + "; ".join(html.escape(s) for s in run.skipped) + ".",
                    kind="skip")  # fmt: skip
    if run.failed:
        report.text("Failed steps: " + "; ".join(html.escape(s) for s in run.failed) + ".",
                    kind="fail")  # fmt: skip
    timings = run.timer.table()
    wall = time.perf_counter() - wall0
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    run.csv(timings, "timings", index=True)
    report.section("Timings")
    report.text(
        f"Wall time {wall:.0f} s with {threads[0]} torch thread(s) on {available_cores()} of "
        f"{os.cpu_count()} CPU core(s); 1-minute load average "
        f"{load0:.2f} at the start and {load1:.2f} at the end (above the core count means "
        "other processes shared the CPU and the times are inflated)."
    )
    report.table(
        timings,
        "Wall-clock and CPU seconds per step (CPU: this process, all threads; timings.csv)",
        float_format="{:.1f}",
    )
    report.insert(glance, "<b>At a glance.</b> " + verdict, note=False)
    path = report.write(out / "report.html")
    logger.info(
        "madspatial demo: %s\n%s\n%s\nreport written to %s (wall %.0f s, load %.2f -> %.2f)",
        verdict,
        wide.to_string(float_format=lambda v: f"{v:.3f}") if not wide.empty else "",
        timings.to_string(float_format=lambda v: f"{v:.1f}"),
        path,
        wall,
        load0,
        load1,
    )
    return path
