"""Science benchmark: does MAD reproduce the paper's central claims on known ground truth?

On the synthetic tissue (8 subtypes: three niche-only pairs, one morphology-only pair,
a fibroblast trajectory, planted gene programs) six embeddings are compared:

- ``MAD``: ``mad.tl.pretrain(mode="mad")`` (both views + cross-view distillation);
- ``morphology``: ``mode="morphology"`` (the cell alone);
- ``microenvironment``: ``mode="microenvironment"`` (the cell in its neighbourhood);
- ``MAD_untrained``: the MAD model's architecture at its random initialisation (seeded like
  the learned ones), embedded without any training: what training adds is measured
  against it;
- ``pixel_pca``: PCA of average-pooled raw view pixels (both views, not learned);
- ``handcrafted``: regionprops morphology + squidpy-style neighbourhood composition
  (see ``_science_baselines.py``; no ground truth used).

The three learned embeddings get the same backbone, steps, batch, crops, optimizer and
seeds. Every score is computed once per seed (for learned embeddings the seed is the
pretraining seed *and* the evaluation seed), reported as the mean over seeds with a
95% t-interval over seeds, next to the mean of the per-seed bootstrap 95% CIs
(evaluation-set uncertainty, from ``mad.tl.evaluate``).

Then a small pipeline on real CosMx data (``mad.datasets.cosmx_lung_mini``, 120 cells):
decoders predicting expression-derived clusters under cross-validation.

    python benchmarks/bench_science.py            # full run, writes benchmarks/results/science.*
    python benchmarks/bench_science.py --quick    # smoke run (~2-3 min), writes *_quick.*
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _science_baselines import handcrafted, pixel_pca

RESULTS = Path(__file__).resolve().parent / "results"
LEARNED = ("MAD", "morphology", "microenvironment")
BASELINES = ("MAD_untrained", "pixel_pca", "handcrafted")
PER_SEED_BASELINES = ("MAD_untrained",)
MODE_OF = {"MAD": "mad", "morphology": "morphology", "microenvironment": "microenvironment"}
#: The planted subtype program of each subtype (datasets.synthetic_tissue docstring / .gmt).
SUBTYPE_PROGRAM = {
    "tumour_proliferative": "PROLIFERATION",
    "tumour_quiescent": "TUMOUR_DIFFERENTIATION",
    "CAF": "CAF",
    "stromal_fibroblast": "STROMAL_FIBROBLAST",
    "TAM": "TAM",
    "stromal_macrophage": "RESIDENT_MACROPHAGE",
    "T_cell": "T_CELL",
    "B_cell": "B_CELL",
}
TOP_N = 20


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- data
def prepare_tissue(n_cells: int, *, seed: int = 0, micro_size: int = 112, morph_size: int = 70):
    """Synthetic tissue, normalized, with cell views in memory; returns ``(sdata, store)``."""
    import madspatial as mad

    sdata = mad.datasets.synthetic_tissue(n_cells=n_cells, seed=seed)
    mad.pp.normalize(sdata, image_key="morphology")
    mad.pp.cell_views(
        sdata,
        image_key="morphology_normalized",
        labels_key="cell_labels",
        morphology_size=morph_size,
        microenvironment_size=micro_size,
    )
    return sdata, mad.io.read_views(sdata)


def baseline_embeddings(
    sdata,
    store,
    *,
    seed: int = 0,
    n_neighbors: int = 25,
    n_morph_clusters: int = 10,
    n_components: int = 50,
) -> dict:
    """``{"pixel_pca": array, "handcrafted": array}`` in the table's row order."""
    table = sdata.tables["table"]
    image_key = "morphology_normalized" if "morphology_normalized" in sdata.images else "morphology"
    image = np.asarray(sdata.images[image_key].values, dtype=np.float32)
    cells = np.asarray(sdata.labels["cell_labels"].values)
    nuclei = (
        np.asarray(sdata.labels["nucleus_labels"].values)
        if "nucleus_labels" in sdata.labels
        else None
    )
    ids = table.obs["instance_id"].to_numpy()
    if not np.array_equal(np.asarray(store.instance_id), ids):
        raise ValueError("view store rows do not follow the table's rows")
    hand, _ = handcrafted(
        image,
        cells,
        ids,
        table.obsm["spatial"],
        nucleus_labels=nuclei,
        n_neighbors=n_neighbors,
        n_morph_clusters=n_morph_clusters,
        seed=seed,
    )
    pix = pixel_pca(store, n_components=n_components, seed=seed)
    return {"pixel_pca": pix, "handcrafted": hand}


