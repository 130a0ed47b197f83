"""One table comparing embeddings on every downstream score, with seeds and bootstrap CIs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from anndata import AnnData

from .._constants import (
    OBSM_MAD,
    OBSM_MICROENVIRONMENT_SUFFIX,
    OBSM_MORPHOLOGY_SUFFIX,
    UNS_EVALUATE,
)
from .._logging import added, logger, progress
from ..metrics import ari, bootstrap_ci, pearson_per_gene, probe_predictions, purity
from ..metrics._probe import _make_probe
from ..metrics._retrieval import retrieval_ranks
from ._cluster import kmeans_labels, knn_graph, multilevel
from ._decoder import fit_decoder
from ._inputs import EXPRESSION, get_expression, get_obs, get_rep

METRIC_GROUPS = (
    "louvain",
    "kmeans",
    "knn",
    "linear",
    "decoder",
    "expression",
    "hest",
    "knn_expression",
    "recall",
)
COLUMNS = ["rep", "metric", "seed", "value", "ci_low", "ci_high", "n"]


def _nanmean_pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    r = pearson_per_gene(y_true, y_pred)
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def _resolve_reps(adata: AnnData, reps) -> dict[str, np.ndarray]:
    """Return ``{name: (N, d) array}`` of the representations to compare.

    A tuple/list entry (or a dict value) of several ``.obsm`` keys is their column-wise
    concatenation, named ``"key1+key2"`` unless a dict names it.
    """
    if isinstance(reps, str):
        reps = [reps]
    items = list(reps.items()) if isinstance(reps, dict) else [(None, r) for r in reps]
    if not items:
        raise ValueError("reps is empty; pass the .obsm keys of the embeddings to compare.")
    out: dict[str, np.ndarray] = {}
    for name, keys in items:
        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError(
                f"reps entries must be .obsm keys or lists of them (concatenated); got {keys!r}."
            )
        name = name if name is not None else "+".join(keys)
        if name in out:
            raise ValueError(f"reps names {name!r} twice.")
        arrays = [get_rep(adata, k) for k in keys]  # fails early on bad keys / NaN
        out[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1)
    return out


def _split_masks(adata: AnnData, split: str):
    col = get_obs(adata, split).astype(str).str.lower().to_numpy()
    col = np.where(np.isin(col, ["validation", "valid"]), "val", col)
    train, test = col == "train", col == "test"
    if not train.any() or not test.any():
        raise ValueError(
            f"split={split!r}: adata.obs[{split!r}] needs 'train' and 'test' cells (e.g. from "
            f"mad.pp.split); got values {sorted(set(col))}."
        )
    return train, col == "val", test


def evaluate(
    adata: AnnData,
    *,
    reps: Sequence[str | Sequence[str]] | dict = (OBSM_MAD,),
    labels: str | None = None,
    expression: str | None = None,
    groupby: str | None = None,
    split: str | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    n_boot: int = 200,
    metrics: Sequence[str] | None = None,
    n_neighbors: int = 15,
    graph_neighbors: int = 30,
    resolution: float = 1.0,
    n_splits: int = 5,
    recall_k: Sequence[int] = (1, 5, 10),
    hest_genes: int = 50,
    hest_components: int = 256,
    knn_genes: int = 30,
    normalize: str | None = "auto",
    decoder_kwargs: dict | None = None,
    key_added: str = UNS_EVALUATE,
    inplace: bool = True,
) -> pd.DataFrame:
    """Compare embeddings on clustering, probes, decoders and cross-view retrieval.

    For every representation in ``reps`` and every seed, the metrics below are
    computed; each value comes with a percentile-bootstrap 95% CI over the scored
    cells (stratified by ``groupby`` when given). The CI describes the uncertainty of
    the evaluation set for one fitted model; the spread across seeds describes the
    randomness of fitting (clustering initialisation, folds, decoder training).
    ARI and purity intervals use half-sampling re-centred on the estimate (see
    :func:`~madspatial.metrics.bootstrap_ci`): a classic bootstrap inflates these
    pair-counting scores through duplicated cells.

    ============================== ==========================================================
    metric                         how
    ============================== ==========================================================
    ``louvain_ari``,               :func:`louvain` (``graph_neighbors``, ``resolution``)
    ``louvain_purity``,            against ``labels``; ``louvain_n_clusters`` for context
    ``louvain_n_clusters``
    ``kmeans_ari``,                :func:`kmeans` with k = the number of label classes
    ``kmeans_purity``
    ``knn_accuracy``               out-of-fold kNN probe (``n_neighbors``, cosine,
                                   ``n_splits`` folds, group-aware with ``groupby``)
    ``linear_accuracy``            out-of-fold logistic-regression probe
    ``decoder_accuracy``,          :func:`fit_decoder` on ``labels``; test-split scores
    ``decoder_balanced_accuracy``
    ``expression_pearson``         :func:`fit_decoder` on ``expression``; mean over genes of
                                   the test-split Pearson r (constant genes excluded)
    ``hest_pearson``               HEST-Benchmark's expression protocol: standardise, PCA to
                                   ``hest_components`` dims (fitted on the training cells),
                                   ridge regression (``alpha = 100 / (dims x genes)``, no
                                   intercept, lsqr) onto log-normalised expression of the
                                   ``hest_genes`` most variable genes; mean per-gene Pearson
                                   r per fold, averaged over folds (``groupby`` groups:
                                   grouped folds, else ``n_splits`` random folds; with
                                   ``split``: train -> test)
    ``knn_expression_pearson``     kNN regression (``n_neighbors``, cosine, uniform
                                   weights) onto log-normalised expression of the
                                   ``knn_genes`` most variable genes; the folds, gene choice
                                   and per-fold mean Pearson r of ``hest_pearson``. Unlike
                                   the ridge it reads the embedding's neighbourhoods, not
                                   its linear directions
    ``recall@K``                   cross-view Recall@K between ``obsm[rep + "_morphology"]``
                                   and ``obsm[rep + "_microenvironment"]`` when both exist
                                   (mean of both directions; no seed: deterministic)
    ============================== ==========================================================

    Cells without a label are left out of the label metrics, and so are classes with
    fewer than ``max(n_splits, 3)`` cells (too few for cross-validation and a
    train/val/test split; a warning lists them).

    With ``split`` (an ``.obs`` column of ``"train"`` / ``"test"`` [/ ``"val"``], e.g.
    ``mad.pp.split(..., method="spatial_blocks")``) nothing is cross-validated: probes,
    decoders and the HEST ridge are fitted on the training cells and scored on the test
    cells, Louvain and k-means are run and scored on the test cells only, and cells of
    other values (``"guard"``) are used nowhere. Decoders early-stop on the ``"val"``
    cells, or on a seeded 15% of the training cells when there are none.

    Parameters
    ----------
    adata
        Annotated data matrix holding the embeddings in ``.obsm``.
    reps
        ``.obsm`` keys of the embeddings to compare. An entry that is a list of keys is
        scored as one representation, their concatenation (e.g. two single-view models
        side by side, ``[("X_morph", "X_micro")]``, named ``"X_morph+X_micro"``); a dict
        ``{name: key or [keys]}`` names them.
    labels
        ``.obs`` column of reference labels (cell types); ``None`` skips label metrics.
    expression
        ``"X"`` or a layer holding expression for the expression decoder; ``None`` skips it.
    groupby
        ``.obs`` column of groups (slides, patients): folds and decoder splits keep
        groups whole, and the bootstrap is stratified by group.
    split
        ``.obs`` column of a train/test split; see above.
    seeds
        Seeds; each gives one row per metric and representation.
    n_boot
        Bootstrap replicates per CI (0: no CIs).
    metrics
        Subset of ``("louvain", "kmeans", "knn", "linear", "decoder", "expression",
        "hest", "knn_expression", "recall")`` (default: all that the inputs allow).
    n_neighbors
        Neighbours of the kNN probe and of the kNN expression regression.
    graph_neighbors
        Neighbours of the Louvain graph.
    resolution
        Louvain resolution.
    n_splits
        Cross-validation folds of the probes.
    recall_k
        The K values of Recall@K.
    hest_genes
        Number of most variable genes (log-normalised expression) of ``hest_pearson``.
    hest_components
        PCA dimensions of ``hest_pearson`` (capped at the training cells and features).
    knn_genes
        Number of most variable genes of ``knn_expression_pearson``.
    normalize
        Expression transform for the expression decoder (see :func:`fit_decoder`).
    decoder_kwargs
        Extra keyword arguments for :func:`fit_decoder` (e.g. ``{"max_epochs": 100}``).
    key_added
        ``.uns`` key of the stored results.
    inplace
        Store the results in ``adata.uns``; with ``False`` they are only returned.

    Returns
    -------
    Tidy DataFrame with columns ``rep``, ``metric``, ``seed`` (nullable integer; missing
    for deterministic metrics), ``value``, ``ci_low``, ``ci_high`` and ``n`` (cells
    scored). With ``inplace=True`` also ``.uns[key_added] = {"results": DataFrame,
    "per_gene": DataFrame (rep, seed, gene, pearson; when expression is evaluated),
    "per_gene_hest": the same for ``hest_pearson`` (mean over folds),
    "per_gene_knn_expression": the same for ``knn_expression_pearson``, "params": {...}}``.
    """
    wanted = _wanted_metrics(metrics)
    embeddings = _resolve_reps(adata, reps)
    reps = list(embeddings)
    seeds = [int(s) for s in seeds]
    groups = None if groupby is None else get_obs(adata, groupby).astype(str).to_numpy()
    masks = None if split is None else _split_masks(adata, split)

    # ---- inputs: label codes and expression; metrics without their input are dropped
    y_codes, label_mask, Y, gene_names = _inputs(
        adata, wanted, labels, expression, normalize=normalize, min_cells=max(n_splits, 3)
    )

    # ---- every representation and seed
    scores = _Scores(groups=groups, n_boot=n_boot)
    per_gene: list[pd.DataFrame] = []
    per_gene_hest: list[pd.DataFrame] = []
    per_gene_knn: list[pd.DataFrame] = []
    dec_kwargs = {"groupby": groupby, **(decoder_kwargs or {})}
    if masks is not None:
        dec_kwargs.pop("groupby")
    labelled = None if label_mask is None else _Labelled(y_codes, label_mask, masks)
    graphs: dict[str, object] = {}
    steps = [(rep, s) for rep in reps for s in seeds]
    with _quiet():
        for rep, seed in progress(steps, desc="evaluate"):
            X = embeddings[rep]
            if labelled is not None:
                if "louvain" in wanted:
                    if rep not in graphs:  # the graph does not depend on the seed
                        graphs[rep] = _louvain_graph(X, masks, graph_neighbors)
                    _louvain_rows(scores, rep, seed, graphs[rep], labelled, resolution)
                if "kmeans" in wanted:
                    _kmeans_rows(scores, rep, seed, X, labelled)
                for method in ("knn", "linear"):
                    if method in wanted:
                        _probe_rows(scores, rep, seed, X, labelled, method, n_neighbors, n_splits)
            dec_split = None if masks is None else _decoder_split(masks, seed)
            fit = _Fit(adata, rep, X, groupby, seed, dec_kwargs, dec_split)
            if "decoder" in wanted:
                _decoder_rows(scores, fit, labels, label_mask)
            if "expression" in wanted:
                per_gene.append(_expression_rows(scores, fit, Y, gene_names))
            if "hest" in wanted:
                hest = (n_splits, hest_genes, hest_components)
                per_gene_hest.append(_hest_rows(scores, rep, X, Y, gene_names, masks, seed, *hest))
            if "knn_expression" in wanted:
                knn = (n_splits, knn_genes, n_neighbors)
                per_gene_knn.append(
                    _knn_expression_rows(scores, rep, X, Y, gene_names, masks, seed, *knn)
                )
    if "recall" in wanted:
        _recall_rows(scores, adata, reps, recall_k)

    # ---- the table, and what is stored
    table = pd.DataFrame(scores.rows, columns=COLUMNS)
    table["seed"] = table["seed"].astype("Int64")
    if inplace:
        params = {
            "reps": list(reps),
            "labels": labels or "none",
            "expression": expression or "none",
            "groupby": groupby or "none",
            "seeds": seeds,
            "n_boot": n_boot,
            "metrics": sorted(wanted),
            "n_neighbors": n_neighbors,
            "graph_neighbors": graph_neighbors,
            "resolution": resolution,
            "n_splits": n_splits,
            "split": split or "none",
            "hest_genes": hest_genes,
            "hest_components": hest_components,
            "knn_genes": knn_genes,
        }
        _store(adata, key_added, table, params, per_gene, per_gene_hest, per_gene_knn)
    return table


def _store(
    adata: AnnData, key_added: str, table, params: dict, per_gene, per_gene_hest, per_gene_knn
):
    entry = {"results": table, "params": params}
    for key, frames in (
        ("per_gene", per_gene),
        ("per_gene_hest", per_gene_hest),
        ("per_gene_knn_expression", per_gene_knn),
    ):
        if frames:
            entry[key] = pd.concat(frames, ignore_index=True)
    adata.uns[key_added] = entry
    added(key_added, "uns")


_LABEL_METRICS = frozenset({"louvain", "kmeans", "knn", "linear", "decoder"})
_EXPRESSION_METRICS = frozenset({"expression", "hest", "knn_expression"})


def _inputs(adata: AnnData, wanted: set[str], labels, expression, *, normalize, min_cells):
    """Return label codes and mask, expression and gene names.

    Drops from ``wanted`` (in place) the metrics whose input is not given.
    """
    y_codes, label_mask = None, None
    if labels is not None:
        y, label_mask = _usable_labels(adata, labels, min_cells=min_cells)
        y_codes = pd.factorize(y)[0]
    else:
        wanted -= _LABEL_METRICS
    Y, gene_names = None, None
    if expression is not None and wanted & _EXPRESSION_METRICS:
        Y, gene_names, _ = get_expression(
            adata, layer=None if expression == "X" else expression, normalize=normalize
        )
    else:
        wanted -= _EXPRESSION_METRICS
    if not wanted:
        raise ValueError(
            "nothing to evaluate: pass labels= (an .obs column) and/or expression= ('X' or a "
            "layer), or embeddings with both view keys for recall."
        )
    return y_codes, label_mask, Y, gene_names


def _wanted_metrics(metrics: Sequence[str] | None) -> set[str]:
    wanted = set(METRIC_GROUPS if metrics is None else metrics)
    unknown = wanted - set(METRIC_GROUPS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {list(METRIC_GROUPS)}.")
    return wanted


@dataclass
class _Scores:
    """The result rows, and how one value and its bootstrap CI are recorded."""

    groups: np.ndarray | None
    n_boot: int
    rows: list[dict] = field(default_factory=list)

    def strata_of(self, mask_or_idx):
        """Bootstrap strata (``groupby`` groups) of the scored cells; None without groups."""
        return None if self.groups is None else self.groups[mask_or_idx]

    def record(self, rep, metric, seed, data, statistic: Callable, n, strata, boot_seed):
        """Append one row: ``statistic(*data)`` with its bootstrap CI over ``data``'s rows."""
        if self.n_boot > 0:
            # pair-counting scores are biased by the duplicates of a classic bootstrap
            pairs = statistic in (ari, purity)
            est, lo, hi = bootstrap_ci(
                data,
                statistic=statistic,
                n_boot=self.n_boot,
                strata=strata,
                resample="half" if pairs else "bootstrap",
                center=pairs,
                seed=boot_seed,
            )
        else:
            est, lo, hi = float(statistic(*data)), np.nan, np.nan
        self.add(rep, metric, seed, est, n, lo, hi)

    def add(self, rep, metric, seed, value, n, ci_low=np.nan, ci_high=np.nan):
        """Append one row as it is."""
        self.rows.append(
            dict(
                rep=rep, metric=metric, seed=seed, value=value, ci_low=ci_low, ci_high=ci_high, n=n
            )
        )


