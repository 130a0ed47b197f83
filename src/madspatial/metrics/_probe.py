"""How much label information an embedding holds: cross-validated kNN and linear probes.

Both probes return out-of-fold predictions first (:func:`probe_predictions`), so the
accuracy of every cell comes from a model that never saw it, and the per-cell hits
can be bootstrapped (:func:`~madspatial.metrics.bootstrap_ci`). With ``groups`` the
folds never split a group (a slide, a patient): the score then measures transfer
to unseen groups, which is what an analyst with a new slide gets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .._docs import doc_params, doc_probe_folds
from ._utils import as_dense_2d, as_label_pair, check_finite

if TYPE_CHECKING:
    from numpy.typing import ArrayLike
    from scipy.sparse import spmatrix


def probe_predictions(
    X: ArrayLike | spmatrix,
    labels: ArrayLike,
    *,
    method: Literal["knn", "linear"] = "knn",
    groups=None,
    n_splits: int = 5,
    n_neighbors: int = 15,
    metric: str = "cosine",
    C: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold label predictions of a kNN or linear probe on an embedding.

    Parameters
    ----------
    X
        Embedding, cells x dimensions (dense or sparse; NaN rows are an error).
    labels
        One label per cell (no missing values: drop unlabelled cells first).
    method
        ``"knn"``: majority vote of the ``n_neighbors`` nearest training cells;
        ``"linear"``: multinomial logistic regression on standardized features.
    groups
        Optional group per cell (slide, patient). Folds then keep each group whole
        (:class:`~sklearn.model_selection.StratifiedGroupKFold`); there must be at
        least ``n_splits`` groups.
    n_splits
        Number of cross-validation folds. Every class needs at least this many cells.
    n_neighbors
        Neighbours of the kNN probe (capped at the training-fold size).
    metric
        Distance of the kNN probe (any :class:`~sklearn.neighbors.KNeighborsClassifier`
        metric; cosine by default, as for the embeddings' similarity).
    C
        Inverse L2 regularisation strength of the linear probe.
    max_iter
        Iteration cap of the linear probe's solver.
    seed
        Seed of the fold shuffling.

    Returns
    -------
    Predicted label per cell (same values as ``labels``), each predicted by the fold
    model that did not train on it.
    """
    X = as_dense_2d(X, "X", dtype=np.float32)
    y_raw, _ = as_label_pair(labels, labels)
    if X.shape[0] != len(y_raw):
        raise ValueError(f"X has {X.shape[0]} rows but labels has {len(y_raw)} entries.")
    check_finite(X, "X")
    # factorize keeps the original label objects (strings, ints, categories) for the output
    y, uniques = pd.factorize(y_raw)
    classes = np.asarray(uniques)
    if len(classes) < 2:
        raise ValueError(f"a probe needs at least 2 classes, labels has {len(classes)}.")
    counts = np.bincount(y)
    rare = {str(c): int(n) for c, n in zip(classes, counts) if n < n_splits}
    if rare:
        raise ValueError(
            f"too few cells per class for {n_splits}-fold cross-validation: {rare} "
            f"(each class needs >= {n_splits}). Drop or merge these classes, or lower n_splits."
        )
    folds = _folds(y, groups, n_splits=n_splits, seed=seed)
    pred = np.empty(len(y), dtype=np.int64)
    for train, test in folds:
        model = _make_probe(
            method,
            n_neighbors=min(n_neighbors, len(train)),
            metric=metric,
            C=C,
            max_iter=max_iter,
            seed=seed,
        )
        model.fit(X[train], y[train])
        pred[test] = model.predict(X[test])
    return classes[pred]


def _folds(y: np.ndarray, groups, *, n_splits: int, seed: int):
    if groups is None:
        return StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(y, y)
    g = np.asarray(groups)
    if len(g) != len(y):
        raise ValueError(f"groups has {len(g)} entries but labels has {len(y)}.")
    n_groups = len(np.unique(g.astype(str)))
    if n_groups < n_splits:
        raise ValueError(
            f"group-aware cross-validation needs at least n_splits={n_splits} groups, got "
            f"{n_groups}; lower n_splits or pass groups=None."
        )
    return StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(y, y, g)


def _make_probe(method: str, *, n_neighbors: int, metric: str, C: float, max_iter: int, seed: int):
    if method == "knn":
        return KNeighborsClassifier(n_neighbors=n_neighbors, metric=metric)
    if method == "linear":
        return make_pipeline(
            StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
        )
    raise ValueError(f"method must be 'knn' or 'linear', got {method!r}.")


def _accuracy(labels, pred, balanced: bool) -> float:
    t, p = as_label_pair(labels, pred)
    if balanced:
        return float(balanced_accuracy_score(t.astype(str), p.astype(str)))
    return float(np.mean(t == p))


@doc_params(doc_probe_folds=doc_probe_folds)
def knn_accuracy(
    X: ArrayLike | spmatrix,
    labels: ArrayLike,
    *,
    n_neighbors: int = 15,
    metric: str = "cosine",
    groups=None,
    n_splits: int = 5,
    balanced: bool = False,
    seed: int = 0,
) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier on an embedding.

    Parameters
    ----------
    X
        Embedding, cells x dimensions.
    labels
        One label per cell.
    n_neighbors
        Neighbours that vote.
    metric
        Distance between cells (cosine by default).
    groups
        Optional group per cell; folds keep groups whole (see :func:`probe_predictions`).
    n_splits
        Cross-validation folds.
    {doc_probe_folds}

    Returns
    -------
    Out-of-fold accuracy in [0, 1].
    """
    pred = probe_predictions(
        X,
        labels,
        method="knn",
        groups=groups,
        n_splits=n_splits,
        n_neighbors=n_neighbors,
        metric=metric,
        seed=seed,
    )
    return _accuracy(labels, pred, balanced)


@doc_params(doc_probe_folds=doc_probe_folds)
def linear_probe_accuracy(
    X: ArrayLike | spmatrix,
    labels: ArrayLike,
    *,
    groups=None,
    n_splits: int = 5,
    C: float = 1.0,
    max_iter: int = 1000,
    balanced: bool = False,
    seed: int = 0,
) -> float:
    """Cross-validated accuracy of a linear (logistic-regression) probe on an embedding.

    Parameters
    ----------
    X
        Embedding, cells x dimensions; standardized inside each training fold.
    labels
        One label per cell.
    groups
        Optional group per cell; folds keep groups whole (see :func:`probe_predictions`).
    n_splits
        Cross-validation folds.
    C
        Inverse L2 regularisation strength.
    max_iter
        Iteration cap of the solver.
    {doc_probe_folds}

    Returns
    -------
    Out-of-fold accuracy in [0, 1].
    """
    pred = probe_predictions(
        X,
        labels,
        method="linear",
        groups=groups,
        n_splits=n_splits,
        C=C,
        max_iter=max_iter,
        seed=seed,
    )
    return _accuracy(labels, pred, balanced)
