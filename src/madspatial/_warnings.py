"""Warnings that point at the user's call, however deep inside madspatial they are raised.

One walk out of the package for every module (training, embedding, decoders, clustering,
view stores): a frame belongs to the "library side" when it is madspatial's own, or one of
the libraries that call into madspatial while reading and writing (anndata's IO registry,
spatialdata's writers, zarr, h5py) or wrap its calls (functools, contextlib,
legacy_api_wrap). The first other frame is the user's.
"""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Top-level modules whose frames are skipped besides madspatial's own.
_LIBRARIES = frozenset(
    {
        "madspatial",
        "anndata",
        "spatialdata",
        "zarr",
        "h5py",
        "functools",
        "contextlib",
        "legacy_api_wrap",
    }
)


def _library_frame(frame) -> bool:
    name = str(frame.f_globals.get("__name__", "")).split(".")[0]
    return name in _LIBRARIES or os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR)


def user_stacklevel() -> int:
    """Return the ``stacklevel`` that points a ``warnings.warn`` in the caller at the user's call.

    That is the first frame outside madspatial (and the libraries above).
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and _library_frame(frame):
        frame, level = frame.f_back, level + 1
    return level


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the user's line that called into madspatial."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