@dataclass
class _Labelled:
    """Integer label codes, the labelled cells and the split.

    Integer codes because the scores only compare labels, and ints are much faster to count
    than strings in hundreds of bootstrap replicates.
    """

    codes: np.ndarray
    mask: np.ndarray
    masks: tuple | None

    @property
    def clustered(self) -> np.ndarray:
        """The labelled cells whose clusters are scored: the test cells with a split."""
        return self.mask if self.masks is None else self.mask & self.masks[2]

    @property
    def graph_mask(self) -> np.ndarray:
        """The cells clustered: every cell, or every test cell with a split."""
        return np.ones(len(self.mask), dtype=bool) if self.masks is None else self.masks[2]


def _louvain_graph(X: np.ndarray, masks, graph_neighbors: int):
    # Every cell (every test cell with a split) is clustered, as tl.louvain clusters every
    # cell, and the clusters of the labelled ones are scored.
    Xg = X if masks is None else X[masks[2]]
    return knn_graph(Xg, n_neighbors=min(graph_neighbors, len(Xg) - 1))


def _louvain_rows(scores: _Scores, rep, seed, graph, lab: _Labelled, resolution: float):
    cmask = lab.clustered
    yc, gc = lab.codes[cmask], scores.strata_of(cmask)
    cl, _ = multilevel(graph, resolution=resolution, seed=seed)
    cl = cl[cmask[lab.graph_mask]]
    scores.record(rep, "louvain_ari", seed, (yc, cl), ari, len(yc), gc, seed)
    scores.record(rep, "louvain_purity", seed, (yc, cl), purity, len(yc), gc, seed)
    scores.add(rep, "louvain_n_clusters", seed, float(cl.max() + 1), len(yc))


