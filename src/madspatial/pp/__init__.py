"""madspatial.pp: image normalization, per-cell views and group-aware splits."""

from ._cell_views import cell_views
from ._normalize import normalization_params, normalize
from ._split import split

__all__ = ["cell_views", "normalization_params", "normalize", "split"]
