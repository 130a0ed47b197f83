"""Built-in data: the synthetic tissue with known ground truth, its gene sets, real-data loaders."""

from ._cosmx import cosmx_lung_mini
from ._gene_sets import synthetic_gene_sets, synthetic_gene_sets_path
from ._slide import synthetic_slide
from ._synthetic import synthetic_tissue
from ._tissue_spec import (
    CELL_TYPE_CLASS,
    CELL_TYPE_COLORS,
    CELL_TYPES,
    CHANNEL_NAMES,
    MORPH_CLASS_COLORS,
    MORPH_CLASSES,
    MORPHOLOGY_ONLY_PAIRS,
    NICHE_COLORS,
    NICHE_ONLY_PAIRS,
    NICHES,
)

__all__ = [
    "CELL_TYPES",
    "CELL_TYPE_CLASS",
    "CELL_TYPE_COLORS",
    "CHANNEL_NAMES",
    "MORPHOLOGY_ONLY_PAIRS",
    "MORPH_CLASSES",
    "MORPH_CLASS_COLORS",
    "NICHES",
    "NICHE_COLORS",
    "NICHE_ONLY_PAIRS",
    "cosmx_lung_mini",
    "synthetic_gene_sets",
    "synthetic_gene_sets_path",
    "synthetic_slide",
    "synthetic_tissue",
]
