"""The report's sections: the figures and prose of each step.

They are drawn from what the pipeline and the scoring left in the run. Figures are
:class:`matplotlib.figure.Figure` objects (no pyplot state) or the ``pl`` functions'
figures, which :meth:`Report.figure` closes.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from .._constants import OBS_BORDER, OBS_CELL_TYPE, OBS_MORPH_CLASS, OBS_NICHE, OBS_TRAJECTORY
from ._pipeline import image_shape
from ._presets import PALETTE, PAPER_SETTING, DemoModel, preset_table
from ._state import Run


def _grid(nrows: int, ncols: int, figsize: tuple[float, float]):
    """Make a constrained-layout figure of ``nrows x ncols`` axes, outside pyplot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _model_size(model) -> str:
    n = sum(t.numel() for t in model.parameters())
    return f"{n / 1e6:.2f} M"


def summary_table(adata) -> pd.DataFrame:
    """Cells per subtype, with their morphological class and niche (synthetic ground truth)."""
    obs = adata.obs
    cols = [c for c in (OBS_CELL_TYPE, OBS_MORPH_CLASS, OBS_NICHE) if c in obs]
    if not cols:
        return pd.DataFrame({"cells": [adata.n_obs]}, index=["all"])
    g = obs.groupby(cols, observed=True).size().rename("cells").reset_index()
    g["share"] = g["cells"] / g["cells"].sum()
    return g


# --------------------------------------------------------------------------- introduction
def introduction(run: Run, *, sdata_path, image_key: str, threads: tuple[int, str]) -> int:
    """Describe the data, the preset and the threads; return the at-a-glance note's position."""
    adata, report = run.adata, run.report
    what = (
        "Synthetic tissue"
        if run.synthetic
        else f"User data <code>{html.escape(str(sdata_path))}</code>"
    )
    report.text(
        f"{what}: {adata.n_obs:,} cells, {adata.n_vars} genes, image "
        f"<code>{html.escape(image_key)}</code> of shape "
        f"{image_shape(run.sdata.images[image_key])}; seed {run.seed}."
    )
    glance = report.mark()
    report.text(
        f"<b>{'Quick smoke run' if run.quick else 'CPU preset'}.</b> To fit ~10 minutes on 2 "
        "CPU cores the demo uses a small ViT, small views and a short training (table below). "
        f"The paper's sizes stay the library default ({PAPER_SETTING}, 65,536 prototypes); "
        "<code>mad.tl.pretrain</code> and <code>mad.pp.cell_views</code> use them unless told "
        "otherwise.",
        note=True,
    )
    report.table(preset_table(run.preset, synthetic=run.synthetic), "Demo preset", index=False)
    report.text(f"Torch uses {threads[0]} CPU thread(s) ({threads[1]}).")
    return glance


# --------------------------------------------------------------------------- tissue, views
def tissue(run: Run, image_key: str, labels_key: str, table_key: str) -> None:
    """Overview image and the cells per subtype."""
    from .. import pl

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
    summary = summary_table(run.adata)
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


def _example_cells(run: Run) -> tuple[list[int], str | None]:
    """One random inner cell per subtype, or six random cells without subtypes."""
    adata = run.adata
    rng = np.random.default_rng(run.seed)
    inner = ~adata.obs[OBS_BORDER].to_numpy(bool) if OBS_BORDER in adata.obs else None
    if run.has_types:
        cells = []
        types = adata.obs[OBS_CELL_TYPE]
        for t in types.cat.categories if hasattr(types, "cat") else pd.unique(types):
            idx = np.flatnonzero((types == t).to_numpy() & (inner if inner is not None else True))
            if len(idx):
                cells.append(int(rng.choice(idx)))
        return cells, OBS_CELL_TYPE
    pool = np.flatnonzero(inner) if inner is not None and inner.any() else np.arange(adata.n_obs)
    return sorted(rng.choice(pool, size=min(6, len(pool)), replace=False).tolist()), None


