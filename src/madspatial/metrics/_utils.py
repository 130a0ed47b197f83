"""Input checks shared by the metrics (arrays in, clear errors out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse


def as_label_pair(labels_true, labels_pred) -> tuple[np.ndarray, np.ndarray]:
    """Two equally long 1-D label arrays as strings-or-values numpy arrays."""
    t = _as_labels(labels_true, "labels_true")
    p = _as_labels(labels_pred, "labels_pred")
    if len(t) != len(p):
        raise ValueError(
            f"labels_true has {len(t)} entries but labels_pred has {len(p)}; pass one label "
            "per cell for the same cells in the same order."
        )
    if len(t) == 0:
        raise ValueError("no cells to score: labels_true and labels_pred are empty.")
    return t, p


def _as_labels(labels, name: str) -> np.ndarray:
    arr = labels.to_numpy() if isinstance(labels, pd.Series | pd.Index) else np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per cell), got shape {arr.shape}.")
    missing = pd.isna(arr)
    if missing.any():
        raise ValueError(
            f"{name} has {int(missing.sum())} missing value(s) (NaN/None); drop those cells "
            "before scoring."
        )
    return arr


def as_dense_2d(x, name: str, *, dtype=np.float64) -> np.ndarray:
    """Return ``x`` as a dense 2-D float array (sparse, DataFrame and 1-D inputs accepted)."""
    if sparse.issparse(x):
        x = x.toarray()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (cells x features), got shape {arr.shape}.")
    return arr


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise naming how many rows of ``x`` hold NaN/inf."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has {bad.sum()} row(s) with NaN or inf values (first rows: "
            f"{rows[:5].tolist()}); drop those cells or recompute the embedding."
        )
