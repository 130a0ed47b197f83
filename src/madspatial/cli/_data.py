"""What a command's positional DATA names: a SpatialData zarr or a view store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Top-level groups of a SpatialData zarr (a view store has "morphology", ... instead).
_SDATA_GROUPS = ("images", "labels", "shapes", "points", "tables")


def is_sdata_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a SpatialData ``.zarr`` (not a madspatial view store)."""
    p = Path(path)
    return p.is_dir() and any((p / g).is_dir() for g in _SDATA_GROUPS)


def existing(path: str, what: str) -> Path:
    """``Path(path)``, or a FileNotFoundError naming the argument."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {path!r} does not exist.")
    return p


def open_data(path: str, what: str = "DATA") -> Any:
    """Return the SpatialData read from a SpatialData zarr, else the path (of a view store)."""
    p = existing(path, what)
    if is_sdata_zarr(p):
        import spatialdata

        return spatialdata.read_zarr(p)
    return str(p)


def read_sdata(path: str, what: str = "SDATA") -> Any:
    """Return the SpatialData read from ``path``, or raise saying what ``path`` is instead."""
    p = existing(path, what)
    if not is_sdata_zarr(p):
        raise ValueError(
            f"{what} {path!r} is not a SpatialData .zarr (it has none of the groups "
            f"{list(_SDATA_GROUPS)}); write one with sdata.write(path), or read your "
            "instrument's output with spatialdata-io first."
        )
    import spatialdata

    return spatialdata.read_zarr(p)