def example_views(run: Run) -> None:
    """Show what the two views are, and a few cells' views."""
    from .. import pl
    from .._constants import UNS_VIEWS

    info = run.adata.uns[UNS_VIEWS]
    run.report.text(
        f"Every cell gets a <b>morphology view</b> (the segmented cell alone, everything "
        f"outside its mask set to 0; a {info['morphology_window_px']:.0f} px window resized to "
        f"{info['morphology_size']} px) and a <b>microenvironment view</b> (a "
        f"{info['window_px']:.0f} px window holding ~{info['n_neighbors']} neighbours, resized "
        f"to {info['microenvironment_size']} px). {info.get('n_border', 0)} cells touch the "
        "image border (zero-padded)."
    )
    cells, label = _example_cells(run)
    fig = pl.cell_views(run.adata, cells=cells, label=label, ncols=4, return_fig=True)
    which = "one random cell per subtype" if label else "random cells"
    run.figure(fig, "cell_views", f"Morphology (left) and microenvironment (right) view of {which}")


# --------------------------------------------------------------------------- pretraining
def _training_table(run: Run) -> pd.DataFrame:
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
    return pd.DataFrame(rows)


def _loss_name(run: Run) -> str:
    """Which loss the MAD model trained (what ``recipe="auto"`` chose for its length)."""
    mad = [m for m in run.models.values() if m.config.mode == "mad"]
    if not mad:
        return "no MAD model"
    if mad[0].config.predictor_heads:
        return (
            'the predictor-heads recipe, which <code>recipe="auto"</code> trains from 1,000 steps'
        )
    return (
        'the paper\'s loss, which <code>recipe="auto"</code> trains below 1,000 steps '
        "(longer runs get the predictor-heads recipe)"
    )


def training(run: Run) -> None:
    """Report the shared budget, the training curves and the end-of-training table."""
    from .. import pl

    p = run.preset
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
        "with head). MAD distils both views into one backbone (with cross-view terms: "
        f"{_loss_name(run)}); the ablations see one view only."
    )
    fig = pl.training_curves(dict(run.models), palette=PALETTE, smooth=5, return_fig=True)
    run.figure(
        fig,
        "training_curves",
        "Loss (dashed: ln K, the uniform-collapse level), learning rate, teacher temperature "
        "and held-out cross-view Recall@K, all three models overlaid",
    )
    df = _training_table(run)
    run.csv(df, "training")
    run.report.table(
        df, "End of training (loss and entropy: mean of the last 5 steps)", index=False
    )
    collapsed = df.loc[df["collapsed"], "model"].tolist()
    if collapsed:
        run.report.text(
            f"The collapse watch flags {', '.join(collapsed)}: the teacher's outputs are "
            "(nearly) uniform, expected this early in a DINO run. The embeddings are still "
            "the backbone's class tokens, which carry the views' structure (see below).",
            note=True,
        )


# --------------------------------------------------------------------------- clusters
def umap_figure(run: Run, models: list[DemoModel]) -> None:
    """Each model's UMAP: ground truth (when known) and Louvain clusters with their ARI."""
    from .. import pl

    adata = run.adata
    ncol = 2 if run.has_types else 1
    fig, axes = _grid(len(models), ncol, (6.2 * ncol, 4.6 * len(models)))
    size = max(4.0, min(30.0, 60000 / adata.n_obs))
    wide = run.metrics_wide()
    for i, m in enumerate(models):
        col = 0
        if run.has_types:
            pl.umap(
                adata,
                use_rep=m.rep,
                color=OBS_CELL_TYPE,
                ax=axes[i, 0],
                show=False,
                title=f"{m.name}: ground truth",
                size=size,
                legend_loc="right margin" if i == 0 else "none",
            )
            col = 1
        title = f"{m.name}: Louvain ({int(wide.loc[m.name, 'louvain_n_clusters'])} clusters)"
        if run.has_types:
            title += f", ARI {wide.loc[m.name, 'louvain_ari']:.2f}"
        pl.umap(
            adata,
            use_rep=m.rep,
            color=m.louvain_key,
            ax=axes[i, col],
            show=False,
            title=title,
            size=size,
            legend_loc="on data",
            legend_fontsize=7,
        )
    caption = (
        "UMAP of each model's embedding (cosine kNN graph of 30 neighbours, min_dist 0.1, "
        "seed 42): ground-truth subtype (left) and Louvain clusters with the adjusted Rand "
        "index against the subtypes (right)"
        if run.has_types
        else "UMAP of each model's embedding, Louvain clusters"
    )
    run.figure(fig, "umap", caption)


