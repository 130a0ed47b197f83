"""The ``madspatial`` command line: ``madspatial demo | prepare | pretrain | embed``.

The top of the house: it may import every part of the library, and nothing in the library
imports it. ``madspatial --help`` imports none of the commands' dependencies (torch,
spatialdata); a command's options are built, from the library's own signatures, only when
that command runs or its help is asked for.

``torchrun --nproc_per_node=N -m madspatial pretrain STORE --out DIR`` runs the same
training entry point on several processes.
"""

from ._main import USER_ERRORS, build_parser, main

__all__ = ["USER_ERRORS", "build_parser", "main"]