def _kmeans_rows(scores: _Scores, rep, seed, X, lab: _Labelled):
    cmask = lab.clustered
    Xc, yc, gc = X[cmask], lab.codes[cmask], scores.strata_of(cmask)
    km, _ = kmeans_labels(Xc, len(np.unique(yc)), seed=seed)
    scores.record(rep, "kmeans_ari", seed, (yc, km), ari, len(yc), gc, seed)
    scores.record(rep, "kmeans_purity", seed, (yc, km), purity, len(yc), gc, seed)


def _probe_rows(scores: _Scores, rep, seed, X, lab: _Labelled, method, n_neighbors, n_splits):
    """Test-split accuracy of a probe fitted on the training cells, else out-of-fold."""
    metric = f"{method}_accuracy"
    if lab.masks is not None:
        tr, te = lab.mask & lab.masks[0], lab.mask & lab.masks[2]
        probe = _make_probe(
            method,
            n_neighbors=min(n_neighbors, int(tr.sum())),
            metric="cosine",
            C=1.0,
            max_iter=1000,
            seed=seed,
        )
        probe.fit(X[tr], lab.codes[tr])
        hits = (probe.predict(X[te]) == lab.codes[te]).astype(float)
        scores.record(rep, metric, seed, (hits,), np.mean, len(hits), scores.strata_of(te), seed)
        return
    Xl, yl, gl = X[lab.mask], lab.codes[lab.mask], scores.strata_of(lab.mask)
    pred = probe_predictions(
        Xl, yl, method=method, groups=gl, n_splits=n_splits, n_neighbors=n_neighbors, seed=seed
    )
    scores.record(rep, metric, seed, ((pred == yl).astype(float),), np.mean, len(yl), gl, seed)


