"""Differential expression between two cell populations, on measured or predicted expression."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._constants import LAYER_PRED, OBS_IN_SAMPLE_SUFFIX, UNS_DE
from .._logging import added, logger
from ._inputs import get_expression, get_obs

_GROUP = "group"  # obs column of the private AnnData scanpy ranks on


def differential_expression(
    adata: AnnData,
    *,
    groupby: str,
    group: str,
    reference: str = "rest",
    layer: str | None = None,
    genes: Sequence[str] | None = None,
    normalize: Literal["auto", "log1p"] | None = "auto",
    method: Literal["wilcoxon", "t-test", "t-test_overestim_var"] = "wilcoxon",
    key_added: str = UNS_DE,
    inplace: bool = True,
) -> pd.DataFrame:
    """Differential expression of one group against a reference group or all other cells.

    Runs scanpy's ``rank_genes_groups`` on a private copy holding log-normalized
    expression, so ``adata.uns["rank_genes_groups"]`` is not touched. Works alike on
    measured expression (``.X`` or a counts layer: normalized and log1p-transformed
    when the values look like counts) and on decoder predictions
    (``layer="mad_pred"``, already log-normalized; genes the decoder did not predict,
    NaN in that layer, are left out). P-values are corrected with Benjamini-Hochberg.
    The log2 fold change is scanpy's: ``log2`` of the ratio of mean
    ``expm1``-transformed values, which assumes log1p-normalized input; negative
    values (a decoder's undershoot, scaled data) make it undefined or flip its sign,
    so they are refused.

    On predictions, the cells the decoder trained on (``.obs[layer + "_in_sample"]``,
    written by :func:`predict`) give optimistic statistics: their number is logged and
    recorded in ``params["predictions"]``/``params["n_in_sample"]``, with a warning when
    any tested cell is in-sample (fit the decoder with ``cross_fit=k`` to avoid it).

    Parameters
    ----------
    adata
        Annotated data matrix with expression and a grouping.
    groupby
        ``.obs`` column defining the populations (cell type, Louvain cluster, ...).
    group
        The population tested.
    reference
        ``"rest"`` (all other cells) or another value of ``groupby``.
    layer
        Layer holding expression (default ``.X``); ``"mad_pred"`` for predicted expression.
    genes
        Restrict the test to these genes (default all).
    normalize
        ``"auto"``, ``"log1p"`` or ``None`` (see :func:`fit_decoder`).
    method
        Test: ``"wilcoxon"`` (rank-sum) or a t-test variant.
    key_added
        ``.uns`` key under which results are stored.
    inplace
        Store the result in ``adata.uns``; with ``False`` it is only returned.

    Returns
    -------
    DataFrame, one row per gene sorted by test score (most up-regulated first), with
    columns ``gene``, ``log2FC``, ``pvalue``, ``fdr`` (BH), ``score``, ``mean_group``,
    ``mean_reference`` (means of the log-normalized values), ``group`` and
    ``reference``; ``attrs`` records ``predictions`` and ``n_in_sample`` (see
    above). With ``inplace=True`` it is also stored as
    ``.uns[key_added]["<group>_vs_<reference>"] = {"results": DataFrame, "params": {...}}``.
    """
    import scanpy as sc  # imported here: it adds seconds to `import madspatial`

    labels = get_obs(adata, groupby).astype(str).to_numpy()
    group, reference = str(group), str(reference)
    values = sorted(set(labels))
    for name, val in (("group", group), ("reference", reference)):
        if val not in values and not (name == "reference" and val == "rest"):
            raise KeyError(
                f"{name}={val!r} is not a value of adata.obs[{groupby!r}] (values: {values[:30]})."
            )
    if group == reference:
        raise ValueError(f"group and reference are both {group!r}; compare two different groups.")
    in_group = labels == group
    in_ref = ~in_group if reference == "rest" else labels == reference
    for name, mask in (("group", in_group), ("reference", in_ref)):
        if mask.sum() < 2:
            raise ValueError(
                f"the {name} has {int(mask.sum())} cell(s); a test needs at least 2 per side."
            )
    X, names, applied = get_expression(adata, layer=layer, genes=genes, normalize=normalize)
    missing = np.isnan(X)
    if missing.any():
        partial = missing.any(axis=0) & ~missing.all(axis=0)
        if partial.any():
            raise ValueError(
                f"{int(partial.sum())} gene(s) have NaN in some cells only (e.g. "
                f"{np.asarray(names)[partial][:5].tolist()}); fill or drop those cells first."
            )
        keep = ~missing.all(axis=0)
        logger.info("    leaving out %d gene(s) without values (not predicted)", (~keep).sum())
        X, names = X[:, keep], [n for n, k in zip(names, keep) if k]
    if not names:
        raise ValueError("no genes with values to test.")
    _refuse_negative(X, names, layer)
    cells = in_group | in_ref
    provenance, n_in_sample = _prediction_provenance(adata, layer, cells)
    tmp = AnnData(
        X[cells],
        obs=pd.DataFrame(
            {_GROUP: pd.Categorical(np.where(in_group[cells], group, reference))},
            index=adata.obs_names[cells],
        ),
        var=pd.DataFrame(index=pd.Index(names).astype(str)),
    )
    tmp.uns["log1p"] = {"base": None}  # tells scanpy the values are log1p-transformed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant genes: NaN statistics
        sc.tl.rank_genes_groups(
            tmp,
            _GROUP,
            groups=[group],
            reference=reference,
            method=method,
            use_raw=False,
            n_genes=tmp.n_vars,
            corr_method="benjamini-hochberg",
        )
    raw = sc.get.rank_genes_groups_df(tmp, group=group)
    Xg, Xr = tmp.X[tmp.obs[_GROUP].to_numpy() == group], tmp.X[tmp.obs[_GROUP].to_numpy() != group]
    pos = pd.Index(names).get_indexer(raw["names"].astype(str))
    df = pd.DataFrame(
        {
            "gene": raw["names"].astype(str).to_numpy(),
            "log2FC": raw["logfoldchanges"].to_numpy(dtype=float),
            "pvalue": raw["pvals"].to_numpy(dtype=float),
            "fdr": raw["pvals_adj"].to_numpy(dtype=float),
            "score": raw["scores"].to_numpy(dtype=float),
            "mean_group": Xg.mean(axis=0)[pos].astype(float),
            "mean_reference": Xr.mean(axis=0)[pos].astype(float),
        }
    )
    df["group"] = group
    df["reference"] = reference
    df.attrs.update({"predictions": provenance, "n_in_sample": n_in_sample})
    if inplace:
        store = adata.uns.get(key_added)
        store = dict(store) if isinstance(store, dict) else {}
        store[f"{group}_vs_{reference}"] = {
            "results": df,
            "params": {
                "groupby": groupby,
                "group": group,
                "reference": reference,
                "layer": layer or "X",
                "normalize": applied,
                "method": method,
                "n_group": int(in_group.sum()),
                "n_reference": int(in_ref.sum()),
                "predictions": provenance,
                "n_in_sample": n_in_sample,
            },
        }
        adata.uns[key_added] = store
        added(key_added, "uns")
    return df


def _refuse_negative(X: np.ndarray, names: list[str], layer: str | None) -> None:
    """Warn about negative values, for which scanpy's log2FC is not defined.

    Scanpy's log2FC is log2(mean expm1(group) / mean expm1(reference)): defined for
    log1p-scale values >= 0 only; below 0 a lower gene can come out up-regulated.
    """
    neg = (X < 0).any(axis=0)  # NaN compares False: genes without values are not flagged
    if not neg.any():
        return
    where = "adata.X" if layer is None or layer == "X" else f"adata.layers[{layer!r}]"
    bad = np.asarray(names)[neg]
    raise ValueError(
        f"{where} holds negative values in {int(neg.sum())} gene(s) (e.g. {bad[:5].tolist()}, "
        f"minimum {float(np.nanmin(X)):.3g}). The log2 fold change is computed from "
        "expm1 of log1p-normalized expression, which is undefined below 0 and can flip "
        "its sign. Use log-normalized expression (>= 0); for decoder predictions, predict "
        "again with this madspatial (expression predictions are clipped at 0) or clip "
        f"them: adata.layers[...] = np.clip(adata.layers[...], 0, None)."
    )


def _prediction_provenance(adata: AnnData, layer: str | None, cells: np.ndarray):
    """("measured" | "out_of_sample" | "in_sample" | "unknown", in-sample cells tested)."""
    flag_key = None if layer is None or layer == "X" else f"{layer}{OBS_IN_SAMPLE_SUFFIX}"
    if flag_key is None or flag_key not in adata.obs.columns:
        if layer == LAYER_PRED:
            logger.info(
                "    layer %r has no in-sample marks (obs[%r]): cannot tell which cells the "
                "decoder trained on; mad.tl.predict writes them",
                layer,
                f"{layer}{OBS_IN_SAMPLE_SUFFIX}",
            )
            return "unknown", -1
        return "measured", 0
    flag = adata.obs[flag_key].to_numpy(dtype=bool)[cells]
    n_in = int(flag.sum())
    if n_in == 0:
        logger.info(
            "    testing out-of-sample predictions (%d cells, obs[%r])", len(flag), flag_key
        )
        return "out_of_sample", 0
    warnings.warn(
        f"{n_in} of {len(flag)} tested cells have in-sample predictions in layer {layer!r} "
        f"(the decoder trained on them, obs[{flag_key!r}]): fold changes and p-values are "
        "optimistic. Fit the decoder with mad.tl.fit_decoder(..., cross_fit=5) and predict "
        "again for out-of-fold predictions.",
        UserWarning,
        stacklevel=3,
    )
    return "in_sample", n_in
