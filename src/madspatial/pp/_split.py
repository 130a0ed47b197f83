"""``mad.pp.split``: reproducible, group-aware train/validation/test splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._constants import OBS_SPLIT, OBSM_SPATIAL, SPLIT_GUARD
from .._logging import added
from .._settings import settings

if TYPE_CHECKING:
    from anndata import AnnData

_DEFAULT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}
METHODS = ("random", "spatial_blocks")


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


def _group_column(adata, groupby: str) -> pd.Series:
    if groupby not in adata.obs:
        raise KeyError(f"obs has no column {groupby!r}; columns: {list(adata.obs.columns)}.")
    col = adata.obs[groupby]
    if col.isna().any():
        raise ValueError(
            f"obs[{groupby!r}] has {int(col.isna().sum())} missing values; every cell needs "
            "a group (fill them, e.g. with 'unknown')."
        )
    return col


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


def _assign_groups(sizes: np.ndarray, fr: dict[str, float], rng, n: int) -> np.ndarray:
    """Seeded greedy assignment of whole groups to splits (see :func:`split`)."""
    target = np.array(list(fr.values())) * n
    filled = np.zeros(len(fr))
    group_split = np.empty(len(sizes), dtype=np.int64)
    for g in rng.permutation(len(sizes)):
        s = int(np.argmax((target - filled) / target))
        group_split[g] = s
        filled[s] += sizes[g]
    return group_split


def _spatial_blocks(adata, spatial_key: str, block_size, groups) -> tuple[np.ndarray, np.ndarray]:
    """Return the block id of every cell and the (N, 2) coordinates.

    Blocks are squares of ``block_size`` on the centroid grid, within ``groups`` when given
    (e.g. per slide).
    """
    if spatial_key not in adata.obsm:
        raise KeyError(
            f"method='spatial_blocks' needs cell coordinates in obsm[{spatial_key!r}]; obsm has "
            f"{list(adata.obsm)}. Pass spatial_key= the key of the centroids."
        )
    xy = np.asarray(adata.obsm[spatial_key], dtype=np.float64)[:, :2]
    if not np.isfinite(xy).all():
        raise ValueError(f"obsm[{spatial_key!r}] has non-finite coordinates.")
    if (
        block_size is None
        or isinstance(block_size, bool)
        or not isinstance(block_size, int | float | np.integer | np.floating)
        or not block_size > 0
    ):
        raise ValueError(
            "method='spatial_blocks' needs block_size, the side of a square block in the units "
            f"of obsm[{spatial_key!r}] (a positive number, e.g. 4 microenvironment windows); got "
            f"{block_size!r}."
        )
    cell = np.floor((xy - xy.min(0)) / float(block_size)).astype(np.int64)
    keys = pd.DataFrame(
        {"g": groups if groups is not None else 0, "x": cell[:, 0], "y": cell[:, 1]}
    )
    return keys.groupby(["g", "x", "y"], sort=True).ngroup().to_numpy(), xy


def _guard_train(assign, xy, guard: float, groups) -> np.ndarray:
    """Cells of the first split within ``guard`` of a cell of another split (same group)."""
    from scipy.spatial import cKDTree

    out = np.zeros(len(assign), dtype=bool)
    group_ids = np.zeros(len(assign)) if groups is None else pd.factorize(groups)[0]
    for g in np.unique(group_ids):
        in_g = group_ids == g
        first = np.flatnonzero(in_g & (assign == 0))
        others = np.flatnonzero(in_g & (assign != 0))
        if len(first) == 0 or len(others) == 0:
            continue
        d, _ = cKDTree(xy[others]).query(xy[first], k=1)
        out[first[d < guard]] = True
    return out


def split(
    data: Any,
    *,
    groupby: str | None = None,
    fractions: Sequence[float] | Mapping[str, float] = (0.75, 0.25),
    method: str = "random",
    block_size: float | None = None,
    guard: float | None = None,
    spatial_key: str = OBSM_SPATIAL,
    seed: int | None = None,
    key_added: str = OBS_SPLIT,
    table_key: str | None = None,
    copy: bool = False,
) -> AnnData | None:
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
    method
        ``"random"`` (cells, or whole ``groupby`` groups) or ``"spatial_blocks"`` (whole
        tiles of the tissue).
    block_size
        Side of a tile in the units of ``obsm[spatial_key]`` (``"spatial_blocks"`` only;
        required). Several windows wide, so most cells are far from a tile border.
    guard
        Width of the band removed from the first split along its borders with the others
        (``"spatial_blocks"`` only; default ``0``, no band). Use about one
        microenvironment window (``mad.pp.cell_views``' window, in the same units).
    spatial_key
        ``obsm`` key of the cell centroids.
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
        ``groupby``, ``fractions``, ``seed``, ``method``, the realised ``n_cells`` per
        split (and ``"guard"``), with ``groupby`` the ``groups`` in each split, and with
        ``"spatial_blocks"`` ``block_size``, ``guard`` and ``n_blocks`` per split.
    """
    _check_method(method, block_size, guard)
    fr = _fractions(fractions)
    adata = _table(data, table_key)
    if copy:
        adata = adata.copy()
    seed = settings.seed if seed is None else int(seed)
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {
        "groupby": groupby or "",
        "fractions": fr,
        "seed": seed,
        "method": method,
    }
    guarded = np.zeros(adata.n_obs, dtype=bool)
    if method == "spatial_blocks":
        assign, guarded = _by_blocks(adata, fr, rng, info, groupby, block_size, guard, spatial_key)
    elif groupby is None:
        assign = _by_cells(adata.n_obs, fr, rng)
    else:
        assign = _by_groups(adata, fr, rng, info, groupby)
    names = list(fr)
    if guarded.any():
        cats = [*names, SPLIT_GUARD]
        assign = np.where(guarded, len(names), assign)
    else:
        cats = names
    adata.obs[key_added] = pd.Categorical.from_codes(assign, categories=cats)
    info["n_cells"] = {name: int((assign == i).sum()) for i, name in enumerate(cats)}
    adata.uns[key_added] = info
    added(key_added, "obs")
    added(key_added, "uns")
    return adata if copy else None


