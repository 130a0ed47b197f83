"""madspatial: microenvironment-aware distillation (MAD) for spatial omics, in the scverse.

>>> import madspatial as mad
>>> sdata = mad.datasets.synthetic_tissue()
>>> mad.pp.normalize(sdata, image_key="morphology")
"""

from __future__ import annotations

from . import datasets, io, metrics, pl, pp, tl
from ._settings import settings
from ._version import __version__

__all__ = ["__version__", "datasets", "io", "metrics", "pl", "pp", "settings", "tl"]
