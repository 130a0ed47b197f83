"""The gene programs planted in the synthetic tissue, as a bundled ``.gmt`` file.

The ``.gmt`` is the single source of truth: the generator reads its programs
from it, so the gene sets an enrichment test looks up are exactly the genes the
tissue was built with.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

_GMT_NAME = "synthetic_programs.gmt"

#: Expressed by every cell at a high, program-independent level.
HOUSEKEEPING_GENES: tuple[str, ...] = (
    "ACTB",
    "GAPDH",
    "B2M",
    "MALAT1",
    "EEF1A1",
    "RPLP0",
    "TPT1",
    "UBC",
    "PPIA",
    "FTL",
    "FTH1",
    "TMSB4X",
)
#: Markers of cell types absent from the tissue: background counts only (they
#: make the panel look like a real one and give enrichment a null to reject).
ABSENT_CELL_TYPE_GENES: tuple[str, ...] = (
    "PECAM1",
    "VWF",
    "CDH5",
    "CLDN5",
    "RGS5",
    "NOTCH3",
    "DES",
    "MYH11",
    "JCHAIN",
    "MZB1",
    "TPSAB1",
    "KIT",
    "KLRD1",
    "CLEC9A",
    "LAMP3",
    "CD1C",
    "IL1B",
    "S100A8",
    "S100A9",
    "NRXN1",
    "PLP1",
    "SOX10",
    "PMEL",
    "MLANA",
    "KRT5",
    "KRT14",
    "TP63",
    "SCGB1A1",
    "SFTPC",
    "ESR1",
)


def synthetic_gene_sets_path() -> Path:
    """Path of the bundled ``.gmt`` file of the synthetic tissue's gene programs.

    Returns
    -------
    A filesystem path (inside the installed package), usable by gseapy or any
    ``.gmt`` reader. See :func:`synthetic_gene_sets` for what each set marks.
    """
    resource = files("madspatial.datasets") / "data" / _GMT_NAME
    with as_file(resource) as path:  # a real file for regular installs; zip installs extract it
        return Path(path)


@cache
def _read_gmt() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    text = (files("madspatial.datasets") / "data" / _GMT_NAME).read_text(encoding="utf-8")
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 3:
            raise ValueError(f"{_GMT_NAME} line {n}: expected name, description and genes.")
        rows.append((fields[0], fields[1], tuple(g for g in fields[2:] if g)))
    return tuple(rows)


def synthetic_gene_sets() -> dict[str, list[str]]:
    """Gene sets marking the programs planted in :func:`synthetic_tissue`.

    Read from the bundled ``.gmt`` (:func:`synthetic_gene_sets_path`). The sets
    are disjoint; every gene is in the tissue's panel.

    ======================== =========================================================
    set                      marks
    ======================== =========================================================
    EPITHELIAL               class: all tumour cells
    PROLIFERATION            subtype ``tumour_proliferative``
    TUMOUR_DIFFERENTIATION   subtype ``tumour_quiescent``
    FIBROBLAST               class: all fibroblasts
    CAF                      subtype ``CAF`` (fibroblasts in tumour nests)
    STROMAL_FIBROBLAST       subtype ``stromal_fibroblast``
    MYOFIBROBLAST_ACTIVATION the trajectory: rises with fibroblast activation
    MACROPHAGE               class: all macrophages
    TAM                      subtype ``TAM`` (macrophages in tumour nests)
    RESIDENT_MACROPHAGE      subtype ``stromal_macrophage``
    LYMPHOCYTE               class: all lymphocytes
    T_CELL                   subtype ``T_cell``
    B_CELL                   subtype ``B_cell`` (immune aggregates)
    NICHE_TUMOUR_HYPOXIA     niche ``tumour``: every cell in a nest, deeper = stronger
    NICHE_STROMA_TGFB        niche ``stroma``: every cell in the stroma
    NICHE_IMMUNE_CHEMOKINE   niche ``immune``: every cell in an aggregate
    ======================== =========================================================

    Returns
    -------
    ``{set name: [gene symbols]}`` in file order (a new dict on every call).
    """
    return {name: list(genes) for name, _, genes in _read_gmt()}


def gene_set_descriptions() -> dict[str, str]:
    """Return the description field of each set in the ``.gmt`` (what program it marks)."""
    return {name: desc for name, desc, _ in _read_gmt()}


def panel_genes() -> list[str]:
    """Return the full gene panel of the synthetic tissue: programs, housekeeping, absent types."""
    genes = [g for _, _, gs in _read_gmt() for g in gs]
    genes += list(HOUSEKEEPING_GENES) + list(ABSENT_CELL_TYPE_GENES)
    if len(set(genes)) != len(genes):
        dup = sorted({g for g in genes if genes.count(g) > 1})
        raise RuntimeError(f"gene panel has duplicate genes {dup}; gene sets must be disjoint.")
    return genes