# --------------------------------------------------------------------------- metrics
def metrics(run: Run, pairs: pd.DataFrame | None) -> None:
    """Report the metrics table (metrics.csv), its bars, and the per-pair probe accuracy."""
    from .. import pl

    wide = run.metrics_wide()
    if wide.empty:
        return
    run.csv(wide, "metrics", index=True)
    run.csv(pd.DataFrame(run.metrics), "metrics_long")
    run.report.table(
        wide,
        "Per model, from mad.tl.evaluate (one seed, no bootstrap): Louvain ARI and purity "
        "against the subtypes, number of clusters (of tl.louvain, all cells), kNN-probe "
        "accuracy (5-fold, cosine, 15 neighbours), held-out accuracy of a 2-layer MLP decoder "
        "(plain and class-balanced), "
        "mean held-out Pearson r of the expression decoder over genes, and MAD's cross-view "
        "Recall@10 (morphology token -> microenvironment token of the same cell, both "
        f"directions; chance {10 / run.adata.n_obs:.4f}). Also in metrics.csv.",
    )
    tidy = pd.DataFrame(run.metrics).rename(columns={"model": "rep"})
    tidy = tidy[tidy["metric"] != "louvain_n_clusters"]
    if not tidy.empty:
        fig = pl.embedding_comparison(tidy, palette=PALETTE, return_fig=True)
        run.figure(fig, "metrics", "The metrics table as bars, one colour per model")
    if pairs is None or pairs.empty:
        return
    run.csv(pairs, "pair_accuracy")
    run.facts["pairs"] = pairs
    run.report.table(
        pairs,
        "kNN-probe accuracy (out of fold) on the cells of each designed subtype pair: the share "
        "of the pair's cells given their own label. A morphology-only model should fail the "
        "niche pairs and a microenvironment-only model the morphology pair; MAD should manage "
        "both.",
        index=False,
    )


# --------------------------------------------------------------------------- expression
def expression(run: Run) -> None:
    """Per-gene accuracy of the expression decoders and maps of a few genes."""
    from .. import pl
    from .._constants import LAYER_PRED
    from ..datasets import SHOWCASE_GENES

    adata = run.adata
    if run.per_gene is None or run.per_gene.empty:
        run.skip("expression plots", "no expression decoder was fitted")
        return
    run.csv(run.per_gene.rename_axis("gene"), "per_gene_pearson", index=True)
    fig = pl.gene_correlation(run.per_gene, reference="MAD", palette=PALETTE, return_fig=True)
    run.figure(
        fig,
        "gene_correlation",
        "Held-out Pearson r per gene: MAD's bars sorted, the ablations as lines (left); MAD "
        "against each ablation per gene (right)",
    )
    mad_r = run.per_gene.get("MAD")
    if mad_r is None:
        return
    if run.synthetic:
        genes = [g for g in SHOWCASE_GENES if g in adata.var_names]
        why = "; ".join(f"{g}: {SHOWCASE_GENES[g]}" for g in genes)
    else:
        genes = mad_r.dropna().sort_values(ascending=False).index[:3].tolist()
        why = "the three genes MAD predicts best"
    if LAYER_PRED in adata.layers and genes:
        fig = pl.spatial_expression(adata, genes=genes, return_fig=True)
        run.figure(
            fig,
            "spatial_expression",
            f"Measured (log-normalized) vs MAD-predicted expression in tissue coordinates ({why})",
        )


