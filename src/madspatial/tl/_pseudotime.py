"""Diffusion pseudotime on an embedding (scanpy's DPT), optionally checked against expression."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from .._constants import OBS_PSEUDOTIME, OBSM_MAD
from .._docs import doc_obs_key_copy, doc_params
from .._logging import added, logger
from .._settings import settings
from ._inputs import get_expression, get_obs, get_rep

_REP = "X_rep"  # the representation inside the private AnnData scanpy works on


def _dpt(
    X: np.ndarray, *, root: int | None, n_neighbors: int, n_dcs: int, seed: int, pick_root=None
) -> tuple[np.ndarray, np.ndarray, int]:
    """DPT of the rows of ``X`` on a private AnnData (the user's neighbours stay intact).

    Returns pseudotime (NaN for cells the root cannot reach), the diffusion
    components and the root index. ``pick_root(diffmap)`` chooses the root when
    ``root`` is None.
    """
    import scanpy as sc  # imported here: it adds seconds to `import madspatial`

    tmp = AnnData(obs=pd.DataFrame(index=np.arange(len(X)).astype(str)))
    tmp.obsm[_REP] = X
    # the Gaussian kernel of the original DPT (and no numba compilation of the umap kernel)
    sc.pp.neighbors(tmp, use_rep=_REP, n_neighbors=n_neighbors, method="gauss", random_state=seed)
    n_comps = min(n_dcs + 1, len(X) - 2)
    sc.tl.diffmap(tmp, n_comps=n_comps, random_state=seed)
    dm = tmp.obsm["X_diffmap"]
    tmp.uns["iroot"] = int(pick_root(dm) if root is None else root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "root cell" notices from scanpy
        sc.tl.dpt(tmp, n_dcs=min(n_dcs, n_comps))
    pt = tmp.obs["dpt_pseudotime"].to_numpy(dtype=np.float64)
    pt[~np.isfinite(pt)] = np.nan  # unreachable cells (another connected component)
    return pt, dm, int(tmp.uns["iroot"])


def _extreme_dc1(dm: np.ndarray, candidates: np.ndarray | None = None) -> int:
    """Return the cell at the end of the first non-trivial diffusion component.

    Column 0 of scanpy's diffmap is the stationary (uninformative) one, so DC1 is
    column 1. Among ``candidates`` (default all cells) take the one furthest from the
    median of all cells along DC1.
    """
    dc1 = dm[:, 1]
    cand = np.arange(len(dc1)) if candidates is None else candidates
    return int(cand[np.argmax(np.abs(dc1[cand] - np.median(dc1)))])


@doc_params(doc_obs_key_copy=doc_obs_key_copy)
def pseudotime(
    adata: AnnData,
    *,
    use_rep: str = OBSM_MAD,
    root: int | str | None = None,
    root_group: str | None = None,
    groupby: str | None = None,
    n_neighbors: int = 15,
    n_dcs: int = 10,
    expression: str | None = None,
    reference: str | None = None,
    seed: int | None = None,
    key_added: str = OBS_PSEUDOTIME,
    copy: bool = False,
) -> AnnData | None:
    """Diffusion pseudotime (DPT) of every cell from a root, on an embedding.

    A kNN graph on ``obsm[use_rep]`` (scanpy's neighbours, built on a private copy so
    ``.obsp``/``.uns["neighbors"]`` of ``adata`` are not overwritten) feeds scanpy's
    diffusion map and DPT. The root is, in order of precedence:

    - ``root``: a cell, by integer position or obs name;
    - ``root_group`` (with ``groupby``): the cell of that group lying at the extreme
      end of the first diffusion component (DC1), i.e. the group's cell furthest from
      the bulk of the data along the main trajectory axis;
    - automatic: the cell at the extreme end of DC1. Which end of a trajectory that
      is is arbitrary; pass ``root`` or ``root_group`` to fix the direction.

    Parameters
    ----------
    adata
        Annotated data matrix with an embedding in ``.obsm``.
    use_rep
        Key of the embedding in ``.obsm``.
    root
        Root cell (integer position or obs name).
    root_group
        Group containing the root (needs ``groupby``).
    groupby
        ``.obs`` column that ``root_group`` refers to.
    n_neighbors
        Neighbours of the kNN graph.
    n_dcs
        Diffusion components used by DPT.
    expression
        Also compute DPT on expression (``"X"`` or a layer name; log-normalized when it
        looks like counts, then reduced to 50 principal components) from the same root
        and report the Spearman correlation of the two pseudotimes.
    reference
        ``.obs`` column of a known ordering (e.g. a ground-truth trajectory; NaN cells
        ignored) to correlate with (Spearman).
    seed
        Seed of the neighbour search and diffusion map (default ``mad.settings.seed``).
    {doc_obs_key_copy}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes

    - ``.obs[key_added]``: pseudotime in [0, 1] (NaN for cells not connected to the root);
    - ``.uns[key_added]``: ``{"root": obs name, "root_index": int, "params": {...}}`` plus
      ``"expression": {"spearman", "pvalue", "n_cells"}`` and ``"reference": {...}``
      when requested, and ``"expression_pseudotime"`` (the expression-based values).
    """
    adata = adata.copy() if copy else adata
    seed = settings.seed if seed is None else seed
    X = get_rep(adata, use_rep)
    n = adata.n_obs
    if n < 10:
        raise ValueError(f"pseudotime needs at least 10 cells, got {n}.")
    root_idx = None
    pick = _extreme_dc1
    if root is not None:
        root_idx = _root_index(adata, root)
    elif root_group is not None:
        if groupby is None:
            raise ValueError("root_group needs groupby= (the .obs column the group is in).")
        groups = get_obs(adata, groupby).astype(str)
        members = np.flatnonzero(groups.to_numpy() == str(root_group))
        if len(members) == 0:
            raise KeyError(
                f"root_group={root_group!r} is not a value of adata.obs[{groupby!r}] "
                f"(values: {sorted(groups.unique())[:20]})."
            )
        pick = lambda dm: _extreme_dc1(dm, members)  # noqa: E731
    elif groupby is not None:
        raise ValueError("groupby is only used with root_group=; pass both or neither.")
    n_neighbors = min(n_neighbors, n - 1)
    pt, _, root_idx = _dpt(
        X, root=root_idx, n_neighbors=n_neighbors, n_dcs=n_dcs, seed=seed, pick_root=pick
    )
    if np.isnan(pt).any():
        logger.warning(
            "    %d cell(s) are not connected to the root in the kNN graph: pseudotime NaN; "
            "increase n_neighbors to connect them",
            int(np.isnan(pt).sum()),
        )
    info: dict = {
        "root": str(adata.obs_names[root_idx]),
        "root_index": root_idx,
        "params": {"use_rep": use_rep, "n_neighbors": n_neighbors, "n_dcs": n_dcs, "seed": seed},
    }
    if expression is not None:
        Y, _, _ = get_expression(adata, layer=None if expression == "X" else expression)
        Y = Y[:, Y.std(axis=0) > 0]
        n_pcs = min(50, Y.shape[1], n - 1)
        Yp = (
            PCA(n_components=n_pcs, random_state=seed).fit_transform(Y) if n_pcs < Y.shape[1] else Y
        )
        pt_expr, _, _ = _dpt(
            Yp.astype(np.float32), root=root_idx, n_neighbors=n_neighbors, n_dcs=n_dcs, seed=seed
        )
        info["expression"] = _spearman(pt, pt_expr)
        info["expression_pseudotime"] = pt_expr
    if reference is not None:
        ref = pd.to_numeric(get_obs(adata, reference), errors="coerce").to_numpy(dtype=float)
        info["reference"] = {**_spearman(pt, ref), "key": reference}
    adata.obs[key_added] = pt
    adata.uns[key_added] = info
    added(key_added, "obs")
    added(key_added, "uns")
    return adata if copy else None


def _root_index(adata: AnnData, root) -> int:
    if isinstance(root, int | np.integer):
        if not -adata.n_obs <= root < adata.n_obs:
            raise IndexError(f"root={root} is out of range for {adata.n_obs} cells.")
        return int(root) % adata.n_obs
    pos = adata.obs_names.get_indexer([str(root)])[0]
    if pos < 0:
        raise KeyError(
            f"root={root!r} is not in adata.obs_names (e.g. {adata.obs_names[:3].tolist()})."
        )
    return int(pos)


def _spearman(a: np.ndarray, b: np.ndarray) -> dict:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return {"spearman": float("nan"), "pvalue": float("nan"), "n_cells": int(ok.sum())}
    r, p = spearmanr(a[ok], b[ok])
    return {"spearman": float(r), "pvalue": float(p), "n_cells": int(ok.sum())}