def _recall_rows(scores: _Scores, adata: AnnData, reps, recall_k):
    for rep in reps:
        views = [f"{rep}{OBSM_MORPHOLOGY_SUFFIX}", f"{rep}{OBSM_MICROENVIRONMENT_SUFFIX}"]
        if not all(v in adata.obsm for v in views):
            continue
        a, b = (get_rep(adata, v) for v in views)
        ranks = np.stack([retrieval_ranks(a, b), retrieval_ranks(b, a)])
        strata = scores.strata_of(slice(None))
        for k in recall_k:
            hits = (ranks < k).mean(axis=0)  # both directions, per cell
            scores.record(rep, f"recall@{k}", pd.NA, (hits,), np.mean, len(hits), strata, 0)


@contextlib.contextmanager
def _quiet():
    """Silence info messages of the many inner fits (decoders log every fit)."""
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _usable_labels(adata: AnnData, labels: str, *, min_cells: int):
    col = get_obs(adata, labels)
    y = col.astype(str).to_numpy(dtype=object)
    mask = ~col.isna().to_numpy()
    counts = pd.Series(y[mask]).value_counts()
    rare = counts[counts < min_cells]
    if len(rare):
        logger.warning(
            "    evaluate: leaving out label classes with < %d cells: %s",
            min_cells,
            rare.to_dict(),
        )
        mask &= ~np.isin(y, rare.index.to_numpy())
    if len(np.unique(y[mask])) < 2:
        raise ValueError(
            f"adata.obs[{labels!r}] has fewer than 2 classes with >= {min_cells} cells; label "
            "metrics need at least 2."
        )
    return y, mask


