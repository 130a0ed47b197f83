"""madspatial: microenvironment-aware distillation (MAD) for spatial omics, in the scverse.

>>> import madspatial as mad
>>> sdata = mad.datasets.synthetic_tissue()
>>> mad.pp.normalize(sdata, image_key="morphology")

The namespaces (``mad.pp``, ``mad.tl``, ...) are imported on first access, so
``import madspatial`` stays cheap and torch is imported only by what uses it.
"""

from ._lazy import attach as _attach
from ._settings import settings
from ._version import __version__

__getattr__, __dir__, _namespaces = _attach(
    __name__, submodules=("datasets", "io", "metrics", "nn", "pl", "pp", "tl", "train")
)
__all__ = ["__version__", "settings", *_namespaces]
