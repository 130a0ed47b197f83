"""Canonical correlation between an embedding and expression (the paper's Fig. 5d-e)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from .._constants import OBSM_CCA_EXPRESSION_SUFFIX, OBSM_CCA_SUFFIX, OBSM_MAD, UNS_CCA
from .._docs import doc_copy, doc_params
from .._logging import added, logger
from .._settings import settings
from ._inputs import get_expression, get_obs, get_rep


def _column_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching columns of ``a`` and ``b``."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / np.where(den > 0, den, 1.0), np.nan)


def _reduce(train: np.ndarray, full: np.ndarray, n_pcs: int, seed: int) -> np.ndarray:
    """Standardize and PCA-reduce ``full`` with statistics fitted on ``train``."""
    scaler = StandardScaler().fit(train)
    n = min(n_pcs, train.shape[1], train.shape[0] - 1)
    pca = PCA(n_components=n, random_state=seed).fit(scaler.transform(train))
    return pca.transform(scaler.transform(full))


@doc_params(doc_copy=doc_copy)
def cca(
    adata: AnnData,
    *,
    use_rep: str = OBSM_MAD,
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    normalize: str | None = "auto",
    groupby: str | None = None,
    n_components: int = 10,
    n_pcs: int = 50,
    test_size: float = 0.3,
    max_iter: int = 500,
    seed: int | None = None,
    key_added: str = UNS_CCA,
    copy: bool = False,
) -> AnnData | None:
    """Canonical correlation analysis between an embedding and measured expression.

    CCA finds paired directions of the two spaces whose projections are maximally
    correlated; high canonical correlations mean the image embedding and the
    transcriptome share major axes of variation. Both sides are standardized and
    reduced to at most ``n_pcs`` principal components first: CCA on hundreds of raw
    dimensions with thousands of cells overfits (correlations near 1 for unrelated
    data). For the same reason the correlations are reported on held-out cells
    (``test_size``); the in-sample ones are kept too.

    With ``groupby``, every group's cells are averaged in the canonical space and
    the correlation of the two sides' group centroids is reported per component:
    agreement at the level of cell types rather than single cells. (A CCA fitted on
    the centroids themselves would be degenerate: with fewer groups than dimensions
    any two spaces correlate perfectly.)

    Parameters
    ----------
    adata
        Annotated data matrix with an embedding and expression.
    use_rep
        Key of the embedding in ``.obsm``.
    layer
        Layer holding expression (default ``.X``).
    genes
        Genes to use (default all).
    normalize
        Expression transform: ``"auto"`` (normalize + log1p when the values look like
        counts), ``"log1p"`` (always) or ``None``.
    groupby
        Optional ``.obs`` column for centroid-level correlations.
    n_components
        Canonical component pairs (capped by the reduced dimensions).
    n_pcs
        Principal components kept per side before CCA.
    test_size
        Share of cells held out to measure the correlations (0: report in-sample ones).
    max_iter
        Iteration cap of scikit-learn's CCA.
    seed
        Seed of the held-out split and PCA (default ``mad.settings.seed``).
    key_added
        ``.uns`` key of the results.
    {doc_copy}

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes

    - ``.obsm[use_rep + "_cca"]``: embedding-side canonical variates (cells x components);
    - ``.obsm[use_rep + "_cca_expression"]``: expression-side canonical variates;
    - ``.uns[key_added]``: ``"correlations"`` (per component, held-out cells),
      ``"correlations_train"``, ``"params"``, and with ``groupby`` ``"groups"``:
      ``{"names", "correlations", "embedding", "expression"}`` (centroids in the
      canonical space, groups x components).
    """
    adata = adata.copy() if copy else adata
    seed = settings.seed if seed is None else seed
    X = get_rep(adata, use_rep).astype(np.float64)
    Y, _, applied = get_expression(adata, layer=layer, genes=genes, normalize=normalize)
    Y = Y.astype(np.float64)
    varying = Y.std(axis=0) > 0
    if varying.sum() < 1:
        raise ValueError("all genes are constant across cells; CCA needs varying expression.")
    Y = Y[:, varying]
    if not 0 <= test_size < 1:
        raise ValueError(f"test_size must be in [0, 1), got {test_size}.")
    rng = np.random.default_rng(seed)
    n = adata.n_obs
    n_test = round(test_size * n)
    perm = rng.permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    if len(train) < 3:
        raise ValueError(f"only {len(train)} training cells; CCA needs more cells.")
    Xr = _reduce(X[train], X, n_pcs, seed)
    Yr = _reduce(Y[train], Y, n_pcs, seed)
    k = min(n_components, Xr.shape[1], Yr.shape[1])
    if k < n_components:
        logger.info("    cca: using %d components (limited by the reduced dimensions)", k)
    model = CCA(n_components=k, max_iter=max_iter).fit(Xr[train], Yr[train])
    xs, ys = model.transform(Xr, Yr)
    corr_train = _column_corr(xs[train], ys[train])
    corr = _column_corr(xs[test], ys[test]) if len(test) >= 3 else corr_train
    result: dict = {
        "correlations": corr,
        "correlations_train": corr_train,
        "params": {
            "use_rep": use_rep,
            "layer": layer or "X",
            "normalize": applied,
            "n_genes": int(varying.sum()),
            "n_components": k,
            "n_pcs": n_pcs,
            "test_size": test_size,
            "n_test": len(test),
            "seed": seed,
            "groupby": groupby or "none",
        },
    }
    if groupby is not None:
        groups = get_obs(adata, groupby).astype(str).to_numpy()
        names = sorted(set(groups))
        if len(names) < 3:
            raise ValueError(
                f"groupby={groupby!r} has {len(names)} group(s); centroid correlations need 3+."
            )
        cx = np.stack([xs[groups == g].mean(axis=0) for g in names])
        cy = np.stack([ys[groups == g].mean(axis=0) for g in names])
        result["groups"] = {
            "names": np.asarray(names, dtype=object),
            "correlations": _column_corr(cx, cy),
            "embedding": cx,
            "expression": cy,
        }
    emb_key = f"{use_rep}{OBSM_CCA_SUFFIX}"
    expr_key = f"{use_rep}{OBSM_CCA_EXPRESSION_SUFFIX}"
    adata.obsm[emb_key] = xs.astype(np.float32)
    adata.obsm[expr_key] = ys.astype(np.float32)
    adata.uns[key_added] = result
    added(emb_key, "obsm")
    added(expr_key, "obsm")
    added(key_added, "uns")
    logger.info("    cca: first canonical correlation %.3f (held-out)", corr[0])
    return adata if copy else None