def _scratch(
    adata: AnnData, rep: str, X: np.ndarray, obs_cols: list[str], rows, Y=None, genes=None
):
    """Build a minimal AnnData (positional obs names) for fitting decoders.

    Nothing is written into the user's object; ``rows`` are positions into ``adata``.
    """
    obs = adata.obs[[c for c in obs_cols if c is not None]].iloc[rows].copy()
    obs.index = pd.Index(np.arange(len(obs)).astype(str))
    var = None if genes is None else pd.DataFrame(index=pd.Index(genes))
    return AnnData(None if Y is None else Y[rows], obs=obs, var=var, obsm={rep: X[rows]})


def _decoder_split(masks, seed: int) -> np.ndarray:
    """Return train / val / test per cell for the decoders (None: unused).

    Without ``val`` cells a seeded 15% of the training cells early-stops the fit.
    """
    train, val, test = masks
    out = np.full(len(train), None, dtype=object)
    out[train], out[test] = "train", "test"
    if val.any():
        out[val] = "val"
    else:
        rng = np.random.default_rng(seed)
        tr = np.flatnonzero(train)
        out[rng.choice(tr, size=max(1, round(0.15 * len(tr))), replace=False)] = "val"
    return out


def _with_split(tmp: AnnData, rows, dec_split, kwargs: dict) -> dict:
    if dec_split is None:
        return kwargs
    tmp.obs["_mad_eval_split"] = pd.Categorical(np.asarray(dec_split, dtype=object)[rows])
    return {**kwargs, "split": "_mad_eval_split"}


