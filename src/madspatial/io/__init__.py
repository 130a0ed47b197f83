"""Reading and writing: SpatialData from arrays, view stores, models."""

from ._arrays import sdata_from_arrays
from ._h5 import export_h5, import_h5
from ._lock import StoreLockedError
from ._views import ViewStore, read_views

__all__ = [
    "StoreLockedError",
    "ViewStore",
    "export_h5",
    "import_h5",
    "read_views",
    "sdata_from_arrays",
]
