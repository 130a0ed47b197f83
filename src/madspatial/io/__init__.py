"""Reading and writing: SpatialData from arrays, view stores, models."""

from ._arrays import sdata_from_arrays

__all__ = ["sdata_from_arrays"]
