import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from madspatial.tl._enrich import enrich

PANEL = [f"G{i}" for i in range(100)]
SETS = {
    "planted": [f"G{i}" for i in range(10)] + ["NOT_IN_PANEL"],
    "decoy": [f"G{i}" for i in range(50, 70)],
    "mixed": ["G0", "G60", "G61", "G62", "G63"],
}


def _de(up=range(8)):
    fdr = np.ones(100)
    fdr[list(up)] = 1e-4
    lfc = np.where(fdr < 1, 2.0, 0.1)
    return pd.DataFrame({"gene": PANEL, "log2FC": lfc, "pvalue": fdr, "fdr": fdr})


def test_enrichment_finds_a_planted_set_with_the_panel_background():
    res = enrich(_de(), gene_sets=SETS)
    assert res.iloc[0]["term"] == "planted"
    top = res.set_index("term")
    assert top.loc["planted", "overlap"] == 8 and top.loc["planted", "set_size"] == 10
    # hypergeometric by hand: 8 of the 8 query genes in a 10-gene set of a 100-gene panel
    assert top.loc["planted", "pvalue"] == pytest.approx(hypergeom.sf(7, 100, 10, 8), rel=1e-6)
    assert top.loc["planted", "fdr"] < 1e-6
    assert "decoy" not in top.index or top.loc["decoy", "fdr"] > 0.5
    assert top.loc["planted", "genes"] == ";".join(sorted(f"G{i}" for i in range(8)))
    assert res.attrs["n_background"] == 100 and res.attrs["n_query"] == 8


def test_enrichment_from_a_gmt_file_a_gene_list_and_down_genes(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text("".join(f"{t}\tna\t" + "\t".join(g) + "\n" for t, g in SETS.items()))
    res = enrich([f"G{i}" for i in range(8)], gene_sets=gmt, background=PANEL)
    assert res.iloc[0]["term"] == "planted"
    de = _de()
    de.loc[:, "log2FC"] *= -1
    assert enrich(de, gene_sets=SETS, direction="down").iloc[0]["term"] == "planted"
    with pytest.warns(UserWarning, match="no genes pass"):
        empty = enrich(de, gene_sets=SETS, direction="up")
    assert empty.empty and list(empty.columns[:2]) == ["term", "overlap"]


def test_enrichment_bad_input():
    with pytest.raises(FileNotFoundError, match="need the network"):
        enrich(_de(), gene_sets="GO_Biological_Process_2023")
    mouse = {"x": ["Cd4", "Cd8a"], "y": ["Ptprc"]}
    with pytest.raises(ValueError, match="gene names do not match"):
        enrich(_de(), gene_sets=mouse)
    with pytest.raises(ValueError, match="pass background="):
        enrich(["G1"], gene_sets=SETS)
    with pytest.raises(KeyError, match="no 'fdr' column"):
        enrich(pd.DataFrame({"gene": ["G1"], "log2FC": [1.0]}), gene_sets=SETS)
