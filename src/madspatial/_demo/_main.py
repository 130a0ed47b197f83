"""``run_demo``: the steps in report order, each timed, its failure reported.

Then the summary, the timings and ``report.html``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .._constants import OBS_CELL_TYPE, OBS_TRAJECTORY
from .._logging import logger
from .._settings import available_cores
from . import _pipeline as pipeline
from . import _scoring as scoring
from . import _sections as sections
from ._presets import DEMO_CPU_PRESET, MODELS, QUICK_PRESET, torch_threads
from ._state import Run


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
    import matplotlib
    import torch

    p = dict(QUICK_PRESET if quick else DEMO_CPU_PRESET)
    p.update(preset or {})
    threads_before = torch.get_num_threads()
    n_threads = torch_threads(threads if threads is not None else p.get("threads"))
    torch.set_num_threads(n_threads[0])
    try:
        # many figures are alive at once before the report closes them: no warning for it
        with matplotlib.rc_context({"figure.max_open_warning": 0}):
            return _demo(
                p,
                out=Path(out),
                n_cells=n_cells,
                seed=seed,
                quick=quick,
                sdata_path=sdata_path,
                keys=(image_key, labels_key, table_key),
                gene_sets=gene_sets,
                strict=strict,
                threads=n_threads,
            )
    finally:
        torch.set_num_threads(threads_before)


def _load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _demo(p, *, out, n_cells, seed, quick, sdata_path, keys, gene_sets, strict, threads) -> Path:
    run = Run(
        out=out, preset=p, seed=seed, quick=quick, synthetic=sdata_path is None, strict=strict
    )
    run.figdir.mkdir(parents=True, exist_ok=True)
    load0, wall0 = _load_average(), time.perf_counter()
    with run.timer.step("load data"):
        run.sdata, image_key, labels_key, table_key, run.synthetic = pipeline.load_data(
            n_cells=n_cells,
            seed=seed,
            sdata_path=sdata_path,
            image_key=keys[0],
            labels_key=keys[1],
            table_key=keys[2],
            preset=p,
        )
        run.adata = run.sdata.tables[table_key]
    glance = sections.introduction(run, sdata_path=sdata_path, image_key=image_key, threads=threads)
    _tissue_and_views(run, image_key, labels_key, table_key)
    _pretraining(run)
    _clusters(run)
    _metrics(run)
    _downstream(run, gene_sets)

    text = sections.verdict(run)
    run.report.section("Summary")
    wide = sections.summary(run, text)
    timings = run.timer.table()
    wall, load1 = time.perf_counter() - wall0, _load_average()
    run.report.section("Timings")
    sections.timings(
        run, timings, wall=wall, threads=threads[0], cores=available_cores(), loads=(load0, load1)
    )
    run.report.insert(glance, "<b>At a glance.</b> " + text, note=False)
    path = run.report.write(out / "report.html")
    logger.info(
        "madspatial demo: %s\n%s\n%s\nreport written to %s (wall %.0f s, load %.2f -> %.2f)",
        text,
        wide.to_string(float_format=lambda v: f"{v:.3f}") if not wide.empty else "",
        timings.to_string(float_format=lambda v: f"{v:.1f}"),
        path,
        wall,
        load0,
        load1,
    )
    return path


def _tissue_and_views(run: Run, image_key: str, labels_key: str, table_key: str) -> None:
    run.report.section("Tissue")
    with run.stage("tissue overview"):
        sections.tissue(run, image_key, labels_key, table_key)
    with run.timer.step("normalize"):
        norm_key = pipeline.normalize(run, image_key)
    with run.timer.step("cell views"):
        pipeline.cell_views(run, image_key, norm_key, labels_key, table_key)
    run.report.section("Cell views")
    with run.stage("example views"):
        sections.example_views(run)


def _pretraining(run: Run) -> None:
    for m in MODELS:
        with run.stage(f"pretrain {m.name}"):
            pipeline.pretrain(run, m)
    run.report.section("Pretraining")
    with run.stage("training report"):
        sections.training(run)
    for m in MODELS:
        if m.name in run.models:
            with run.stage(f"embed {m.name}"):
                pipeline.embed(run, m)


def _record(run: Run, scores: pd.DataFrame) -> None:
    for r in scores.itertuples(index=False):
        run.metric(r.model, r.metric, r.value)


def _clusters(run: Run) -> None:
    run.report.section("Embeddings and clusters")
    models = run.available()
    if not models:
        run.skip("clustering", "no embedding")
        return
    labels = OBS_CELL_TYPE if run.has_types else None
    with run.stage("louvain"):
        pipeline.louvain(run, models)
        _record(run, scoring.cluster_scores(run.adata, models, labels=labels, seed=run.seed))
    if labels is None:
        run.skip("ARI and purity", f"the table has no '{OBS_CELL_TYPE}' column to compare with")
    with run.stage("umap"):
        for m in models:
            pipeline.umap(run, m)
        sections.umap_figure(run, models)


def _metrics(run: Run) -> None:
    from ..datasets import MORPHOLOGY_ONLY_PAIRS, NICHE_ONLY_PAIRS

    run.report.section("Metrics")
    models = run.available()
    epochs = run.preset["decoder_epochs"]
    pairs = None
    if run.has_types and models:
        with run.stage("cell type probes and decoders"):
            scores = scoring.label_scores(
                run.adata, models, labels=OBS_CELL_TYPE, seed=run.seed, decoder_epochs=epochs
            )
            _record(run, scores)
            truth, preds = scoring.knn_predictions(
                run.adata, models, labels=OBS_CELL_TYPE, seed=run.seed
            )
            pairs = scoring.pair_accuracy(
                truth, preds, {"morphology": MORPHOLOGY_ONLY_PAIRS, "niche": NICHE_ONLY_PAIRS}
            )
    elif not run.has_types:
        run.skip("cell-type probes and decoders", f"no '{OBS_CELL_TYPE}' column")
    if run.has_genes and models:
        with run.stage("expression decoders"):
            scores, run.per_gene = scoring.expression_scores(
                run.adata, models, seed=run.seed, decoder_epochs=epochs
            )
            _record(run, scores)
            pipeline.expression_decoder(run)
    elif not run.has_genes:
        run.skip("expression decoders", "the table has no genes")
    if models:
        _record(run, scoring.recall_scores(run.adata, models))
    sections.metrics(run, pairs)


def _downstream(run: Run, gene_sets) -> None:
    run.report.section("Virtual spatial expression")
    with run.stage("expression plots"):
        sections.expression(run)
    _cca(run)
    _pseudotime(run)
    if gene_sets is None and run.synthetic:
        from ..datasets import synthetic_gene_sets

        gene_sets = synthetic_gene_sets()
    elif gene_sets is not None:
        gene_sets = str(gene_sets)
    _de(run, gene_sets)


def _cca(run: Run) -> None:
    run.report.section("Canonical correlation with expression")
    if not run.has_genes:
        run.skip("CCA", "the table has no genes")
        return
    df = pd.DataFrame()
    with run.stage("cca"):
        df = pipeline.cca(run, run.available())
    sections.cca(run, df)


def _pseudotime(run: Run) -> None:
    run.report.section("Pseudotime")
    models = run.available()
    if not models:
        return
    if run.has_trajectory:
        with run.stage("pseudotime"):
            sub, df = pipeline.pseudotime_vs_truth(run, models)
            sections.pseudotime_vs_truth(run, sub, df, models)
        return
    run.skip("pseudotime vs ground truth", f"no '{OBS_TRAJECTORY}' column with values")
    with run.stage("pseudotime"):
        key = pipeline.pseudotime_auto(run, models[0])
        sections.pseudotime_auto(run, models[0], key)


def _de(run: Run, gene_sets) -> None:
    run.report.section("Differential expression and enrichment")
    groups = pipeline.de_groups(run)
    if not run.has_genes or groups is None:
        run.skip("differential expression", "no genes" if not run.has_genes else "no groups")
        return
    de = {}
    with run.stage("differential expression"):
        de = pipeline.differential_expression(run, groups)
        sections.differential_expression(run, de, groups)
    if gene_sets is None:
        run.skip("enrichment", "no gene sets (pass --gene-sets a .gmt file)")
        return
    with run.stage("enrichment"):
        sections.enrichment(run, pipeline.enrichment(de, gene_sets), groups[1])