def cca(run: Run, df: pd.DataFrame) -> None:
    """Report the canonical correlations table (cca.csv)."""
    if df.empty:
        return
    run.csv(df, "cca")
    caption = (
        "Held-out canonical correlations between each embedding and the measured expression "
        "(both reduced to 50 PCs)"
    )
    if run.has_types:
        caption += "; last column: correlation of the subtype centroids on CC1"
    run.report.table(df, caption, index=False)


# --------------------------------------------------------------------------- pseudotime
def pseudotime_vs_truth(run: Run, sub, df: pd.DataFrame, models: list[DemoModel]) -> None:
    """Pseudotime against the ground-truth activation, one panel per model."""
    from .._constants import OBS_PSEUDOTIME
    from ..datasets import TRAJECTORY_CELL_TYPE

    fig, axes = _grid(1, len(models), (3.8 * len(models), 3.4))
    for ax, m, r in zip(axes[0], models, df["spearman vs trajectory"], strict=True):
        key = f"{OBS_PSEUDOTIME}_{m.mode}"
        ax.scatter(sub.obs[OBS_TRAJECTORY], sub.obs[key], s=6, alpha=0.6, color=PALETTE[m.name])
        ax.set_xlabel("ground-truth activation")
        ax.set_ylabel("diffusion pseudotime")
        ax.set_title(f"{m.name}: Spearman {r:.2f}")
    run.csv(df, "pseudotime")
    who = (
        f"{TRAJECTORY_CELL_TYPE.replace('_', ' ')}s, activation rising towards the tumour nests"
        if run.synthetic
        else "ground-truth trajectory"
    )
    run.report.text(
        f"Diffusion pseudotime on the {sub.n_obs} cells with a ground-truth trajectory "
        f"({who}), rooted at the least activated cell, compared with the true activation "
        "(Spearman)."
    )
    run.figure(fig, "pseudotime", "Pseudotime against ground-truth activation")
    caption = "Spearman correlation of pseudotime with the trajectory"
    if run.has_genes:
        caption += " and, for MAD, with a DPT computed on expression from the same root"
    run.report.table(df, caption, index=False)


def pseudotime_auto(run: Run, m: DemoModel, key: str) -> None:
    """Pseudotime from an automatic root, on the UMAP."""
    from .. import pl

    info = run.adata.uns[key]
    text = (
        f"Diffusion pseudotime on the {m.name} embedding from an automatic root (one end of "
        "the first diffusion component; the direction is arbitrary)."
    )
    if "expression" in info:
        text += (
            " Spearman with a pseudotime computed on expression from the same root: "
            f"{info['expression']['spearman']:.2f}."
        )
    run.report.text(text)
    fig = pl.umap(run.adata, use_rep=m.rep, color=key, return_fig=True)
    run.figure(fig, "pseudotime", f"{m.name} UMAP coloured by pseudotime")


# --------------------------------------------------------------------------- DE, enrichment
def _file_key(k: str) -> str:
    return "measured" if k == "measured" else "predicted"


def differential_expression(run: Run, de: dict[str, pd.DataFrame], groups) -> None:
    """Volcano plots (de_*.csv) and the agreement of measured and predicted fold changes."""
    from .. import pl

    groupby, group, ref = groups
    for k, df in de.items():
        run.csv(df, "de_" + _file_key(k))
    fig, axes = _grid(1, len(de), (6 * len(de), 4.6))
    for ax, (k, df) in zip(axes[0], de.items(), strict=True):
        pl.volcano(df, ax=ax, title=f"{k}: {group} vs {ref}", show=False)
    run.figure(
        fig,
        "volcano",
        f"Volcano plots of {group} vs {ref} ({groupby}) on measured and on MAD-predicted "
        "expression (Wilcoxon, BH-adjusted)",
    )
    if len(de) != 2:
        return
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


