"""The demo's scores: ``mad.tl.evaluate`` for everything it provides.

The few scores it has no equivalent for are computed here, each with the reason.

Every function takes an AnnData and the models and returns a tidy ``model, metric, value``
table, so the scores can be checked against a direct ``tl.evaluate`` call on the same
embeddings (``tests/demo/test_scoring.py``). One seed and no bootstrap (``n_boot=0``): the
demo shows one fitted model per embedding, as before; ``tl.evaluate`` with several seeds
and CIs is the tool for a real comparison.

Scores ``tl.evaluate`` does not provide, kept here:

- ``louvain_n_clusters`` of *all* cells, read from ``tl.louvain``'s ``.uns`` entry (the
  clusters drawn in the UMAPs); ``tl.evaluate`` counts clusters only among labelled cells
  and only when there are labels.
- the kNN-probe accuracy per designed subtype pair (:func:`pair_accuracy`): it needs the
  per-cell out-of-fold predictions, which ``tl.evaluate`` does not return, so they are
  recomputed with :func:`madspatial.metrics.probe_predictions` on the cells and label codes
  ``tl.evaluate`` scores (the test checks that their accuracy equals its ``knn_accuracy``).
- ``cca_mean_r`` and ``pseudotime_spearman`` come from ``tl.cca`` and ``tl.pseudotime``
  (recorded by the pipeline): ``tl.evaluate`` has no CCA or trajectory metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from .._constants import UNS_EVALUATE
from ._presets import DECODER_PATIENCE, DemoModel

#: tl.evaluate's cross-validation folds (its default): classes need this many cells.
N_SPLITS = 5
#: tl.evaluate's metric name -> the demo's column (recall is across MAD's two views).
RENAMED = {"recall@10": "crossview_recall@10"}
COLUMNS = ["model", "metric", "value"]


def _evaluate(adata: AnnData, models: Sequence[DemoModel], **kwargs) -> pd.DataFrame:
    """``tl.evaluate`` with one seed and no bootstrap, as a tidy model/metric/value table."""
    from .. import tl

    kwargs.setdefault("inplace", False)
    table = tl.evaluate(adata, reps=[m.rep for m in models], n_boot=0, n_splits=N_SPLITS, **kwargs)
    names = {m.rep: m.name for m in models}
    return pd.DataFrame(
        {
            "model": table["rep"].map(names),
            "metric": table["metric"].replace(RENAMED),
            "value": table["value"].astype(float),
        }
    )


def cluster_scores(
    adata: AnnData, models: Sequence[DemoModel], *, labels: str | None, seed: int
) -> pd.DataFrame:
    """Louvain cluster count (from ``tl.louvain``) and, with ``labels``, ARI and purity.

    ARI and purity of the Louvain clusters against ``labels`` come from ``tl.evaluate``,
    with the same graph and seed as ``tl.louvain``'s defaults, so the scored clusters are
    the drawn ones.
    """
    counts = pd.DataFrame(
        {
            "model": [m.name for m in models],
            "metric": "louvain_n_clusters",
            "value": [float(adata.uns[m.louvain_key]["n_clusters"]) for m in models],
        }
    )
    if labels is None:
        return counts
    scores = _evaluate(adata, models, labels=labels, seeds=(seed,), metrics=("louvain",))
    scores = scores[scores["metric"] != "louvain_n_clusters"]  # counted among labelled cells
    # per model: count, ARI, purity (the report's column order)
    both = pd.concat([counts, scores], ignore_index=True)
    order = {m.name: i for i, m in enumerate(models)}
    return both.sort_values("model", key=lambda s: s.map(order), kind="stable")[COLUMNS]


def label_scores(
    adata: AnnData,
    models: Sequence[DemoModel],
    *,
    labels: str,
    seed: int,
    decoder_epochs: int,
) -> pd.DataFrame:
    """Out-of-fold kNN-probe accuracy and held-out accuracy of a cell-type decoder.

    The decoder's accuracy is plain and balanced, of a cross-entropy cell-type decoder
    (``tl.evaluate``'s ``knn`` and ``decoder``).
    """
    return _evaluate(
        adata,
        models,
        labels=labels,
        seeds=(seed,),
        metrics=("knn", "decoder"),
        decoder_kwargs={
            "loss": "cross_entropy",
            "max_epochs": decoder_epochs,
            "patience": DECODER_PATIENCE,
        },
    )


def expression_scores(
    adata: AnnData, models: Sequence[DemoModel], *, seed: int, decoder_epochs: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean held-out Pearson r of an expression decoder over genes, and the per-gene r.

    ``tl.evaluate``'s ``expression``; the per-gene r is genes x models. Stores
    ``tl.evaluate``'s entry in ``adata.uns["mad_evaluate"]``.
    """
    scores = _evaluate(
        adata,
        models,
        expression="X",
        seeds=(seed,),
        metrics=("expression",),
        decoder_kwargs={"max_epochs": decoder_epochs, "patience": DECODER_PATIENCE},
        inplace=True,
        key_added=UNS_EVALUATE,
    )
    long = adata.uns[UNS_EVALUATE]["per_gene"]
    per_gene = long.pivot(index="gene", columns="rep", values="pearson")
    per_gene = per_gene.loc[list(dict.fromkeys(long["gene"])), [m.rep for m in models]]
    per_gene.columns = [m.name for m in models]
    per_gene.columns.name = None
    return scores, per_gene


def recall_scores(adata: AnnData, models: Sequence[DemoModel]) -> pd.DataFrame:
    """Cross-view Recall@10 (``tl.evaluate``'s ``recall``) of the models that embed both views.

    MAD: morphology token -> microenvironment token of the same cell, both ways.
    """
    return _evaluate(adata, models, seeds=(0,), metrics=("recall",), recall_k=(10,))


def scored_labels(adata: AnnData, labels: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the cells and integer label codes ``tl.evaluate`` scores.

    Labelled cells of classes with at least :data:`N_SPLITS` cells, codes in order of
    first appearance.

    Returns ``(mask, codes, names)``: the cells kept, their codes, and the name of each code.
    """
    col = adata.obs[labels]
    y = col.astype(str).to_numpy(dtype=object)
    codes, names = pd.factorize(y)
    mask = ~col.isna().to_numpy()
    counts = pd.Series(y[mask]).value_counts()
    mask &= ~np.isin(y, counts[counts < N_SPLITS].index.to_numpy())
    return mask, codes[mask], np.asarray(names, dtype=object)


def knn_predictions(
    adata: AnnData, models: Sequence[DemoModel], *, labels: str, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Out-of-fold kNN-probe predictions (label names) on the cells ``tl.evaluate`` scores.

    With their true labels: what :func:`pair_accuracy` needs and ``tl.evaluate`` keeps to
    itself.
    """
    from .. import metrics

    mask, codes, names = scored_labels(adata, labels)
    preds = {}
    for m in models:
        X = np.asarray(adata.obsm[m.rep])[mask]
        pred = metrics.probe_predictions(X, codes, method="knn", n_splits=N_SPLITS, seed=seed)
        preds[m.name] = names[np.asarray(pred, dtype=int)].astype(str)
    return names[codes].astype(str), preds


def pair_accuracy(
    truth: np.ndarray, preds: dict[str, np.ndarray], pairs: dict[str, Sequence[tuple[str, str]]]
) -> pd.DataFrame:
    """Share of each subtype pair's cells given their own label, per model.

    ``pairs`` maps what tells a pair apart (``"niche"``, ``"morphology"``) to its pairs;
    pairs with fewer than 10 cells are left out.
    """
    rows = []
    for kind, kind_pairs in pairs.items():
        for a, b in kind_pairs:
            sel = np.isin(truth, [a, b])
            if sel.sum() < 10:
                continue
            row = {"pair": f"{a} / {b}", "told apart by": f"{kind} only", "cells": int(sel.sum())}
            for name, pred in preds.items():
                row[name] = float(np.mean(pred[sel] == truth[sel]))
            rows.append(row)
    return pd.DataFrame(rows)
