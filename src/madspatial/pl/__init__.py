"""Plotting: ``mad.pl``. Every function takes ``show``, ``ax`` (where it draws one panel)
and ``return_fig``, as in scanpy."""

from ._de import enrichment, volcano
from ._evaluate import embedding_comparison
from ._expression import gene_correlation, spatial_expression
from ._tissue import tissue_overview
from ._training import training_curves
from ._umap import umap
from ._views import cell_views

__all__ = [
    "cell_views",
    "embedding_comparison",
    "enrichment",
    "gene_correlation",
    "spatial_expression",
    "tissue_overview",
    "training_curves",
    "umap",
    "volcano",
]