def train_config(args) -> dict:
    """Pretraining options shared by every learned embedding (same budget)."""
    return dict(
        model=args.model,
        max_steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        n_prototypes=args.prototypes,
        head_hidden_dim=256,
        head_bottleneck_dim=64,
        n_local=args.n_local,
        momentum=tuple(args.momentum),
        precision="auto",
        n_holdout=min(256, args.n_cells // 8),
        eval_every=max(1, args.steps // 4),
        checkpoint_every=10**9,  # only the final model
    )


def train_and_embed(
    store, *, name: str, seed: int, config: dict, workdir: Path, alpha: float = 1.0
) -> tuple[dict, dict]:
    """Pretrain one embedding; returns ``({key: (N, d) array}, run info)``.

    For ``MAD`` the keys are ``""`` (both class tokens concatenated, the paper's
    embedding), ``"_morphology"`` and ``"_microenvironment"`` (per view, for Recall@K).
    """
    import madspatial as mad

    t0 = time.perf_counter()
    opts = dict(config)
    model = mad.tl.pretrain(
        store,
        mode=MODE_OF[name],
        alpha=alpha,
        seed=seed,
        resume=False,
        checkpoint_dir=workdir / f"{name}_a{alpha:g}_s{opts['max_steps']}_seed{seed}",
        **opts,
    )
    t_train = time.perf_counter() - t0
    emb = mad.tl.embed(store, model=model)
    t_embed = time.perf_counter() - t0 - t_train
    h = model.history
    out = {"": np.asarray(emb.obsm["X_mad"], dtype=np.float32)}
    for suffix in ("_morphology", "_microenvironment"):
        if name == "MAD" and "X_mad" + suffix in emb.obsm:
            out[suffix] = np.asarray(emb.obsm["X_mad" + suffix], dtype=np.float32)
    info = {
        "name": name,
        "seed": seed,
        "alpha": alpha,
        "steps": opts["max_steps"],
        "train_s": round(t_train, 1),
        "embed_s": round(t_embed, 1),
        "loss_first": float(h["loss"][0]),
        "loss_last": float(np.mean(h["loss"][-5:])),
        "ln_k": float(h["ln_k"]),
        "teacher_entropy_last": float(h["teacher_entropy"][-1]),
        "recall@1_last": float(h["recall@1"][-1]) if h.get("recall@1") else float("nan"),
        "recall@5_first": float(h["recall@5"][0]) if h.get("recall@5") else float("nan"),
        "recall@5_last": float(h["recall@5"][-1]) if h.get("recall@5") else float("nan"),
        "recall@5_chance": float(h["recall_chance"]["recall@5"]),
        "collapsed": bool(h.get("collapsed", False)),
        "cells_per_s": float(np.median(h["cells_per_s"])),
    }
    return out, info


def untrained_embedding(store, *, seed: int, config: dict) -> np.ndarray:
    """Embedding of the MAD architecture at its (seeded) random initialisation."""
    import torch

    import madspatial as mad
    from madspatial.nn import MADConfig, MADModel

    torch.manual_seed(seed)
    model = MADModel(
        MADConfig(
            backbone=config["model"],
            in_chans=int(store.n_channels),
            channel_names=list(store.channel_names),
            mode="mad",
            morphology_size=int(store.morphology_size),
            microenvironment_size=int(store.microenvironment_size),
            head_hidden_dim=config["head_hidden_dim"],
            head_bottleneck_dim=config["head_bottleneck_dim"],
            n_prototypes=config["n_prototypes"],
        )
    ).eval()
    emb = mad.tl.embed(store, model=model)
    return np.asarray(emb.obsm["X_mad"], dtype=np.float32)


# --------------------------------------------------------------------------- scoring
def scratch_adata(table, reps: dict[str, np.ndarray]):
    """A light AnnData: counts, the obs needed, and the embeddings under their names."""
    import anndata as ad

    obs = table.obs[["cell_type", "morph_class", "niche", "trajectory"]].copy()
    obs.index = pd.Index(np.arange(table.n_obs).astype(str))
    a = ad.AnnData(table.X.copy(), obs=obs, var=pd.DataFrame(index=table.var_names.copy()))
    a.obsm["spatial"] = np.asarray(table.obsm["spatial"])
    for k, v in reps.items():
        a.obsm[k] = v
    return a


def cross_fitted_expression(
    adata, rep: str, *, seed: int, n_folds: int = 2, decoder_kwargs: dict | None = None
) -> np.ndarray:
    """Out-of-fold log-normalized expression predicted from ``obsm[rep]`` for every cell.

    Cells are split into ``n_folds`` folds; each fold is predicted by a decoder trained
    on the other folds (85% train / 15% validation for early stopping), so every
    prediction is held out.
    """
    import madspatial as mad

    rng = np.random.default_rng(seed)
    fold = rng.permutation(np.arange(adata.n_obs) % n_folds)
    pred = np.full(adata.shape, np.nan, dtype=np.float32)
    for f in range(n_folds):
        split = np.where(
            fold == f, "test", np.where(rng.random(adata.n_obs) < 0.15, "val", "train")
        )
        adata.obs["_split"] = pd.Categorical(split)
        dec = mad.tl.fit_decoder(
            adata,
            target="expression",
            use_rep=rep,
            split="_split",
            seed=seed,
            key_added="_dec",
            **(decoder_kwargs or {}),
        )
        rows = np.flatnonzero(fold == f)
        pred[rows] = dec.predict(adata.obsm[rep][rows])
    del adata.obs["_split"], adata.uns["_dec"]
    return pred


def expression_scores(adata, rep: str, pred: np.ndarray, *, seed: int, n_boot: int):
    """Mean per-gene Pearson (bootstrap CI) and per-gene values of cross-fitted predictions."""
    import madspatial as mad
    from madspatial.tl._inputs import get_expression

    Y, genes, _ = get_expression(adata, normalize="auto")

    def mean_r(t, p):
        r = mad.metrics.pearson_per_gene(t, p)
        return float(np.nanmean(r))

    if n_boot:
        est, lo, hi = mad.metrics.bootstrap_ci(
            (Y, pred), statistic=mean_r, n_boot=n_boot, seed=seed
        )
    else:
        est, lo, hi = mean_r(Y, pred), np.nan, np.nan
    per_gene = pd.DataFrame(
        {"rep": rep, "seed": seed, "gene": genes, "pearson": mad.metrics.pearson_per_gene(Y, pred)}
    )
    return dict(value=est, ci_low=lo, ci_high=hi, n=len(Y)), per_gene


def partner_of() -> dict[str, str]:
    from madspatial.datasets import MORPHOLOGY_ONLY_PAIRS, NICHE_ONLY_PAIRS

    out = {}
    for a, b in (*NICHE_ONLY_PAIRS, *MORPHOLOGY_ONLY_PAIRS):
        out[a], out[b] = b, a
    return out


def de_agreement(adata, pred: np.ndarray, *, gene_sets: dict) -> tuple[dict, pd.DataFrame]:
    """DE of every subtype against its partner, measured vs predicted, and enrichment.

    Returns the summary (mean log2FC correlation, mean top-20 overlap, number of
    subtypes whose planted program is enriched, FDR < 0.05, in the up-genes of the
    *predicted* DE) and one row per comparison.
    """
    import madspatial as mad

    adata.layers["mad_pred"] = pred
    rows = []
    for group, ref in partner_of().items():
        kw = dict(groupby="cell_type", group=group, reference=ref, inplace=False)
        meas = mad.tl.differential_expression(adata, **kw)
        prd = mad.tl.differential_expression(adata, layer="mad_pred", normalize=None, **kw)
        m = meas.set_index("gene")
        p = prd.set_index("gene").reindex(m.index)
        ok = np.isfinite(m["log2FC"]) & np.isfinite(p["log2FC"])
        r = float(np.corrcoef(m["log2FC"][ok], p["log2FC"][ok])[0, 1])
        top_m = set(meas["gene"].head(TOP_N))
        top_p = set(prd["gene"].head(TOP_N))
        program = SUBTYPE_PROGRAM[group]
        enr = {}
        for which, de in (("predicted", prd), ("measured", meas)):
            try:
                res = mad.tl.enrich(de, gene_sets=gene_sets, fdr=0.05).reset_index(drop=True)
            except TypeError:  # tl.enrich bug: gseapy returns no table when nothing overlaps
                res = pd.DataFrame({"term": [], "fdr": []})
            pos = np.flatnonzero(res["term"].to_numpy() == program)
            enr[which] = (
                bool(len(pos) and res["fdr"].iloc[pos[0]] < 0.05),
                int(pos[0]) + 1 if len(pos) else -1,
                str(res["term"].iloc[0]) if len(res) else "",
            )
        rows.append(
            dict(
                group=group,
                reference=ref,
                log2fc_r=r,
                top20_overlap=len(top_m & top_p) / TOP_N,
                program=program,
                enriched_pred=enr["predicted"][0],
                rank_pred=enr["predicted"][1],
                top_term_pred=enr["predicted"][2],
                enriched_meas=enr["measured"][0],
            )
        )
    del adata.layers["mad_pred"]
    df = pd.DataFrame(rows)
    summary = {
        "de_log2fc_r": float(df["log2fc_r"].mean()),
        "de_top20_overlap": float(df["top20_overlap"].mean()),
        "enrich_program_recovered": float(df["enriched_pred"].sum()),
        "enrich_program_top1": float((df["rank_pred"] == 1).sum()),
    }
    return summary, df


def pseudotime_score(adata, rep: str, *, seed: int) -> float:
    """Spearman of DPT on ``rep`` with the ground-truth activation, stromal fibroblasts only,
    rooted at the least activated cell (the trajectory's low end)."""
    import madspatial as mad

    sub = adata[adata.obs["cell_type"] == "stromal_fibroblast"].copy()
    sub = sub[np.isfinite(sub.obs["trajectory"].to_numpy())].copy()
    root = int(np.argmin(sub.obs["trajectory"].to_numpy()))
    mad.tl.pseudotime(sub, use_rep=rep, root=root, reference="trajectory", seed=seed)
    return float(sub.uns["mad_pseudotime"]["reference"]["spearman"])


def cca_scores(adata, rep: str, *, seed: int) -> dict:
    import madspatial as mad

    mad.tl.cca(adata, use_rep=rep, groupby="cell_type", n_components=5, seed=seed, key_added="_cca")
    res = adata.uns.pop("_cca")
    for k in (f"{rep}_cca", f"{rep}_cca_expression"):
        adata.obsm.pop(k, None)
    corr = np.asarray(res["correlations"], dtype=float)
    groups = np.asarray(res["groups"]["correlations"], dtype=float)
    return {
        "cca_r1": float(corr[0]),
        "cca_r_top5": float(np.mean(corr[:5])),
        "cca_centroid_r1": float(groups[0]),
    }


def score_seed(
    table,
    reps: dict[str, np.ndarray],
    *,
    seed: int,
    n_boot: int,
    decoder_kwargs: dict,
    gene_sets: dict,
    extra=None,
) -> tuple:
    """All scores of all embeddings for one seed: (tidy rows, per-gene, DE rows)."""
    import madspatial as mad

    adata = scratch_adata(table, reps)
    names = [k for k in reps if not k.endswith(("_morphology", "_microenvironment"))]
    ev = mad.tl.evaluate(
        adata,
        reps=names,
        labels="cell_type",
        expression=None,
        seeds=[seed],
        n_boot=n_boot,
        metrics=["louvain", "kmeans", "knn", "linear", "decoder", "recall"],
        decoder_kwargs=decoder_kwargs,
        inplace=False,
    )
    rows = [r for r in ev.to_dict("records")]
    for r in rows:
        r["seed"] = seed
    per_gene, de_rows = [], []
    for rep in names:
        t0 = time.perf_counter()
        pred = cross_fitted_expression(adata, rep, seed=seed, decoder_kwargs=decoder_kwargs)
        score, pg = expression_scores(adata, rep, pred, seed=seed, n_boot=n_boot)
        rows.append(dict(rep=rep, metric="expression_pearson", seed=seed, **score))
        per_gene.append(pg)
        summary, de = de_agreement(adata, pred, gene_sets=gene_sets)
        de["rep"], de["seed"] = rep, seed
        de_rows.append(de)
        extra_scores = dict(summary)
        extra_scores["pseudotime_spearman"] = pseudotime_score(adata, rep, seed=seed)
        extra_scores.update(cca_scores(adata, rep, seed=seed))
        for metric, value in extra_scores.items():
            rows.append(
                dict(
                    rep=rep,
                    metric=metric,
                    seed=seed,
                    value=value,
                    ci_low=np.nan,
                    ci_high=np.nan,
                    n=adata.n_obs,
                )
            )
        log(f"    seed {seed} {rep}: downstream {time.perf_counter() - t0:.0f} s")
    return rows, pd.concat(per_gene), pd.concat(de_rows)


def expression_reference(table, *, seed: int) -> dict:
    """Ceilings from measured expression itself: pseudotime on expression PCA."""
    from sklearn.decomposition import PCA

    from madspatial.tl._inputs import get_expression

    a = scratch_adata(table, {})
    Y, _, _ = get_expression(a, normalize="auto")
    a.obsm["X_expr_pca"] = PCA(30, random_state=seed).fit_transform(Y).astype(np.float32)
    return {"pseudotime_spearman": pseudotime_score(a, "X_expr_pca", seed=seed)}


# --------------------------------------------------------------------------- summary
def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    m = float(v.mean())
    if len(v) < 2:
        return m, np.nan, np.nan
    h = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - h, m + h


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (rep, metric), g in rows.groupby(["rep", "metric"], sort=False):
        m, lo, hi = t_interval(g["value"].to_numpy())
        out.append(
            dict(
                rep=rep,
                metric=metric,
                mean=m,
                seeds_ci_low=lo,
                seeds_ci_high=hi,
                boot_ci_low=float(np.nanmean(g["ci_low"])) if g["ci_low"].notna().any() else np.nan,
                boot_ci_high=float(np.nanmean(g["ci_high"]))
                if g["ci_high"].notna().any()
                else np.nan,
                n_seeds=int(g["value"].notna().sum()),
                per_seed=[round(float(x), 4) for x in g["value"]],
            )
        )
    return pd.DataFrame(out)


def paired_difference(rows: pd.DataFrame, metric: str, a: str, b: str) -> dict:
    """Mean over seeds of ``a - b`` (same seed), t-interval, and per-seed wins of ``a``."""
    x = rows[(rows.metric == metric) & (rows.rep == a)].set_index("seed")["value"]
    y = rows[(rows.metric == metric) & (rows.rep == b)].set_index("seed")["value"]
    d = (x - y).dropna()
    m, lo, hi = t_interval(d.to_numpy())
    return {
        "metric": metric,
        "a": a,
        "b": b,
        "diff": m,
        "ci_low": lo,
        "ci_high": hi,
        "wins": int((d > 0).sum()),
        "n": len(d),
    }


def share_best(per_gene: pd.DataFrame, reps: list[str]) -> dict[str, float]:
    """Share of genes where each embedding has the highest mean (over seeds) Pearson r."""
    wide = per_gene.groupby(["gene", "rep"])["pearson"].mean().unstack("rep")[reps].dropna()
    best = wide.idxmax(axis=1)
    return {r: float((best == r).mean()) for r in reps} | {"n_genes": len(wide)}


# --------------------------------------------------------------------------- CosMx
def cosmx_pipeline(args, workdir: Path) -> dict:
    """Real data: embeddings of 120 CosMx cells, decoders of expression clusters under CV."""
    import scanpy as sc

    import madspatial as mad
    from madspatial.tl._inputs import get_expression

    t0 = time.perf_counter()
    sdata = mad.datasets.cosmx_lung_mini()
    table = sdata.tables["table"]
    mad.pp.normalize(sdata, image_key="morphology")
    mad.pp.cell_views(
        sdata,
        image_key="morphology_normalized",
        labels_key="cell_labels",
        morphology_size=70,
        microenvironment_size=args.micro_size,
        n_neighbors=15,
    )
    store = mad.io.read_views(sdata)
    reps = baseline_embeddings(
        sdata, store, seed=0, n_neighbors=10, n_morph_clusters=5, n_components=20
    )
    # expression clusters (what the decoders must predict)
    Y, _genes, _ = get_expression(table, normalize="auto")
    e = sc.AnnData(Y)
    sc.pp.pca(e, n_comps=20, random_state=0)
    a = table.copy()
    a.obsm["X_expr_pca"] = e.obsm["X_pca"]
    mad.tl.louvain(
        a,
        use_rep="X_expr_pca",
        n_neighbors=10,
        resolution=args.cosmx_resolution,
        seed=0,
        key_added="expr_cluster",
    )
    counts = a.obs["expr_cluster"].value_counts()
    keep = counts[counts >= 8].index
    a.obs["expr_cluster"] = (
        a.obs["expr_cluster"].astype(str).where(a.obs["expr_cluster"].isin(keep))
    )
    # a pico MAD, briefly: 120 cells are far too few to pretrain a ViT well
    cfg = dict(
        model="vit_pico",
        max_steps=args.cosmx_steps,
        batch_size=32,
        lr=args.lr,
        n_prototypes=256,
        head_hidden_dim=128,
        head_bottleneck_dim=32,
        n_local=args.n_local,
        momentum=tuple(args.momentum),
        n_holdout=16,
        eval_every=max(1, args.cosmx_steps // 4),
        checkpoint_every=10**9,
        precision="auto",
    )
    info = []
    for name in LEARNED:
        embs, inf = train_and_embed(store, name=name, seed=0, config=cfg, workdir=workdir / "cosmx")
        reps[name] = embs[""]
        info.append(inf)
    for k, v in reps.items():
        a.obsm[k] = v
    labelled = a.obs["expr_cluster"].notna().to_numpy()
    y = a.obs["expr_cluster"].to_numpy()[labelled].astype(str)
    classes, counts = np.unique(y, return_counts=True)
    n_splits = int(min(5, counts.min()))
    from sklearn.model_selection import StratifiedKFold

    rows = []
    for seed in args.seeds:
        skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        idx = np.flatnonzero(labelled)
        for rep in reps:
            oof = np.empty(len(idx), dtype=object)
            for tr, te in skf.split(idx, y):
                rng = np.random.default_rng(seed)
                split = np.full(a.n_obs, "none", dtype=object)
                split[idx[tr]] = np.where(rng.random(len(tr)) < 0.2, "val", "train")
                split[idx[te]] = "test"
                a.obs["_split"] = pd.Categorical(split)
                dec = mad.tl.fit_decoder(
                    a,
                    target="expr_cluster",
                    use_rep=rep,
                    split="_split",
                    seed=seed,
                    key_added="_dec",
                    patience=30,
                )
                oof[te] = dec.predict(a.obsm[rep][idx[te]])
            acc = float(np.mean(oof == y))
            bal = float(np.mean([np.mean(oof[y == c] == c) for c in classes]))
            knn = mad.metrics.knn_accuracy(
                a.obsm[rep][idx], y, n_neighbors=10, n_splits=n_splits, seed=seed
            )
            rows += [
                dict(rep=rep, metric="decoder_accuracy_cv", seed=seed, value=acc),
                dict(rep=rep, metric="decoder_balanced_accuracy_cv", seed=seed, value=bal),
                dict(rep=rep, metric="knn_accuracy_cv", seed=seed, value=knn),
            ]
    df = pd.DataFrame(rows)
    fov = a.obs["fov"].astype(str).to_numpy()[labelled]
    ct = pd.crosstab(y, fov)
    return {
        "n_cells": int(a.n_obs),
        "n_genes": int(a.n_vars),
        "n_labelled": int(labelled.sum()),
        "clusters": {str(c): int(n) for c, n in zip(classes, counts)},
        "cluster_by_fov": ct.to_dict(),
        "majority_share": float(counts.max() / counts.sum()),
        "balanced_chance": 1.0 / len(classes),
        "n_splits": n_splits,
        "view_sizes": [int(store.morphology_size), int(store.microenvironment_size)],
        "window_px": float(np.median(store.window_px)),
        "training": info,
        "rows": df,
        "summary": summarise(df.assign(ci_low=np.nan, ci_high=np.nan)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


# --------------------------------------------------------------------------- report
def fmt(m, lo=np.nan, hi=np.nan, digits=3) -> str:
    if not np.isfinite(m):
        return "n/a"
    s = f"{m:.{digits}f}"
    if np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


METRIC_LABELS = {
    "louvain_ari": "Louvain ARI",
    "louvain_purity": "Louvain purity",
    "louvain_n_clusters": "Louvain clusters (n)",
    "kmeans_ari": "k-means ARI (k=8)",
    "kmeans_purity": "k-means purity",
    "knn_accuracy": "kNN accuracy (5-fold)",
    "linear_accuracy": "linear-probe accuracy (5-fold)",
    "decoder_accuracy": "cell-type decoder accuracy",
    "decoder_balanced_accuracy": "cell-type decoder balanced acc.",
    "expression_pearson": "expression decoder, mean per-gene r",
    "pseudotime_spearman": "pseudotime Spearman vs truth",
    "cca_r1": "CCA r1 (held-out cells)",
    "cca_r_top5": "CCA mean r, top 5",
    "cca_centroid_r1": "CCA r1, cell-type centroids",
    "de_log2fc_r": "DE: r(log2FC pred, meas)",
    "de_top20_overlap": "DE: top-20 overlap",
    "enrich_program_recovered": "enrichment: planted program found (of 8)",
    "enrich_program_top1": "enrichment: planted program ranked 1st (of 8)",
    "recall@1": "cross-view Recall@1",
    "recall@10": "cross-view Recall@10",
}


def results_table(summary: pd.DataFrame, reps: list[str], metrics: list[str]) -> list[str]:
    lines = ["| metric | " + " | ".join(reps) + " |", "|---|" + "---:|" * len(reps)]
    for metric in metrics:
        cells = []
        sub = summary[summary.metric == metric].set_index("rep")
        if sub.empty:
            continue
        best = sub["mean"].idxmax() if metric != "louvain_n_clusters" else None
        for rep in reps:
            if rep not in sub.index:
                cells.append("")
                continue
            r = sub.loc[rep]
            digits = (
                1
                if metric
                in ("louvain_n_clusters", "enrich_program_recovered", "enrich_program_top1")
                else 3
            )
            s = fmt(r["mean"], r["seeds_ci_low"], r["seeds_ci_high"], digits)
            cells.append(f"**{s}**" if rep == best else s)
        lines.append(f"| {METRIC_LABELS.get(metric, metric)} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny data, few steps")
    ap.add_argument("--n-cells", type=int, default=4000)
    ap.add_argument("--model", default="vit_pico")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, nargs=2, default=(0.99, 1.0))
    ap.add_argument("--prototypes", type=int, default=1024)
    ap.add_argument("--n-local", type=int, default=2)
    ap.add_argument("--micro-size", type=int, default=112)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: shared cores; 2 threads on 2 busy cores ran 7x slower)",
    )
    ap.add_argument(
        "--investigate",
        default="auto",
        choices=["auto", "yes", "no"],
        help="extra single-seed MAD runs (2x steps; alpha 0) when MAD does not win",
    )
    ap.add_argument("--skip-cosmx", action="store_true")
    ap.add_argument("--cosmx-steps", type=int, default=60)
    ap.add_argument("--cosmx-resolution", type=float, default=0.5)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None, help="output stem (default results/science[_quick])")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_cells, args.steps, args.seeds, args.n_boot = 600, 6, [0, 1], 10
        args.cosmx_steps = 4
    warnings.simplefilter("ignore")
    os.environ.setdefault("MADSPATIAL_NO_PROGRESS", "1")
    import torch

    torch.set_num_threads(args.threads)
    import madspatial as mad
    from madspatial.train._precision import resolve_precision

    mad.settings.verbosity = "error"
    stem = Path(args.out) if args.out else RESULTS / ("science_quick" if args.quick else "science")
    stem.parent.mkdir(parents=True, exist_ok=True)
    if args.workdir:
        workdir = Path(args.workdir)
    else:
        import tempfile

        workdir = Path(tempfile.mkdtemp(prefix="bench_science_"))
    t_start = time.perf_counter()
    load_start = load_avg()
    timings: dict[str, float] = {}
    decoder_kwargs = {"max_epochs": 100, "patience": 10}

    log(f"synthetic tissue, {args.n_cells} cells; views 70 / {args.micro_size} px")
    t0 = time.perf_counter()
    sdata, store = prepare_tissue(args.n_cells, micro_size=args.micro_size)
    table = sdata.tables["table"]
    store = store.subset(np.arange(len(store)))  # in memory: training reads it many times
    timings["data_and_views"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = baseline_embeddings(sdata, store, seed=0)
    timings["baselines"] = time.perf_counter() - t0
    log(f"baselines: pixel_pca {base['pixel_pca'].shape}, handcrafted {base['handcrafted'].shape}")

    cfg = train_config(args)
    train_info, learned = [], {}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for name in LEARNED:
            embs, info = train_and_embed(store, name=name, seed=seed, config=cfg, workdir=workdir)
            learned[(name, seed)] = embs
            train_info.append(info)
            log(
                f"trained {name} seed {seed}: {info['train_s']} s, loss {info['loss_first']:.3f}"
                f" -> {info['loss_last']:.3f} (ln K {info['ln_k']:.2f}), collapsed "
                f"{info['collapsed']}"
            )
    for seed in args.seeds:
        learned[("MAD_untrained", seed)] = {"": untrained_embedding(store, seed=seed, config=cfg)}
    timings["pretraining"] = time.perf_counter() - t0

    gene_sets = mad.datasets.synthetic_gene_sets()
    all_rows, all_genes, all_de = [], [], []
    t0 = time.perf_counter()
    for seed in args.seeds:
        reps = {}
        for name in (*LEARNED, *PER_SEED_BASELINES):
            for suffix, arr in learned[(name, seed)].items():
                reps[name + suffix] = arr
        reps.update(base)
        rows, genes, de = score_seed(
            table,
            reps,
            seed=seed,
            n_boot=args.n_boot,
            decoder_kwargs=decoder_kwargs,
            gene_sets=gene_sets,
        )
        all_rows += rows
        all_genes.append(genes)
        all_de.append(de)
        log(f"scored seed {seed}")
    timings["scoring"] = time.perf_counter() - t0
    rows = pd.DataFrame(all_rows)
    per_gene = pd.concat(all_genes, ignore_index=True)
    de_all = pd.concat(all_de, ignore_index=True)
    summary = summarise(rows)
    reference = expression_reference(table, seed=0)
    reps_order = [*LEARNED, *BASELINES]
    best_share = share_best(per_gene, reps_order)
    learned_share = share_best(per_gene, list(LEARNED))

    claims = {}
    for metric in ("louvain_ari", "kmeans_ari", "expression_pearson"):
        for other in ("morphology", "microenvironment"):
            claims[f"{metric}: MAD > {other}"] = paired_difference(rows, metric, "MAD", other)
    mad_dec = summary[(summary.rep == "MAD") & (summary.metric == "decoder_accuracy")].iloc[0]

    # ----------------------------------------------------------------- investigation
    investigation = []
    mad_loses = any(c["diff"] <= 0 or c["wins"] < c["n"] for c in claims.values())
    if args.investigate == "yes" or (args.investigate == "auto" and mad_loses and not args.quick):
        t0 = time.perf_counter()
        seed = args.seeds[0]
        base_scores = rows[(rows.seed == seed) & rows.rep.isin(LEARNED)]
        variants = [
            ("MAD, 2x steps", dict(cfg, max_steps=2 * args.steps), 1.0),
            ("MAD, alpha=0 (no cross-view terms)", cfg, 0.0),
            ("morphology, 2x steps", dict(cfg, max_steps=2 * args.steps), None),
            ("microenvironment, 2x steps", dict(cfg, max_steps=2 * args.steps), None),
        ]
        for label, c, alpha in variants:
            name = label.split(",")[0]
            embs, info = train_and_embed(
                store,
                name=name,
                seed=seed,
                config=c,
                workdir=workdir,
                alpha=1.0 if alpha is None else alpha,
            )
            a = scratch_adata(table, {"rep": embs[""]})
            ev = mad.tl.evaluate(
                a,
                reps=["rep"],
                labels="cell_type",
                seeds=[seed],
                n_boot=0,
                metrics=["louvain", "kmeans", "knn"],
                inplace=False,
            )
            pred = cross_fitted_expression(a, "rep", seed=seed, decoder_kwargs=decoder_kwargs)
            expr, _ = expression_scores(a, "rep", pred, seed=seed, n_boot=0)
            r = {
                m: float(ev[ev.metric == m]["value"].iloc[0])
                for m in ("louvain_ari", "kmeans_ari", "knn_accuracy")
            }
            r["expression_pearson"] = expr["value"]
            investigation.append(
                dict(
                    variant=label,
                    steps=c["max_steps"],
                    alpha=alpha,
                    **r,
                    loss_last=info["loss_last"],
                    train_s=info["train_s"],
                )
            )
            log(f"investigation {label}: {r}")
        for name in LEARNED:
            b = base_scores[base_scores.rep == name].set_index("metric")["value"]
            investigation.append(
                dict(
                    variant=f"{name} (main run, seed {seed})",
                    steps=args.steps,
                    alpha=1.0 if name == "MAD" else None,
                    **{
                        m: float(b.get(m, np.nan))
                        for m in ("louvain_ari", "kmeans_ari", "knn_accuracy", "expression_pearson")
                    },
                )
            )
        timings["investigation"] = time.perf_counter() - t0

    cosmx = None
    if not args.skip_cosmx:
        t0 = time.perf_counter()
        try:
            cosmx = cosmx_pipeline(args, workdir)
        except FileNotFoundError as err:
            log(f"CosMx skipped: {err}")
        timings["cosmx"] = time.perf_counter() - t0
    wall = time.perf_counter() - t_start

    # ----------------------------------------------------------------- write
    setup = {
        "n_cells": int(table.n_obs),
        "n_genes": int(table.n_vars),
        "cell_types": table.obs["cell_type"].value_counts().to_dict(),
        "view_sizes": {
            "morphology": int(store.morphology_size),
            "microenvironment": int(store.microenvironment_size),
            "window_px": float(np.median(store.window_px)),
        },
        "pretrain": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "seeds": list(args.seeds),
        "n_boot": args.n_boot,
        "decoder": decoder_kwargs,
        "torch_threads": args.threads,
        "machine": f"{os.cpu_count()} CPUs ({platform.machine()})",
        "precision_resolved": resolve_precision(cfg["precision"], torch.device("cpu")),
        "load_avg_start": load_start,
        "load_avg_end": load_avg(),
        "wall_s": round(wall, 1),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "quick": bool(args.quick),
    }
    payload = {
        "setup": setup,
        "training": train_info,
        "summary": summary.to_dict("records"),
        "claims": claims,
        "mad_decoder_accuracy": float(mad_dec["mean"]),
        "share_best_all": best_share,
        "share_best_learned": learned_share,
        "reference_expression": reference,
        "investigation": investigation,
        "de": de_all.to_dict("records"),
        "cosmx": None
        if cosmx is None
        else {k: v for k, v in cosmx.items() if k not in ("rows", "summary")}
        | {"summary": cosmx["summary"].to_dict("records")},
    }
    rows.to_csv(stem.with_suffix(".csv"), index=False)
    per_gene.to_csv(stem.parent / (stem.name + "_per_gene.csv"), index=False)
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=_json_default))
    stem.with_suffix(".md").write_text(
        render_markdown(
            setup,
            summary,
            claims,
            mad_dec,
            best_share,
            learned_share,
            reference,
            train_info,
            investigation,
            de_all,
            cosmx,
            args,
        )
    )
    log(f"wrote {stem}.md/.json/.csv in {wall / 60:.1f} min")
    print(stem.with_suffix(".md").read_text())


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, pd.DataFrame):
        return o.to_dict("records")
    return str(o)


