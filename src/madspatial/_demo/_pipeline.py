"""The demo's analysis steps, each a call of the public API.

Each leaves its results in the :class:`~madspatial._demo._state.Run` (``run.adata``,
``run.models``, returned tables); nothing here draws or writes the report.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._constants import (
    CELL_LABELS_KEY,
    IMAGE_KEY,
    LAYER_PRED,
    MODE_MAD,
    NORMALIZED_SUFFIX,
    OBS_CELL_TYPE,
    OBS_LOUVAIN,
    OBS_PSEUDOTIME,
    OBS_TRAJECTORY,
    OBSM_SPATIAL,
    TABLE_KEY,
    UNS_CCA,
    UNS_DE,
    UNS_DECODER_PREFIX,
)
from .._elements import pick_elements
from ._presets import DECODER_PATIENCE, MODELS, DemoModel
from ._state import Run

#: Parallel jobs of normalisation and view cutting (the demo's 2-core budget).
N_JOBS = 2
#: Canonical components kept by the CCA step.
N_CCA = 5


def load_data(*, n_cells, seed, sdata_path, image_key, labels_key, table_key, preset):
    """Load the user's SpatialData (its elements picked) or the synthetic tissue.

    Returns ``(sdata, image_key, labels_key, table_key, synthetic)``.
    """
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
    from ..datasets import synthetic_tissue

    sdata = synthetic_tissue(n_cells=n_cells or preset["n_cells"], seed=seed)
    return sdata, IMAGE_KEY, CELL_LABELS_KEY, TABLE_KEY, True


def image_shape(element) -> tuple[int, ...]:
    """Shape of an image element, single-scale or multiscale (its full-resolution level)."""
    if hasattr(element, "shape"):
        return tuple(element.shape)
    return tuple(element["scale0"].image.shape)


def normalize(run: Run, image_key: str) -> str:
    """Normalize the image unless it already is; returns the normalized image's key."""
    from .. import pp

    if image_key.endswith(NORMALIZED_SUFFIX):
        return image_key
    pp.normalize(run.sdata, image_key=image_key, n_jobs=N_JOBS, seed=run.seed)
    return image_key + NORMALIZED_SUFFIX


def cell_views(run: Run, image_key: str, norm_key: str, labels_key: str, table_key: str) -> None:
    """Cut every cell's two views (in memory, or a zarr store in ``out`` for large data)."""
    from .. import pp

    p = run.preset
    n_chan = image_shape(run.sdata.images[image_key])[0]
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
        n_jobs=N_JOBS,
    )
    run.adata = run.sdata.tables[table_key]
    if OBSM_SPATIAL not in run.adata.obsm:  # the maps need centroids: take the views'
        from ..io import read_views

        run.adata.obsm[OBSM_SPATIAL] = np.asarray(read_views(run.adata).centroid)


