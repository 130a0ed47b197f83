"""``mad.pp.split``: reproducible, group-aware train/validation/test splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._constants import OBS_SPLIT
from .._logging import added
from .._settings import settings

_DEFAULT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}


def _fractions(fractions: Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(fractions, Mapping):
        out = {str(k): float(v) for k, v in fractions.items()}
    else:
        vals = [float(v) for v in fractions]
        if len(vals) not in _DEFAULT_NAMES:
            raise ValueError(
                f"fractions as a sequence must have 2 (train, test) or 3 (train, val, test) "
                f"entries, got {len(vals)}; pass a dict for other splits."
            )
        out = dict(zip(_DEFAULT_NAMES[len(vals)], vals))
    if len(out) < 2:
        raise ValueError(f"need at least two splits, got {out}.")
    if any(not v > 0 for v in out.values()):
        raise ValueError(f"fractions must be positive, got {out}.")
    total = sum(out.values())
    if abs(total - 1) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {out} (sum {total:.6g}).")
    return out


def _table(data: Any, table_key: str | None):
    import anndata as ad

    if isinstance(data, ad.AnnData):
        return data
    tables = getattr(data, "tables", None)
    if tables is None:
        raise TypeError(f"split expects an AnnData or a SpatialData, got {type(data).__name__}.")
    if table_key is None:
        if len(tables) != 1:
            raise ValueError(f"SpatialData has tables {list(tables)}; pass table_key=.")
        table_key = next(iter(tables))
    return tables[table_key]


def split(
    data: Any,
    *,
    groupby: str | None = None,
    fractions: Sequence[float] | Mapping[str, float] = (0.75, 0.25),
    seed: int | None = None,
    key_added: str = OBS_SPLIT,
    table_key: str | None = None,
    copy: bool = False,
):
    """Assign every cell to a split, keeping whole groups (slides, patients) together.

    With ``groupby``, all cells of a group fall into one split, so no slide or
    condition leaks between training and evaluation (the paper's rule). Groups
    are visited in a seeded random order and each goes to the split furthest
    below its target share of *cells* (relative to the target), which gives
    every split a group first and then fills the shares as closely as whole
    groups allow. Without ``groupby`` cells are split at random with exact counts.

    Parameters
    ----------
    data
        AnnData, or SpatialData (its table).
    groupby
        ``obs`` column whose groups must not be split (e.g. ``"slide"``).
    fractions
        Target shares: ``(train, test)``, ``(train, val, test)`` or a dict
        ``{name: share}``; positive, summing to 1.
    seed
        Random seed (default ``mad.settings.seed``).
    key_added
        ``obs`` column (categorical, split names) and ``uns`` key written.
    table_key
        Table of a SpatialData (default: the only one).
    copy
        Return a modified copy of the table instead of writing in place.

    Returns
    -------
    ``None``, or the AnnData copy when ``copy=True``. Writes

    ``.obs[key_added]``
        Categorical split name of each cell.
    ``.uns[key_added]``
        ``groupby``, ``fractions``, ``seed``, the realised ``n_cells`` per
        split and, with ``groupby``, the ``groups`` in each split.
    """
    fr = _fractions(fractions)
    names = list(fr)
    adata = _table(data, table_key)
    if copy:
        adata = adata.copy()
    seed = settings.seed if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    n = adata.n_obs
    assign = np.empty(n, dtype=np.int64)
    info: dict[str, Any] = {"groupby": groupby or "", "fractions": fr, "seed": seed}
    if groupby is None:
        if n < len(names):
            raise ValueError(f"{n} cells cannot fill {len(names)} splits.")
        raw = np.array(list(fr.values())) * n
        counts = np.floor(raw).astype(np.int64)
        # Largest remainders get the leftover cells; then no split may stay empty.
        counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
        for i in np.flatnonzero(counts == 0):
            counts[np.argmax(counts)] -= 1
            counts[i] = 1
        perm = rng.permutation(n)
        assign[perm] = np.repeat(np.arange(len(names)), counts)
    else:
        if groupby not in adata.obs:
            raise KeyError(f"obs has no column {groupby!r}; columns: {list(adata.obs.columns)}.")
        col = adata.obs[groupby]
        if col.isna().any():
            raise ValueError(
                f"obs[{groupby!r}] has {int(col.isna().sum())} missing values; every cell needs "
                "a group (fill them, e.g. with 'unknown')."
            )
        codes, uniques = pd.factorize(col, sort=True)
        sizes = np.bincount(codes, minlength=len(uniques))
        if len(uniques) < len(names):
            raise ValueError(
                f"obs[{groupby!r}] has {len(uniques)} group(s) ({list(map(str, uniques))}) for "
                f"{len(names)} splits {names}; every split needs a whole group. Use fewer splits "
                "or a finer groupby."
            )
        target = np.array(list(fr.values())) * n
        filled = np.zeros(len(names))
        group_split = np.empty(len(uniques), dtype=np.int64)
        for g in rng.permutation(len(uniques)):
            s = int(np.argmax((target - filled) / target))
            group_split[g] = s
            filled[s] += sizes[g]
        assign = group_split[codes]
        info["groups"] = {
            name: sorted(str(uniques[g]) for g in np.flatnonzero(group_split == i))
            for i, name in enumerate(names)
        }
    adata.obs[key_added] = pd.Categorical.from_codes(assign, categories=names)
    info["n_cells"] = {name: int((assign == i).sum()) for i, name in enumerate(names)}
    adata.uns[key_added] = info
    added(key_added, "obs")
    added(key_added, "uns")
    return adata if copy else None
