"""Plotting: ``mad.pl``.

Every function takes ``show``, ``ax`` (where it draws one panel) and ``return_fig``, as in
scanpy.
"""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "enrichment": "._de",
    "volcano": "._de",
    "embedding_comparison": "._evaluate",
    "gene_correlation": "._expression",
    "spatial_expression": "._expression",
    "tissue_overview": "._tissue",
    "training_curves": "._training",
    "umap": "._umap",
    "cell_views": "._views",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