@dataclass
class _Fit:
    """What a decoder fit on one representation and seed needs."""

    adata: AnnData
    rep: str
    X: np.ndarray
    groupby: str | None
    seed: int
    kwargs: dict
    dec_split: np.ndarray | None = None


def _decoder_rows(scores: _Scores, fit: _Fit, labels: str, mask):
    rep, seed = fit.rep, fit.seed
    rows = np.flatnonzero(mask)
    tmp = _scratch(fit.adata, rep, fit.X, [labels, fit.groupby], rows)
    tmp.obs[labels] = tmp.obs[labels].astype(str)
    kwargs = _with_split(tmp, rows, fit.dec_split, fit.kwargs)
    dec = fit_decoder(tmp, target=labels, use_rep=rep, seed=seed, **kwargs)
    idx = tmp.obs_names.get_indexer(dec.split[dec.metrics["evaluated_on"]])
    pred = dec.predict(tmp.obsm[rep][idx])
    true = tmp.obs[labels].to_numpy()[idx]
    strata = scores.strata_of(rows[idx])
    hits = (pred == true).astype(float)
    scores.record(rep, "decoder_accuracy", seed, (hits,), np.mean, len(idx), strata, seed)

    def balanced(t, p):
        return float(np.mean([np.mean(p[t == c] == c) for c in np.unique(t)]))

    n = len(idx)
    scores.record(rep, "decoder_balanced_accuracy", seed, (true, pred), balanced, n, strata, seed)


def _expression_rows(scores: _Scores, fit: _Fit, Y, genes):
    rep, seed, n_obs = fit.rep, fit.seed, fit.adata.n_obs
    tmp = _scratch(fit.adata, rep, fit.X, [fit.groupby], np.arange(n_obs), Y=Y, genes=genes)
    kwargs = _with_split(tmp, np.arange(n_obs), fit.dec_split, fit.kwargs)
    dec = fit_decoder(tmp, target=EXPRESSION, use_rep=rep, normalize=None, seed=seed, **kwargs)
    idx = tmp.obs_names.get_indexer(dec.split[dec.metrics["evaluated_on"]])
    pred, true = dec.predict(fit.X[idx]), Y[idx]
    strata = scores.strata_of(idx)
    scores.record(
        rep, "expression_pearson", seed, (true, pred), _nanmean_pearson, len(idx), strata, seed
    )
    r = pearson_per_gene(true, pred)
    return pd.DataFrame({"rep": rep, "seed": seed, "gene": genes, "pearson": r})


def hest_folds(n: int, groups, masks, *, n_splits: int, seed: int):
    """Return the folds ``[(train_idx, test_idx)]`` of ``hest_pearson``.

    The split's train -> test, else grouped (``groups``) or seeded random ``n_splits`` folds.
    """
    from sklearn.model_selection import GroupKFold, KFold

    if masks is not None:
        return [(np.flatnonzero(masks[0]), np.flatnonzero(masks[2]))]
    idx = np.arange(n)
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            raise ValueError(
                f"hest: grouped folds need >= 2 groups in groupby, got {n_groups}; pass "
                "groupby=None (random folds) or split=."
            )
        return list(GroupKFold(min(n_splits, n_groups)).split(idx, groups=groups))
    return list(KFold(n_splits, shuffle=True, random_state=seed).split(idx))


