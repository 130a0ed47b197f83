"""The package logger and the "added 'X' (obsm)" messages users know from scanpy."""

from __future__ import annotations

import logging

logger = logging.getLogger("madspatial")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def added(key: str, where: str) -> None:
    """Log that ``key`` was written into ``where`` (``obs``, ``obsm``, ``uns``, ...)."""
    logger.info("    added '%s' (%s)", key, where)


def progress(iterable=None, **kwargs):
    """Return a tqdm progress bar that respects ``mad.settings.verbosity``."""
    from tqdm.auto import tqdm

    from ._settings import settings

    kwargs.setdefault("disable", not settings.show_progress)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
