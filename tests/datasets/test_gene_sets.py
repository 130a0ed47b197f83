"""The bundled gene sets of the synthetic tissue."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import madspatial as mad
from madspatial.datasets._gene_sets import gene_set_descriptions, panel_genes


def test_gmt_is_package_data_and_parses():
    resource = files("madspatial.datasets").joinpath("data", "synthetic_programs.gmt")
    assert resource.is_file()
    path = mad.datasets.synthetic_gene_sets_path()
    assert isinstance(path, Path) and path.is_file() and path.suffix == ".gmt"
    lines = [ln.split("\t") for ln in path.read_text().splitlines() if ln.strip()]
    sets = mad.datasets.synthetic_gene_sets()
    assert [ln[0] for ln in lines] == list(sets)
    assert all(len(ln) >= 3 + 5 for ln in lines)  # name, description, >= 6 genes
    assert sets == {ln[0]: ln[2:] for ln in lines}


def test_sets_are_disjoint_real_symbols_and_in_the_panel():
    sets = mad.datasets.synthetic_gene_sets()
    genes = [g for gs in sets.values() for g in gs]
    assert len(genes) == len(set(genes))
    panel = panel_genes()
    assert set(genes) <= set(panel) and len(panel) >= 100
    assert all(g.isupper() or any(c.isdigit() for c in g) for g in genes)
    assert {"MKI67", "FAP", "ACTA2", "CD3E", "MS4A1", "SPP1"} <= set(genes)


def test_every_set_says_what_it_marks():
    desc = gene_set_descriptions()
    assert set(desc) == set(mad.datasets.synthetic_gene_sets())
    for subtype in mad.datasets.CELL_TYPES:
        assert any(subtype in d for d in desc.values()), f"no set describes {subtype}"
    assert "trajectory" in desc["MYOFIBROBLAST_ACTIVATION"]


def test_callers_get_fresh_copies():
    sets = mad.datasets.synthetic_gene_sets()
    sets["CAF"].append("NOT_A_GENE")
    del sets["TAM"]
    again = mad.datasets.synthetic_gene_sets()
    assert "NOT_A_GENE" not in again["CAF"] and "TAM" in again