def pretrain_options(run: Run) -> dict:
    """``tl.pretrain`` options shared by the three models: one budget for all."""
    p = run.preset
    steps = p["steps"]
    return {
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


def pretrain(run: Run, m: DemoModel) -> None:
    """Pretrain one model into ``out/models/<mode>``."""
    from .. import tl

    with warnings.catch_warnings():
        # a short CPU run trips the collapse/weak-signal watch; the report shows it
        warnings.simplefilter("ignore", RuntimeWarning)
        run.models[m.name] = tl.pretrain(
            run.adata,
            mode=m.mode,
            checkpoint_dir=Path(run.out) / "models" / m.mode,
            **pretrain_options(run),
        )


def embed(run: Run, m: DemoModel) -> None:
    """Embed every cell with one trained model into ``obsm[m.rep]``."""
    from .. import tl

    tl.embed(run.adata, model=run.models[m.name], key_added=m.rep, precision="auto")


def louvain(run: Run, models: Sequence[DemoModel]) -> None:
    """Louvain clusters of each embedding (``obs[m.louvain_key]``)."""
    from .. import tl

    for m in models:
        tl.louvain(run.adata, use_rep=m.rep, key_added=m.louvain_key, seed=run.seed)


def umap(run: Run, m: DemoModel) -> None:
    """UMAP of one embedding."""
    from .. import tl

    tl.umap(run.adata, use_rep=m.rep)


def expression_decoder(run: Run) -> None:
    """Fit MAD's expression decoder and predict every cell (``layers["mad_pred"]``)."""
    from .. import tl

    mad = next(m for m in MODELS if m.mode == MODE_MAD)
    if mad.rep not in run.adata.obsm:
        return
    run.decoder = tl.fit_decoder(
        run.adata,
        target="expression",
        use_rep=mad.rep,
        key_added=f"{UNS_DECODER_PREFIX}expression_{mad.mode}",
        max_epochs=run.preset["decoder_epochs"],
        patience=DECODER_PATIENCE,
        seed=run.seed,
    )
    tl.predict(run.decoder, run.adata)  # -> layers["mad_pred"]


def cca(run: Run, models: Sequence[DemoModel]) -> pd.DataFrame:
    """Held-out canonical correlations of each embedding with the expression.

    Records ``cca_mean_r`` (no ``tl.evaluate`` equivalent).
    """
    from .. import tl

    rows = []
    for m in models:
        key = f"{UNS_CCA}_{m.mode}"
        tl.cca(
            run.adata,
            use_rep=m.rep,
            groupby=OBS_CELL_TYPE if run.has_types else None,
            n_components=N_CCA,
            key_added=key,
            seed=run.seed,
        )
        res = run.adata.uns[key]
        r = np.asarray(res["correlations"])[:N_CCA]
        row = {"model": m.name, **{f"CC{i + 1}": float(v) for i, v in enumerate(r)}}
        row["mean CC1-5"] = float(np.mean(r))
        if "groups" in res:
            row["subtype centroids, CC1"] = float(np.asarray(res["groups"]["correlations"])[0])
        rows.append(row)
        run.metric(m.name, "cca_mean_r", row["mean CC1-5"])
    return pd.DataFrame(rows)


def pseudotime_vs_truth(run: Run, models: Sequence[DemoModel]):
    """Diffusion pseudotime of each embedding on the cells with a ground-truth trajectory.

    Rooted at the least activated cell; records ``pseudotime_spearman`` (no
    ``tl.evaluate`` equivalent). Returns the subset AnnData and the per-model table.
    """
    from .. import tl

    traj = run.adata.obs[OBS_TRAJECTORY].to_numpy(float)
    sub = run.adata[np.isfinite(traj)].copy()
    root = sub.obs_names[int(np.argmin(sub.obs[OBS_TRAJECTORY].to_numpy(float)))]
    rows = []
    for m in models:
        key = f"{OBS_PSEUDOTIME}_{m.mode}"
        expr = "X" if (run.has_genes and m.mode == MODE_MAD) else None
        tl.pseudotime(
            sub,
            use_rep=m.rep,
            root=root,
            reference=OBS_TRAJECTORY,
            expression=expr,
            key_added=key,
            seed=run.seed,
        )
        info = sub.uns[key]
        r = info["reference"]["spearman"]
        row = {"model": m.name, "spearman vs trajectory": r, "cells": info["reference"]["n_cells"]}
        if "expression" in info:
            row["spearman vs expression DPT"] = info["expression"]["spearman"]
            run.facts["expr_pt"] = info["expression"]["spearman"]
        rows.append(row)
        run.metric(m.name, "pseudotime_spearman", r)
    return sub, pd.DataFrame(rows)


def pseudotime_auto(run: Run, m: DemoModel) -> str:
    """Diffusion pseudotime of one embedding from an automatic root, and its UMAP.

    For data without a ground-truth trajectory; returns the ``.obs`` key.
    """
    from .. import tl

    key = f"{OBS_PSEUDOTIME}_{m.mode}"
    tl.pseudotime(
        run.adata,
        use_rep=m.rep,
        expression="X" if run.has_genes else None,
        key_added=key,
        seed=run.seed,
    )
    tl.umap(run.adata, use_rep=m.rep)
    return key


def de_groups(run: Run) -> tuple[str, str, str] | None:
    """``(groupby, group, reference)`` of the DE test.

    The synthetic tissue's planted contrast when its subtypes are there, else the
    commonest type (or Louvain cluster 0) against the rest.
    """
    from ..datasets import DE_CONTRAST

    obs = run.adata.obs
    if run.has_types:
        if set(DE_CONTRAST) <= set(obs[OBS_CELL_TYPE].astype(str)):
            return OBS_CELL_TYPE, *DE_CONTRAST
        return OBS_CELL_TYPE, obs[OBS_CELL_TYPE].astype(str).value_counts().index[0], "rest"
    if OBS_LOUVAIN in obs:
        return OBS_LOUVAIN, "0", "rest"
    return None


def differential_expression(run: Run, groups: tuple[str, str, str]) -> dict[str, pd.DataFrame]:
    """DE of ``group`` vs ``reference`` on measured and (if predicted) MAD-predicted expression.

    Keyed ``"measured"`` / ``"MAD-predicted"``.
    """
    from .. import tl

    groupby, group, ref = groups
    kw = {"groupby": groupby, "group": group, "reference": ref}
    de = {"measured": tl.differential_expression(run.adata, key_added=UNS_DE, **kw)}
    if LAYER_PRED in run.adata.layers:
        de["MAD-predicted"] = tl.differential_expression(
            run.adata, layer=LAYER_PRED, key_added=UNS_DE + "_predicted", **kw
        )
    return de


def enrichment(de: dict[str, pd.DataFrame], gene_sets) -> dict[str, pd.DataFrame]:
    """Over-representation of ``gene_sets`` among each DE table's up-regulated genes."""
    from .. import tl

    return {k: tl.enrich(df, gene_sets=gene_sets) for k, df in de.items()}
