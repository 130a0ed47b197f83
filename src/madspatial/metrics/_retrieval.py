"""Cross-view retrieval: whether a cell's morphology embedding finds its own microenvironment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._utils import as_dense_2d, check_finite

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def retrieval_ranks(
    query: ArrayLike, candidates: ArrayLike, *, batch_size: int = 2048
) -> np.ndarray:
    """Rank of each query's true partner among all candidates, by cosine similarity.

    Row ``i`` of ``query`` and row ``i`` of ``candidates`` are the two views of the
    same cell. The rank is the number of candidates strictly more similar to the
    query than its partner (0 = retrieved first); ties therefore count in the
    query's favour, as with any top-K list that includes ties.

    Parameters
    ----------
    query
        Embeddings of one view, cells x dimensions.
    candidates
        Embeddings of the other view, same cells in the same order (the dimension may
        differ only if the spaces are shared, so it must match ``query``).
    batch_size
        Queries scored at once (memory is ``batch_size x n_cells`` floats).

    Returns
    -------
    Integer rank per cell (0-based).
    """
    q = _unit(as_dense_2d(query, "query", dtype=np.float32), "query")
    c = _unit(as_dense_2d(candidates, "candidates", dtype=np.float32), "candidates")
    if q.shape != c.shape:
        raise ValueError(
            f"query {q.shape} and candidates {c.shape} must have the same shape: row i of "
            "each is the same cell seen through the two views."
        )
    ranks = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), batch_size):
        sim = q[start : start + batch_size] @ c.T  # (b, N)
        rows = np.arange(sim.shape[0])
        true = sim[rows, start + rows]
        ranks[start : start + len(rows)] = (sim > true[:, None]).sum(axis=1)
    return ranks


def recall_at_k(
    query: ArrayLike,
    candidates: ArrayLike,
    *,
    k: int | Sequence[int] = (1, 5, 10),
    symmetric: bool = False,
    batch_size: int = 2048,
) -> float | dict[int, float]:
    """Cross-view Recall@K: share of cells whose partner view is among the top K.

    Parameters
    ----------
    query
        Embeddings of one view (e.g. ``obsm["X_mad_morphology"]``), cells x dimensions.
    candidates
        Embeddings of the other view (e.g. ``obsm["X_mad_microenvironment"]``), same cells.
    k
        One K or several.
    symmetric
        Average the two directions (query -> candidates and candidates -> query).
    batch_size
        Queries scored at once.

    Returns
    -------
    Recall@K as a float when ``k`` is an int, else ``{K: recall}``. Chance level is
    ``K / n_cells``.
    """
    ranks = [retrieval_ranks(query, candidates, batch_size=batch_size)]
    if symmetric:
        ranks.append(retrieval_ranks(candidates, query, batch_size=batch_size))
    ks = [k] if isinstance(k, int | np.integer) else list(k)
    out = {int(kk): float(np.mean([np.mean(r < kk) for r in ranks])) for kk in ks}
    return out[int(k)] if isinstance(k, int | np.integer) else out


def _unit(x: np.ndarray, name: str) -> np.ndarray:
    check_finite(x, name)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError(
            f"{name} has {int((norm == 0).sum())} all-zero row(s); cosine similarity is "
            "undefined for them."
        )
    return x / norm