def render_markdown(
    setup,
    summary,
    claims,
    mad_dec,
    best_share,
    learned_share,
    reference,
    train_info,
    investigation,
    de_all,
    cosmx,
    args,
) -> str:
    reps = [*LEARNED, *BASELINES]
    L = ["# Science benchmark: MAD vs single views vs non-learned baselines", ""]
    if setup["quick"]:
        L += ["**QUICK SMOKE RUN: numbers are meaningless.**", ""]
    p = setup["pretrain"]
    vs = setup["view_sizes"]
    L += [
        "## Setup",
        "",
        f"- data: `mad.datasets.synthetic_tissue(n_cells={setup['n_cells']}, seed=0)`, "
        f"{setup['n_genes']} genes, 8 subtypes ({', '.join(f'{k} {v}' for k, v in setup['cell_types'].items())})",
        f"- views: morphology {vs['morphology']} px, microenvironment {vs['microenvironment']} px "
        f"(window {vs['window_px']:.0f} image px, 25 neighbours), 4 channels, in memory",
        f"- learned embeddings (same budget and seeds): backbone `{p['model']}`, {p['max_steps']} steps "
        f"x batch {p['batch_size']} ({p['max_steps'] * p['batch_size'] / setup['n_cells']:.1f} epochs), "
        f"lr {p['lr']}, {p['n_prototypes']} prototypes (head 256/64), 2 global + {p['n_local']} "
        f"local crops per view, EMA momentum {p['momentum'][0]} -> {p['momentum'][1]}, "
        f"precision `{p['precision']}` ({setup['precision_resolved']} on this CPU), alpha 1 for "
        "MAD. The MAD embedding is "
        "the concatenation of the two class tokens (2D); single-view embeddings are one class token (D).",
        "- baselines: `pixel_pca` = PCA (50 comps per view) of raw pixels average-pooled to 14x14 "
        "(morphology) and 16x16 (microenvironment); `handcrafted` = skimage regionprops (area, "
        "perimeter, eccentricity, solidity, extent, axes, per-channel mean/sd, nuclear fraction and "
        "per-channel nuclear means from `nucleus_labels`) + composition of the 25 nearest cells' "
        "k-means (k=10) morphology clusters + the 25 neighbours' mean features (no labels used); "
        "blocks z-scored and balanced; `MAD_untrained` = the MAD backbone at its random "
        "initialisation (same seeds), no training, with the fixed 0.5 / 0.25 input scale: "
        "untrained, that scale gives better features than the data-standardised one the "
        "trained models use (benchmarks/results/learning.md), so this is the stronger "
        "untrained reference",
        f"- seeds {setup['seeds']} (pretraining seed = evaluation seed); cells: mean over seeds "
        "[95% t-interval over seeds]; bold = best mean. Per-seed bootstrap CIs "
        f"({setup['n_boot']} replicates, evaluation-set uncertainty) are in science.json",
        f"- decoders: `mad.tl.fit_decoder` defaults (2-layer MLP, hidden 2x, Smooth L1, class "
        f"weights), max_epochs {setup['decoder']['max_epochs']}, patience {setup['decoder']['patience']}; "
        "cell-type decoder scored on its 15% test split (`tl.evaluate`); expression decoder "
        "cross-fitted (2 folds, every cell predicted out-of-fold), which also feeds DE",
        f"- machine: {setup['machine']}; torch threads {setup['torch_threads']}; load average at "
        f"start {setup['load_avg_start']}, at end {setup['load_avg_end']} (cores shared with other "
        "jobs)",
        f"- wall time {setup['wall_s'] / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in setup['timings_s'].items())})",
        "",
        "## Results (synthetic tissue, ground truth = `cell_type`)",
        "",
    ]
    main_metrics = [
        "louvain_ari",
        "louvain_purity",
        "louvain_n_clusters",
        "kmeans_ari",
        "kmeans_purity",
        "knn_accuracy",
        "linear_accuracy",
        "decoder_accuracy",
        "decoder_balanced_accuracy",
        "expression_pearson",
    ]
    L += results_table(summary, reps, main_metrics)
    L += [
        "",
        f"Share of genes where each embedding has the best mean Pearson r "
        f"({best_share['n_genes']} genes): "
        + ", ".join(f"{r} {best_share[r]:.0%}" for r in reps)
        + "; among the learned ones only: "
        + ", ".join(f"{r} {learned_share[r]:.0%}" for r in LEARNED),
        "",
        "### Downstream biology",
        "",
    ]
    down = [
        "pseudotime_spearman",
        "cca_r1",
        "cca_r_top5",
        "cca_centroid_r1",
        "de_log2fc_r",
        "de_top20_overlap",
        "enrich_program_recovered",
        "enrich_program_top1",
    ]
    L += results_table(summary, reps, down)
    L += [
        "",
        f"- pseudotime: DPT on the embedding of stromal fibroblasts only, rooted at the "
        f"least-activated cell; Spearman with the ground-truth activation. The same on measured "
        f"expression (PCA 30): {reference['pseudotime_spearman']:.3f}.",
        "- CCA: `mad.tl.cca` (PCA 50 per side, held-out 30% of cells; centroid = cell-type "
        "means in canonical space).",
        "- DE: each subtype against its partner subtype (3 niche-only pairs, 1 morphology-only "
        "pair, both directions: 8 tests), Wilcoxon on measured counts vs on cross-fitted "
        "predictions; r of log2FC over all genes, overlap of the top-20 genes by score. "
        "Enrichment: `mad.tl.enrich` (hypergeometric, background = panel) of the up-genes "
        "(FDR < 0.05) of the predicted DE against the planted programs; 'found' = the subtype's "
        "own program has FDR < 0.05. On measured expression it is found in "
        f"{int(de_all[de_all.seed == de_all.seed.iloc[0]].drop_duplicates('group')['enriched_meas'].sum())}/8.",
        "",
    ]
    if "recall@1" in set(summary.metric):
        r1 = summary[(summary.metric == "recall@1") & (summary.rep == "MAD")]
        r10 = summary[(summary.metric == "recall@10") & (summary.rep == "MAD")]
        if len(r1):
            L += [
                f"- MAD cross-view Recall@1 / @10 (morphology <-> microenvironment tokens, "
                f"{setup['n_cells']} candidates; chance {1 / setup['n_cells']:.4f} / "
                f"{10 / setup['n_cells']:.4f}): {r1['mean'].iloc[0]:.3f} / {r10['mean'].iloc[0]:.3f}",
                "",
            ]
    # per-pair DE detail for MAD vs single views
    piv = de_all.groupby(["rep", "group"])[["log2fc_r", "enriched_pred"]].mean().unstack("rep")
    L += [
        "### DE agreement and enrichment per comparison (mean over seeds)",
        "",
        "| subtype vs partner | "
        + " | ".join(f"r log2FC {r}" for r in reps)
        + " | "
        + " | ".join(f"found {r}" for r in reps)
        + " |",
        "|---|" + "---:|" * (2 * len(reps)),
    ]
    pof = partner_of()
    for g in SUBTYPE_PROGRAM:
        if g not in piv.index:
            continue
        L.append(
            f"| {g} vs {pof[g]} | "
            + " | ".join(f"{piv.loc[g, ('log2fc_r', r)]:.2f}" for r in reps)
            + " | "
            + " | ".join(f"{piv.loc[g, ('enriched_pred', r)]:.0%}" for r in reps)
            + " |"
        )
    L += [
        "",
        "### Pretraining runs",
        "",
        "| run | seed | train s | loss first -> last | "
        "ln K | teacher entropy | Recall@1 | Recall@5 first -> last (chance) | collapsed |",
        "|---|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for t in train_info:
        L.append(
            f"| {t['name']} | {t['seed']} | {t['train_s']:.0f} | {t['loss_first']:.3f} -> "
            f"{t['loss_last']:.3f} | {t['ln_k']:.2f} | {t['teacher_entropy_last']:.2f} | "
            f"{t['recall@1_last']:.3f} | {t['recall@5_first']:.3f} -> "
            f"{t['recall@5_last']:.3f} ({t['recall@5_chance']:.3f}) | {t['collapsed']} |"
        )
    L += [
        "",
        "Recall@K: held-out cells, a cell's morphology token retrieving its own "
        "microenvironment token and vice versa (single-view models: two global crops of "
        "the same view).",
    ]
    L += [
        "",
        "## Claims",
        "",
        "| claim | MAD - other (mean over seeds) [95% t-CI] | seeds won | holds? |",
        "|---|---:|---:|---|",
    ]
    for label, c in claims.items():
        holds = c["ci_low"] > 0 if np.isfinite(c["ci_low"]) else c["diff"] > 0
        verdict = "yes" if holds else ("not shown (CI spans 0)" if c["diff"] > 0 else "no")
        L.append(
            f"| {label} | {fmt(c['diff'], c['ci_low'], c['ci_high'])} | "
            f"{c['wins']}/{c['n']} | {verdict} |"
        )
    acc = mad_dec
    L.append(
        f"| MAD cell-type decoder accuracy > 0.80 | {fmt(acc['mean'], acc['seeds_ci_low'], acc['seeds_ci_high'])} "
        f"| | {'yes' if acc['mean'] > 0.8 else 'no'} |"
    )
    if investigation:
        L += [
            "",
            "## Investigation (seed " + str(setup["seeds"][0]) + ", one run each)",
            "",
            "| variant | steps | Louvain ARI | k-means ARI | kNN acc. | expression r |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for v in investigation:
            L.append(
                f"| {v['variant']} | {v['steps']} | {v['louvain_ari']:.3f} | {v['kmeans_ari']:.3f} | "
                f"{v['knn_accuracy']:.3f} | {v['expression_pearson']:.3f} |"
            )
    if cosmx is not None:
        s = cosmx["summary"]
        L += [
            "",
            "## Real data: CosMx NSCLC (Lung12, 2 FOVs)",
            "",
            f"- {cosmx['n_cells']} cells, {cosmx['n_genes']} genes; RGB composite, views "
            f"{cosmx['view_sizes'][0]} / {cosmx['view_sizes'][1]} px (window {cosmx['window_px']:.0f} px, "
            "15 neighbours)",
            f"- targets: Louvain clusters of measured expression (log-normalized, PCA 20, 10-NN, "
            f"resolution {args.cosmx_resolution}); clusters with >= 8 cells kept: {cosmx['clusters']} "
            f"({cosmx['n_labelled']} cells); majority share {cosmx['majority_share']:.2f}, balanced "
            f"chance {cosmx['balanced_chance']:.2f}; cluster x FOV: {cosmx['cluster_by_fov']}",
            f"- embeddings: pixel PCA (20 per view), handcrafted (no nucleus labels: 5 morphology "
            f"clusters, 10 neighbours), and `vit_pico` MAD / morphology / microenvironment pretrained "
            f"{args.cosmx_steps} steps x 32 cells on these 120 cells (seed 0)",
            f"- decoders: `fit_decoder` under {cosmx['n_splits']}-fold stratified CV (20% of each "
            "training fold for early stopping), out-of-fold accuracy; mean over seeds "
            f"{list(args.seeds)} [95% t-CI] (seeds change folds and decoder init)",
            "",
            "| metric | " + " | ".join(s.rep.unique()) + " |",
            "|---|" + "---:|" * s.rep.nunique(),
        ]
        for metric in ("decoder_accuracy_cv", "decoder_balanced_accuracy_cv", "knn_accuracy_cv"):
            sub = s[s.metric == metric].set_index("rep")
            L.append(
                f"| {metric} | "
                + " | ".join(
                    fmt(sub.loc[r, "mean"], sub.loc[r, "seeds_ci_low"], sub.loc[r, "seeds_ci_high"])
                    for r in s.rep.unique()
                )
                + " |"
            )
    L += ["", "## Verdict (generated from the numbers above)", ""]
    L += verdict_lines(summary, claims, mad_dec, train_info)
    L.append("")
    return "\n".join(L)


VERDICT_METRICS = {
    "louvain_ari": "Louvain ARI",
    "kmeans_ari": "k-means ARI",
    "knn_accuracy": "kNN accuracy",
    "decoder_accuracy": "cell-type decoder accuracy",
    "expression_pearson": "expression r",
    "pseudotime_spearman": "pseudotime Spearman",
    "de_log2fc_r": "DE log2FC r",
}


def verdict_lines(summary, claims, mad_dec, train_info) -> list[str]:
    """Plain statements of what held and what did not, whichever way the numbers went."""
    held = [
        k
        for k, c in claims.items()
        if (c["ci_low"] > 0 if np.isfinite(c["ci_low"]) else c["diff"] > 0)
    ]
    failed = [k for k in claims if k not in held]
    L = [
        f"- The paper's claims held in {len(held)} of {len(claims)} comparisons"
        + (f" ({'; '.join(held)})" if held else "")
        + (f"; not shown: {'; '.join(failed)}" if failed else "")
        + f". MAD's cell-type decoder reaches {mad_dec['mean']:.3f} "
        + ("(> 0.80)." if mad_dec["mean"] > 0.8 else "(not > 0.80)."),
    ]
    means = summary.pivot_table(index="metric", columns="rep", values="mean", aggfunc="first")
    best, vs_untrained = [], []
    for key, label in VERDICT_METRICS.items():
        if key not in means.index:
            continue
        row = means.loc[key].dropna()
        if row.empty:
            continue
        best.append(f"{label}: {row.idxmax()} ({row.max():.3f})")
        if "MAD" in row and "MAD_untrained" in row:
            d = row["MAD"] - row["MAD_untrained"]
            vs_untrained.append(f"{label} {d:+.3f}")
    if best:
        L.append("- Best embedding per metric: " + "; ".join(best) + ".")
    if vs_untrained:
        L.append(
            "- What pretraining added to the same architecture at random initialisation "
            "(MAD - MAD_untrained, mean over seeds): " + "; ".join(vs_untrained) + "."
        )
    mad_runs = [t for t in train_info if t["name"] == "MAD"]
    if mad_runs:
        ent = np.mean([t["teacher_entropy_last"] for t in mad_runs])
        r5 = np.mean([t["recall@5_last"] for t in mad_runs])
        chance = mad_runs[0]["recall@5_chance"]
        L.append(
            f"- MAD's training state at the end: teacher entropy {ent:.2f} nats against "
            f"ln K = {mad_runs[0]['ln_k']:.2f} (uniform), held-out cross-view Recall@5 "
            f"{r5:.3f} against chance {chance:.3f}. A teacher this close to uniform means the "
            "run is still in DINO's early phase: the budget here is a few epochs of a "
            "3-block ViT from random weights, where the paper starts from DINOv2 (LVD-142M) "
            "weights and trains for 15 epochs on 100 M cells."
        )
    return L


if __name__ == "__main__":
    main()
