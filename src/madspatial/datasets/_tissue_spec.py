"""The ground truth of the synthetic tissue: classes, niches, subtypes, colours, parameters.

Everything the generator plants is declared here, once, so the generator, its
docstring, the plots and the tests read the same numbers.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

#: Stain channels, modelled on the four Xenium morphology stains (paper, Methods).
CHANNEL_NAMES: Final = ("DAPI", "ATP1A1/CD45/E-Cadherin", "18S", "alphaSMA/Vimentin")
CH_DAPI, CH_MEMBRANE, CH_RNA, CH_STROMA = range(4)

#: Morphological classes (what the cell alone looks like).
MORPH_CLASSES: Final = ("epithelial", "fibroblast", "lymphocyte", "macrophage")
EPI, FIB, LYM, MAC = range(4)

#: Niches: spatial regions, each with its own class mix.
NICHES: Final = ("tumour", "stroma", "immune")
TUMOUR, STROMA, IMMUNE = range(3)

#: Ground-truth subtypes (``obs["cell_type"]``), in plotting order.
CELL_TYPES: Final = (
    "tumour_proliferative",
    "tumour_quiescent",
    "CAF",
    "stromal_fibroblast",
    "TAM",
    "stromal_macrophage",
    "T_cell",
    "B_cell",
)
(
    PROLIFERATIVE,
    QUIESCENT,
    CAF,
    STROMAL_FIBROBLAST,
    TAM,
    STROMAL_MACROPHAGE,
    T_CELL,
    B_CELL,
) = range(8)

#: Morphological class of each subtype.
CELL_TYPE_CLASS: Final = MappingProxyType(
    {
        "tumour_proliferative": "epithelial",
        "tumour_quiescent": "epithelial",
        "CAF": "fibroblast",
        "stromal_fibroblast": "fibroblast",
        "TAM": "macrophage",
        "stromal_macrophage": "macrophage",
        "T_cell": "lymphocyte",
        "B_cell": "lymphocyte",
    }
)

#: Pairs of subtypes that differ ONLY by where they live (identical morphology
#: distributions): the cell alone cannot tell them apart, its neighbourhood can.
NICHE_ONLY_PAIRS: Final = (
    ("CAF", "stromal_fibroblast"),
    ("TAM", "stromal_macrophage"),
    ("T_cell", "B_cell"),
)
#: With ``synthetic_tissue(niche_imprint=x)`` the first subtype of each niche-only pair
#: stains brighter by ``NICHE_IMPRINT_GAIN * x`` in every channel (cytoplasm, nucleus,
#: membrane): a weak trace of the niche in the cell itself, as real cells carry one.
NICHE_IMPRINT_GAIN: Final = 0.15
#: Pairs that differ ONLY by the cell's own morphology (same niche, same placement).
MORPHOLOGY_ONLY_PAIRS: Final = (("tumour_proliferative", "tumour_quiescent"),)

# Colours (matplotlib hex), for scanpy-style ``uns["<key>_colors"]`` and plots.
CELL_TYPE_COLORS: Final = MappingProxyType(
    {
        "tumour_proliferative": "#d62728",
        "tumour_quiescent": "#ff9896",
        "CAF": "#2ca02c",
        "stromal_fibroblast": "#98df8a",
        "TAM": "#9467bd",
        "stromal_macrophage": "#c5b0d5",
        "T_cell": "#1f77b4",
        "B_cell": "#aec7e8",
    }
)
MORPH_CLASS_COLORS: Final = MappingProxyType(
    {
        "epithelial": "#d62728",
        "fibroblast": "#2ca02c",
        "lymphocyte": "#1f77b4",
        "macrophage": "#9467bd",
    }
)
NICHE_COLORS: Final = MappingProxyType(
    {"tumour": "#e377c2", "stroma": "#bcbd22", "immune": "#17becf"}
)

# --- layout -------------------------------------------------------------------------
#: Share of the slide area covered by tumour nests and by immune aggregates
#: (the rest is stroma).
TUMOUR_AREA_FRACTION: Final = 0.42
IMMUNE_AREA_FRACTION: Final = 0.09
#: Pixels of tissue per cell in each niche (cells + extracellular space); sets the
#: density, hence the image side for a given number of cells.
NICHE_AREA_PER_CELL: Final = (360.0, 780.0, 200.0)
#: Correlation length (px) of the random field whose upper quantile makes the nests.
NEST_SIGMA_PX: Final = 38.0
#: Radius range (px) of one immune aggregate.
AGGREGATE_RADIUS_PX: Final = (34.0, 56.0)
#: Class mix of each niche (rows: niches; columns: MORPH_CLASSES order).
NICHE_CLASS_MIX: Final = (
    (0.68, 0.12, 0.08, 0.12),  # tumour nest: tumour cells with CAFs, TAMs, infiltrating T cells
    (0.00, 0.60, 0.22, 0.18),  # stroma: fibroblasts, resident macrophages, T cells
    (0.00, 0.06, 0.88, 0.06),  # immune aggregate: B-cell follicle
)
#: Share of tumour cells that are proliferative, and of those that are in mitosis.
PROLIFERATIVE_FRACTION: Final = 0.35
MITOTIC_FRACTION: Final = 0.2
#: Fibroblast activation (the trajectory) decays with distance to the nearest nest
#: with this length scale (px).
ACTIVATION_LENGTH_PX: Final = 60.0

# --- imaging ----------------------------------------------------------------------
#: Microns per pixel: Xenium's 0.2125 um morphology image binned 4 x 4.
PIXEL_SIZE_UM: Final = 0.85
#: Expected photons per pixel at stain level 1.0, per channel.
PEAK_PHOTONS: Final = (260.0, 140.0, 110.0, 140.0)
#: Diffuse tissue autofluorescence (photons) per channel.
BACKGROUND_PHOTONS: Final = (10.0, 8.0, 12.0, 10.0)
PSF_SIGMA_PX: Final = 1.0
CAMERA_GAIN: Final = 10.0  # ADU per photon
CAMERA_OFFSET: Final = 100.0  # ADU
READ_NOISE_ADU: Final = 6.0
#: Gap (px) between slides tiled into one image.
SLIDE_GAP_PX: Final = 48

# --- expression -------------------------------------------------------------------
#: Mean total counts of a cell of median area (Xenium-like depth for a small panel).
MEAN_COUNTS: Final = 300.0

# --- what the demo shows of the ground truth --------------------------------------
#: Planted genes worth mapping, one per design question, with the question each answers
#: (``madspatial demo`` shows their measured and predicted expression in the tissue).
SHOWCASE_GENES: Final = MappingProxyType(
    {
        "MKI67": "proliferation: tumour_proliferative vs quiescent differ by morphology only",
        "FAP": "CAF program: CAF vs stromal fibroblast differ by niche only",
        "MS4A1": "B cells (in immune aggregates) vs T cells: niche only",
        "ACTA2": "fibroblast activation trajectory",
    }
)
#: The subtype contrast whose differential expression recovers a planted program (the CAF
#: program: FAP, POSTN, ... up in CAFs); ``(group, reference)``.
DE_CONTRAST: Final = ("CAF", "stromal_fibroblast")
#: The only subtype with a value in ``obs["trajectory"]`` (its activation; NaN elsewhere).
TRAJECTORY_CELL_TYPE: Final = "stromal_fibroblast"
