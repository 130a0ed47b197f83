"""Reading and writing: SpatialData from arrays, view stores, models."""

from .._lazy import attach as _attach

# public name -> the module defining it, imported on first access (see madspatial._lazy)
_ATTRIBUTES = {
    "sdata_from_arrays": "._arrays",
    "export_h5": "._h5",
    "import_h5": "._h5",
    "StoreLockedError": "._lock",
    "ViewStore": "._views",
    "read_views": "._views",
}

__getattr__, __dir__, __all__ = _attach(__name__, attributes=_ATTRIBUTES)
