"""madspatial.pp: image normalization, per-cell views and group-aware splits."""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "cell_views": "._cell_views",
    "OnTheFlyViews": "._on_the_fly",
    "normalization_params": "._normalize",
    "normalize": "._normalize",
    "split": "._split",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
