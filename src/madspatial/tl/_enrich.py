"""Over-representation of gene sets among differentially expressed genes (offline)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._logging import logger

#: Columns of :func:`enrich`'s table and their dtypes (an empty table has them too).
RESULT_DTYPES = {
    "term": object,
    "overlap": np.int64,
    "set_size": np.int64,
    "pvalue": np.float64,
    "fdr": np.float64,
    "odds_ratio": np.float64,
    "combined_score": np.float64,
    "genes": object,
}
RESULT_COLUMNS = list(RESULT_DTYPES)


def _empty_result(meta: dict) -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in RESULT_DTYPES.items()})
    out.attrs.update(meta)
    return out


def _load_gene_sets(gene_sets) -> dict[str, list[str]]:
    if isinstance(gene_sets, Mapping):
        out = {str(k): [str(g) for g in v] for k, v in gene_sets.items()}
    elif isinstance(gene_sets, str | Path):
        path = Path(gene_sets).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"gene_sets={str(gene_sets)!r} is not a local file. Enrichr library names "
                "(e.g. 'GO_Biological_Process_2023') need the network, which madspatial never "
                "uses. Pass a dict {term: [genes]} or the path of a local .gmt file (download "
                "one once from https://maayanlab.cloud/Enrichr/#libraries or MSigDB)."
            )
        from gseapy import read_gmt

        out = read_gmt(str(path))
    else:
        raise TypeError(
            f"gene_sets must be a dict {{term: genes}} or a .gmt path, got {type(gene_sets).__name__}."
        )
    if not out:
        raise ValueError("gene_sets holds no sets.")
    return out


def _de_genes(de, *, fdr: float, direction: str, min_log2fc: float) -> tuple[list[str], list[str]]:
    """(query genes, genes tested in ``de``) from a DE table or a plain gene list."""
    if isinstance(de, pd.DataFrame):
        genes = (de["gene"] if "gene" in de.columns else de.index.to_series()).astype(str)
        for col in ("fdr", "log2FC"):
            if col not in de.columns:
                raise KeyError(
                    f"the DE table has no {col!r} column (columns: {list(de.columns)}); pass "
                    "the output of mad.tl.differential_expression or a list of genes."
                )
        lfc = de["log2FC"].to_numpy(dtype=float)
        sig = de["fdr"].to_numpy(dtype=float) <= fdr
        if direction == "up":
            sig &= lfc > 0
        elif direction == "down":
            sig &= lfc < 0
        elif direction != "both":
            raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}.")
        sig &= np.abs(lfc) >= min_log2fc
        return genes[sig].tolist(), genes.tolist()
    if isinstance(de, str):
        raise TypeError("de must be a DE DataFrame or a list of genes, not a single string.")
    return [str(g) for g in de], []


def enrich(
    de: pd.DataFrame | Sequence[str],
    *,
    gene_sets: Mapping[str, Sequence[str]] | str | Path,
    background: Sequence[str] | AnnData | None = None,
    fdr: float = 0.05,
    direction: Literal["up", "down", "both"] = "up",
    min_log2fc: float = 0.0,
    min_size: int = 2,
) -> pd.DataFrame:
    """Gene-set over-representation (hypergeometric test) of differentially expressed genes.

    The query is the genes of ``de`` with FDR at most ``fdr`` (and the chosen sign of
    log2FC); the background is the evaluated panel, as in the paper: by default all
    genes of the DE table (i.e. the genes that could have come out). Gene sets are
    restricted to the background, and sets with fewer than ``min_size`` background
    genes are dropped, so the test only counts genes that were measurable. Runs
    :func:`gseapy.enrich` offline; p-values are BH-adjusted across the tested sets.

    Parameters
    ----------
    de
        Output of :func:`differential_expression` (columns ``gene``, ``log2FC``,
        ``fdr``), or a list of query genes (then ``background`` is required).
    gene_sets
        ``{term: [genes]}`` or the path of a local ``.gmt`` file (an Enrichr library
        name is rejected: it would need the network).
    background
        Genes that could have been selected: a list or an AnnData (its ``var_names``).
        Default: the genes of ``de``.
    fdr
        FDR threshold selecting the query genes from ``de``.
    direction
        Which DE genes form the query: ``"up"`` (log2FC > 0), ``"down"`` or ``"both"``.
    min_log2fc
        Minimum absolute log2 fold change of query genes.
    min_size
        Smallest number of background genes a set needs to be tested.

    Returns
    -------
    DataFrame, one row per tested set sorted by p-value, with columns ``term``,
    ``overlap`` (query genes in the set), ``set_size`` (set genes in the background),
    ``pvalue``, ``fdr``, ``odds_ratio``, ``combined_score`` and ``genes`` (the
    overlapping genes, ``;``-separated). ``attrs`` records the query and background
    sizes. Empty (with these columns and dtypes) when no gene passes the thresholds
    (a warning) or no significant gene is in any tested set (logged).
    """
    sets = _load_gene_sets(gene_sets)
    query, tested = _de_genes(de, fdr=fdr, direction=direction, min_log2fc=min_log2fc)
    if isinstance(background, AnnData):
        bg = background.var_names.astype(str).tolist()
    elif background is not None:
        bg = [str(g) for g in background]
    elif tested:
        bg = tested
    else:
        raise ValueError(
            "pass background= the evaluated gene panel (e.g. adata.var_names) when de is a "
            "list of genes."
        )
    bg_set = set(bg)
    outside = [g for g in query if g not in bg_set]
    if outside:
        logger.warning(
            "    %d query gene(s) are not in the background and are ignored", len(outside)
        )
        query = [g for g in query if g in bg_set]
    restricted = {t: sorted(set(gs) & bg_set) for t, gs in sets.items()}
    if not any(restricted.values()):
        example_set = next(iter(sets.values()))[:5]
        raise ValueError(
            f"none of the {len(sets)} gene sets shares a gene with the {len(bg_set)}-gene "
            f"panel: gene names do not match (sets: {example_set}, panel: {bg[:5]}). Use the "
            "same identifiers and case on both sides (e.g. human symbols 'CD4', not 'Cd4' or "
            "Ensembl IDs)."
        )
    restricted = {t: gs for t, gs in restricted.items() if len(gs) >= min_size}
    if not restricted:
        raise ValueError(
            f"no gene set has at least min_size={min_size} genes of the panel; lower min_size."
        )
    meta = {"n_query": len(query), "n_background": len(bg_set), "n_sets": len(restricted)}
    if not query:
        warnings.warn(f"no genes pass fdr <= {fdr} ({direction}); nothing to enrich.", stacklevel=2)
        return _empty_result(meta)
    in_sets = set().union(*restricted.values())
    if not in_sets & set(query):
        # gseapy returns None here (a TypeError further down before): say it, keep the table
        logger.warning(
            "    none of the %d significant gene(s) (e.g. %s) is in any of the %d tested gene "
            "sets: no enrichment to report (empty table)",
            len(query),
            query[:5],
            len(restricted),
        )
        return _empty_result(meta)
    import gseapy

    res = gseapy.enrich(
        gene_list=query,
        gene_sets=restricted,
        background=sorted(bg_set),
        outdir=None,
        no_plot=True,
        cutoff=1.0,
        verbose=False,
    ).res2d
    if res is None or len(res) == 0:  # gseapy found no set with an overlap
        logger.warning("    no gene set overlaps the %d query gene(s): empty table", len(query))
        return _empty_result(meta)
    overlap = res["Overlap"].astype(str).str.split("/", expand=True).astype(int)
    out = pd.DataFrame(
        {
            "term": res["Term"].astype(str),
            "overlap": overlap[0],
            "set_size": overlap[1],
            "pvalue": res["P-value"].astype(float),
            "fdr": res["Adjusted P-value"].astype(float),
            "odds_ratio": res["Odds Ratio"].astype(float),
            "combined_score": res["Combined Score"].astype(float),
            "genes": [";".join(sorted(str(g).split(";"))) for g in res["Genes"]],
        }
    )
    out = out.astype(RESULT_DTYPES)
    out = out.sort_values(["pvalue", "term"], kind="stable").reset_index(drop=True)
    out.attrs.update(meta)
    return out
