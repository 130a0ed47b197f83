"""Built-in data: the synthetic tissue with known ground truth, its gene sets, real-data loaders."""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "cosmx_lung_mini": "._cosmx",
    "synthetic_gene_sets": "._gene_sets",
    "synthetic_gene_sets_path": "._gene_sets",
    "synthetic_slide": "._slide",
    "synthetic_tissue": "._synthetic",
    "CELL_TYPE_CLASS": "._tissue_spec",
    "CELL_TYPE_COLORS": "._tissue_spec",
    "CELL_TYPES": "._tissue_spec",
    "CHANNEL_NAMES": "._tissue_spec",
    "DE_CONTRAST": "._tissue_spec",
    "MORPH_CLASS_COLORS": "._tissue_spec",
    "MORPH_CLASSES": "._tissue_spec",
    "MORPHOLOGY_ONLY_PAIRS": "._tissue_spec",
    "NICHE_COLORS": "._tissue_spec",
    "NICHE_ONLY_PAIRS": "._tissue_spec",
    "NICHES": "._tissue_spec",
    "SHOWCASE_GENES": "._tissue_spec",
    "TRAJECTORY_CELL_TYPE": "._tissue_spec",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
