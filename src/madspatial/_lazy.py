"""Lazy package namespaces (PEP 562): a public name is imported on first access.

``import madspatial`` and ``import madspatial.pp`` must not import torch (seconds, and
most of the package never needs it), and ``madspatial --help`` must answer at once. So
each package ``__init__`` names its public objects and the private module defining each,
and this module's :func:`attach` turns that into the module-level ``__getattr__``,
``__dir__`` and ``__all__``: ``mad.tl.embed`` imports ``madspatial.tl._embed`` the first
time it is looked up, ``dir(mad.tl)`` and tab completion list every name, and
``from madspatial.tl import pretrain`` works as before.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def attach(
    package: str, *, attributes: Mapping[str, str] | None = None, submodules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``.

    Parameters
    ----------
    package
        The package's ``__name__``.
    attributes
        Public name -> the module (relative to ``package``, e.g. ``"._embed"``) that
        defines it.
    submodules
        Public subpackages/modules imported on access (``mad.tl``).
    """
    attributes = dict(attributes or {})
    submodules = tuple(submodules)
    names = sorted({*attributes, *submodules})

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name in attributes:
            value = getattr(importlib.import_module(attributes[name], package), name)
            # cache it: later look-ups are plain attribute reads
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__, names
