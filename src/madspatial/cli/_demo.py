"""``madspatial demo``: the options of :func:`madspatial._demo.run_demo`, and its backend."""

from __future__ import annotations

import argparse

from ._options import add_options

_SKIP = ("preset", "strict", "sdata_path")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the demo's options (``run_demo``'s parameters) to its sub-parser."""
    from .._demo import run_demo

    p.add_argument(
        "--sdata",
        dest="sdata_path",
        default=argparse.SUPPRESS,
        help="your own SpatialData .zarr instead of the synthetic tissue",
    )
    p.set_defaults(_options=add_options(p, run_demo, skip=_SKIP))


def headless_backend() -> None:
    """Draw into files (Agg) unless a matplotlib backend was chosen.

    A backend is chosen by ``MPLBACKEND``, a matplotlibrc or ``matplotlib.use``. This is the
    command's own process only, never the library.
    """
    import matplotlib

    if matplotlib.rcParams._get_backend_or_none() is None:
        matplotlib.use("Agg")


def run(args: argparse.Namespace) -> int:
    """Run the demo; the report goes to ``--out``."""
    from .._demo import run_demo
    from ._data import existing

    headless_backend()
    kwargs = args._options.given(args)
    if hasattr(args, "sdata_path"):
        kwargs["sdata_path"] = existing(args.sdata_path, "--sdata")
    if kwargs.get("gene_sets") is not None:
        existing(kwargs["gene_sets"], "--gene-sets")
    run_demo(**kwargs)
    return 0
