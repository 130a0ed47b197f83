"""tl.enrich returns a well-formed table, never a TypeError, when nothing overlaps."""

import logging

import numpy as np
import pandas as pd
import pytest

from madspatial.tl._enrich import RESULT_COLUMNS, enrich

PANEL = [f"G{i}" for i in range(100)]
SETS = {"a": [f"G{i}" for i in range(10)], "b": [f"G{i}" for i in range(20, 30)]}


def _de(sig):
    fdr = np.ones(100)
    fdr[list(sig)] = 1e-4
    return pd.DataFrame(
        {"gene": PANEL, "log2FC": np.where(fdr < 1, 2.0, 0.1), "pvalue": fdr, "fdr": fdr}
    )


def test_significant_genes_outside_every_set_give_an_empty_table(caplog):
    log = logging.getLogger("madspatial")
    log.addHandler(caplog.handler)
    try:
        # before: TypeError: 'NoneType' object is not subscriptable
        res = enrich(_de(range(80, 85)), gene_sets=SETS)
    finally:
        log.removeHandler(caplog.handler)
    full = enrich(_de(range(5)), gene_sets=SETS)
    assert res.empty and list(res.columns) == RESULT_COLUMNS == list(full.columns)
    assert res.dtypes.to_dict() == full.dtypes.to_dict()
    assert res.attrs == {"n_query": 5, "n_background": 100, "n_sets": 2}
    assert "none of the 5 significant gene(s) (e.g. ['G80', 'G81', 'G82', 'G83', 'G84'])" in (
        caplog.text
    )
    assert "empty table" in caplog.text


def test_empty_table_without_significant_genes_has_the_same_dtypes():
    full = enrich(_de(range(5)), gene_sets=SETS)
    with pytest.warns(UserWarning, match="no genes pass") as rec:
        empty = enrich(_de([]), gene_sets=SETS)
    assert rec[0].filename == __file__  # the warning points at the caller's line
    assert empty.dtypes.to_dict() == full.dtypes.to_dict()
    assert full["overlap"].dtype == np.int64 and full["pvalue"].dtype == np.float64