def hest_predict(X_train, Y_train, X_test, *, n_components: int = 256, seed: int = 0):
    """Predict with HEST-Benchmark's linear protocol.

    Standardise, PCA (fitted on the training rows), ridge with
    ``alpha = 100 / (dims x targets)``, no intercept, lsqr solver.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    k = int(min(n_components, X_train.shape[0], X_train.shape[1]))
    pca = PCA(n_components=k, random_state=seed).fit(scaler.transform(X_train))
    Z_train = pca.transform(scaler.transform(X_train))
    Z_test = pca.transform(scaler.transform(X_test))
    reg = Ridge(
        alpha=100.0 / (Z_train.shape[1] * Y_train.shape[1]),
        solver="lsqr",
        fit_intercept=False,
        max_iter=1000,
        random_state=seed,
    )
    # PCA scores are centred on the training rows, so a model without intercept fits the
    # same slopes as one with; the targets' mean only shifts predictions (Pearson ignores it)
    reg.fit(Z_train, Y_train - Y_train.mean(0))
    return reg.predict(Z_test) + Y_train.mean(0)


def knn_expression_predict(X_train, Y_train, X_test, *, n_neighbors: int = 15):
    """Predict expression by kNN regression.

    Each test cell gets the mean of its ``n_neighbors`` nearest training cells (cosine
    distance, uniform weights).
    """
    from sklearn.neighbors import KNeighborsRegressor

    k = int(min(n_neighbors, X_train.shape[0]))
    reg = KNeighborsRegressor(n_neighbors=k, metric="cosine", weights="uniform")
    return reg.fit(X_train, Y_train).predict(X_test)


def _hest_rows(scores: _Scores, rep, X, Y, genes, masks, seed, n_splits, n_genes, n_components):
    def predict(X_tr, Y_tr, X_te):
        return hest_predict(X_tr, Y_tr, X_te, n_components=n_components, seed=seed)

    return _regression_rows(
        scores, rep, "hest_pearson", X, Y, genes, masks, seed, n_splits, n_genes, predict
    )


def _knn_expression_rows(scores: _Scores, rep, X, Y, genes, masks, seed, n_splits, n_genes, k):
    def predict(X_tr, Y_tr, X_te):
        return knn_expression_predict(X_tr, Y_tr, X_te, n_neighbors=k)

    return _regression_rows(
        scores, rep, "knn_expression_pearson", X, Y, genes, masks, seed, n_splits, n_genes, predict
    )


def _regression_rows(
    scores: _Scores, rep, metric, X, Y, genes, masks, seed, n_splits, n_genes, predict
):
    """Score one expression regression as HEST does; return its per-gene table.

    The ``n_genes`` most variable genes of the training cells, ``predict(X_train,
    Y_train, X_test)`` per fold, per-gene Pearson r averaged over genes per fold, then
    over folds.
    """
    folds = hest_folds(len(X), scores.groups, masks, n_splits=n_splits, seed=seed)
    train_all = np.unique(np.concatenate([tr for tr, _ in folds]))
    var = Y[train_all].var(axis=0)
    top = np.argsort(-var, kind="stable")[: min(n_genes, Y.shape[1])]
    Yt = Y[:, top]
    pred = np.full(Yt.shape, np.nan)
    fold_id = np.full(len(X), -1)
    for f, (tr, te) in enumerate(folds):
        pred[te] = predict(X[tr], Yt[tr], X[te])
        fold_id[te] = f
    scored = np.flatnonzero(fold_id >= 0)

    def per_fold_mean(t, p, fid):
        vals = [_nanmean_pearson(t[fid == f], p[fid == f]) for f in np.unique(fid)]
        return float(np.nanmean(vals))

    scores.record(
        rep,
        metric,
        seed,
        (Yt[scored], pred[scored], fold_id[scored]),
        per_fold_mean,
        len(scored),
        fold_id[scored],
        seed,
    )
    r = np.nanmean(
        np.stack(
            [pearson_per_gene(Yt[fold_id == f], pred[fold_id == f]) for f in range(len(folds))]
        ),
        axis=0,
    )
    return pd.DataFrame({"rep": rep, "seed": seed, "gene": np.asarray(genes)[top], "pearson": r})