# ------------------------------------------------------------------ steps of split
def _check_method(method: str, block_size, guard) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if method != "spatial_blocks" and (block_size is not None or guard is not None):
        raise ValueError(
            f"block_size and guard only apply to method='spatial_blocks'; got method={method!r}."
        )
    if guard is not None and not (
        isinstance(guard, int | float | np.integer | np.floating)
        and not isinstance(guard, bool)
        and guard >= 0
    ):
        raise ValueError(f"guard must be a number >= 0 (0: no band), got {guard!r}.")


def _by_blocks(adata, fr, rng, info: dict, groupby, block_size, guard, spatial_key):
    """``method="spatial_blocks"``: split index per cell and the guard band's cells."""
    names = list(fr)
    n = adata.n_obs
    guarded = np.zeros(n, dtype=bool)
    groups = None
    if groupby is not None:
        groups = _group_column(adata, groupby).astype(str).to_numpy()
    block, xy = _spatial_blocks(adata, spatial_key, block_size, groups)
    sizes = np.bincount(block)
    if len(sizes) < len(names):
        raise ValueError(
            f"block_size={block_size} gives {len(sizes)} block(s) for {len(names)} splits "
            f"{names}; use a smaller block_size."
        )
    block_split = _assign_groups(sizes, fr, rng, n)
    assign = block_split[block]
    guard = 0.0 if guard is None else float(guard)
    if guard > 0:
        guarded = _guard_train(assign, xy, guard, groups)
    info.update(
        block_size=float(block_size),
        guard=guard,
        spatial_key=spatial_key,
        n_blocks={name: int((block_split == i).sum()) for i, name in enumerate(names)},
    )
    return assign, guarded


def _by_cells(n: int, fr, rng) -> np.ndarray:
    """Cells split at random with exact counts: split index per cell."""
    names = list(fr)
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
    assign = np.empty(n, dtype=np.int64)
    assign[perm] = np.repeat(np.arange(len(names)), counts)
    return assign


def _by_groups(adata, fr, rng, info: dict, groupby: str) -> np.ndarray:
    """Whole ``groupby`` groups assigned to splits: split index per cell."""
    names = list(fr)
    col = _group_column(adata, groupby)
    codes, uniques = pd.factorize(col, sort=True)
    sizes = np.bincount(codes, minlength=len(uniques))
    if len(uniques) < len(names):
        raise ValueError(
            f"obs[{groupby!r}] has {len(uniques)} group(s) ({list(map(str, uniques))}) for "
            f"{len(names)} splits {names}; every split needs a whole group. Use fewer splits "
            "or a finer groupby."
        )
    group_split = _assign_groups(sizes, fr, rng, adata.n_obs)
    info["groups"] = {
        name: sorted(str(uniques[g]) for g in np.flatnonzero(group_split == i))
        for i, name in enumerate(names)
    }
    return group_split[codes]
