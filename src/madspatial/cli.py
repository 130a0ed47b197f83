"""The ``madspatial`` command line: ``madspatial demo | prepare | pretrain | embed``.

``torchrun --nproc_per_node=N -m madspatial pretrain STORE --out DIR`` runs the
same training entry point on several processes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the built-in synthetic tissue (or your data) -> HTML report",
        description="Synthetic tissue (or --sdata) -> normalize -> cell views -> pretrain MAD and "
        "the single-view ablations -> embed -> clusters, decoders, CCA, pseudotime, DE, "
        "enrichment -> OUT/report.html.",
    )
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--n-cells", type=int, default=None, help="cells in the synthetic tissue")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a reduced run for tests (~1 minute)")
    p.add_argument("--sdata", default=None, help="your own SpatialData zarr instead of the tissue")
    p.add_argument("--image-key", default=None, help="image of --sdata (default: the first)")
    p.add_argument("--labels-key", default=None, help="cell segmentation of --sdata")
    p.add_argument("--table-key", default=None, help="table annotating the segmentation")
    p.add_argument(
        "--gene-sets", default=None, help="a local .gmt file for the enrichment of --sdata data"
    )
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(
        out=args.out,
        n_cells=args.n_cells,
        seed=args.seed,
        quick=args.quick,
        sdata_path=args.sdata,
        image_key=args.image_key,
        labels_key=args.labels_key,
        table_key=args.table_key,
        gene_sets=args.gene_sets,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="madspatial",
        description="Microenvironment-aware distillation (MAD): single-cell embeddings from "
        "microscopy, in the scverse.",
    )
    parser.add_argument("--version", action="version", version=f"madspatial {__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    try:
        from .pp._cli import add_pp_commands
    except ImportError:
        pass
    else:
        add_pp_commands(sub)
    try:
        from .train._cli import add_train_commands
    except ImportError:
        pass
    else:
        add_train_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.quiet:
        from ._settings import settings

        settings.verbosity = "warning"
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