def enrichment(run: Run, enr: dict[str, pd.DataFrame], group: str) -> None:
    """Enrichment bars (enrichment_*.csv) and the top sets."""
    from .. import pl

    fig, axes = _grid(1, len(enr), (6.2 * len(enr), 4))
    rows = []
    for ax, (k, df) in zip(axes[0], enr.items(), strict=True):
        run.csv(df, "enrichment_" + _file_key(k))
        if len(df):
            pl.enrichment(df, ax=ax, title=f"{k}: up in {group}", top=10, show=False)
        else:
            ax.set_axis_off()
            ax.set_title(f"{k}: no gene passed the DE thresholds")
        for _, r in df.head(5).iterrows():
            rows.append(
                {
                    "expression": k,
                    "term": r["term"],
                    "overlap": r["overlap"],
                    "set size": r["set_size"],
                    "fdr": r["fdr"],
                }
            )
    run.figure(
        fig,
        "enrichment",
        f"Over-representation of the gene sets among genes up in {group} (hypergeometric, "
        "background: the panel)",
    )
    if rows:
        run.report.table(
            pd.DataFrame(rows), "Top enriched sets", index=False, float_format="{:.2g}"
        )


# --------------------------------------------------------------------------- summary
def _fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.3f}"


#: Scores the verdict compares, with their names in prose.
VERDICT_METRICS = {
    "louvain_ari": "Louvain ARI",
    "knn_accuracy": "kNN accuracy",
    "decoder_accuracy": "decoder accuracy",
    "expression_pearson": "mean expression Pearson r",
    "pseudotime_spearman": "pseudotime Spearman",
}


def verdict(run: Run) -> str:
    """Plain sentences comparing MAD with its ablations, whatever the outcome."""
    wide = run.metrics_wide()
    if wide.empty or "MAD" not in wide.index or len(wide.index) < 2:
        return "No comparison between models is available."
    wins, losses, parts = [], [], []
    for key, label in VERDICT_METRICS.items():
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
    elif wins:
        text += f"MAD beats both ablations on {', '.join(wins)} but not on {', '.join(losses)}. "
    else:
        text += "MAD beats neither ablation on any of them. "
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


def summary(run: Run, text: str) -> pd.DataFrame:
    """Report the verdict, all metrics, and what was skipped or failed; return the metrics."""
    wide = run.metrics_wide()
    if not wide.empty:
        run.csv(wide, "metrics", index=True)
        run.csv(pd.DataFrame(run.metrics), "metrics_long")
    run.report.text(text)
    if not wide.empty:
        run.report.table(
            wide,
            "All metrics (metrics.csv); cca_mean_r and pseudotime_spearman come from tl.cca "
            "and tl.pseudotime (tl.evaluate has no CCA or trajectory score), the rest from "
            "tl.evaluate",
        )
    if run.skipped:
        listed = "; ".join(html.escape(s) for s in run.skipped)
        run.report.text(f"Skipped: {listed}.", kind="skip")
    if run.failed:
        listed = "; ".join(html.escape(s) for s in run.failed)
        run.report.text(f"Failed steps: {listed}.", kind="fail")
    return wide


def timings(run: Run, timings: pd.DataFrame, *, wall, threads, cores, loads) -> None:
    """Wall time, threads, load, and the per-step table (timings.csv)."""
    import os

    run.csv(timings, "timings", index=True)
    run.report.text(
        f"Wall time {wall:.0f} s with {threads} torch thread(s) on {cores} of "
        f"{os.cpu_count()} CPU core(s); 1-minute load average "
        f"{loads[0]:.2f} at the start and {loads[1]:.2f} at the end (above the core count "
        "means other processes shared the CPU and the times are inflated)."
    )
    run.report.table(
        timings,
        "Wall-clock and CPU seconds per step (CPU: this process, all threads; timings.csv)",
        float_format="{:.1f}",
    )
