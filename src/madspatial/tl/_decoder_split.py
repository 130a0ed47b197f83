"""Train/validation/test splits for decoders: stratified by class or group-aware."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

SPLITS = ("train", "val", "test")


def make_split(
    n: int,
    *,
    fractions: tuple[float, float, float],
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Assign each of ``n`` cells to "train"/"val"/"test" (object array).

    With ``groups``, whole groups go to one split (drawn in a seeded random order
    until each split holds its share of cells). Otherwise, with ``labels``, each
    class is split in the given proportions, with at least one cell per class in
    every non-empty split.
    """
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or (frac < 0).any() or not np.isclose(frac.sum(), 1) or frac[0] <= 0:
        raise ValueError(
            f"split fractions must be (train, val, test), non-negative, summing to 1 with "
            f"train > 0; got {tuple(fractions)}."
        )
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=object)
    needed = [s for s, f in zip(SPLITS, frac) if f > 0]
    if groups is not None:
        uniq, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        if len(uniq) < len(needed):
            raise ValueError(
                f"a group-aware split into {needed} needs at least {len(needed)} groups, "
                f"groupby has {len(uniq)} ({uniq.tolist()}); use more groups, set the val or "
                "test fraction to 0, or pass groupby=None."
            )
        sizes = np.bincount(codes)
        order = rng.permutation(len(uniq))
        assign = np.full(len(uniq), "train", dtype=object)
        # fill test then val group by group; every needed split gets at least one group
        pos = 0
        for name, f in (("test", frac[2]), ("val", frac[1])):
            if f <= 0:
                continue
            got = 0
            while pos < len(order) - 1 and (got == 0 or got < f * n):
                assign[order[pos]] = name
                got += sizes[order[pos]]
                pos += 1
        out[:] = assign[codes]
        return out
    strata = np.zeros(n, dtype=np.int64) if labels is None else pd.factorize(labels)[0]
    for c in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == c))
        m = len(idx)
        n_test = max(1, round(frac[2] * m)) if frac[2] > 0 else 0
        n_val = max(1, round(frac[1] * m)) if frac[1] > 0 else 0
        if m - n_test - n_val < 1:
            n_test, n_val = (1 if frac[2] > 0 else 0), (1 if frac[1] > 0 else 0)
        out[idx[:n_test]] = "test"
        out[idx[n_test : n_test + n_val]] = "val"
        out[idx[n_test + n_val :]] = "train"
    return out


def split_from_obs(adata: AnnData, key: str) -> np.ndarray:
    if key not in adata.obs.columns:
        raise KeyError(
            f"split={key!r} is not a column of adata.obs (available: {list(adata.obs.columns)}); "
            "pass split=(train, val, test) fractions instead."
        )
    vals = adata.obs[key].astype(str).str.lower().replace({"validation": "val", "valid": "val"})
    out = vals.to_numpy(dtype=object)
    if not (out == "train").any():
        raise ValueError(f"adata.obs[{key!r}] has no 'train' cells (values: {sorted(set(out))}).")
    out[~np.isin(out, SPLITS)] = None  # other values: not used in fitting
    return out


def check_class_sizes(y: np.ndarray, classes: list[str], split) -> None:
    need = 1 + sum(f > 0 for f in split[1:])
    counts = np.bincount(y, minlength=len(classes))
    rare = {c: int(n) for c, n in zip(classes, counts) if n < need}
    if rare:
        raise ValueError(
            f"too few cells per class for a train/val/test split (each class needs >= {need}): "
            f"{rare}. Drop or merge these classes (e.g. adata = adata[~adata.obs[target]"
            f".isin({list(rare)})].copy()), or set the val/test fraction to 0."
        )


def make_folds(
    n: int,
    k: int,
    *,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Assign each of ``n`` cells to one of ``k`` cross-fitting folds (int array, 0..k-1).

    With ``groups``, whole groups go to one fold (largest groups first, each to the
    fold holding the fewest cells so far; ties in a seeded random order), so no group
    is both trained on and predicted by one fold model. Otherwise, with ``labels``,
    each class is dealt round-robin over the folds in a seeded random order, so every
    fold holds its share of every class.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(
            f"cross_fit must be an int >= 2 (the number of folds, e.g. 5) or None; got {k!r}."
        )
    k = int(k)
    rng = np.random.default_rng(seed)
    out = np.empty(n, dtype=np.int64)
    if groups is not None:
        uniq, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        if len(uniq) < k:
            raise ValueError(
                f"cross_fit={k} with groupby keeps groups whole, so it needs at least {k} "
                f"groups; groupby has {len(uniq)} ({uniq.tolist()[:10]}). Use "
                f"cross_fit<={len(uniq)} or more groups."
            )
        sizes = np.bincount(codes)
        shuffled = rng.permutation(len(uniq))
        order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
        load = np.zeros(k, dtype=np.int64)
        fold_of_group = np.empty(len(uniq), dtype=np.int64)
        for g in order:
            f = int(np.argmin(load))
            fold_of_group[g] = f
            load[f] += sizes[g]
        out[:] = fold_of_group[codes]
        return out
    if n < k:
        raise ValueError(f"cross_fit={k} needs at least {k} cells with a target; got {n}.")
    strata = np.zeros(n, dtype=np.int64) if labels is None else pd.factorize(labels)[0]
    offset = 0
    for c in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == c))
        out[idx] = (offset + np.arange(len(idx))) % k
        offset += len(idx)
    return out
