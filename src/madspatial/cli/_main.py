"""Parser, dispatch and error reporting of the ``madspatial`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    """One sub-command: its help, and the module that adds its options and runs it.

    The module is ``madspatial.cli.<module>``, with ``add_arguments(parser)`` and
    ``run(args) -> int``.
    """

    name: str
    module: str
    help: str
    description: str


COMMANDS = (
    Command(
        "demo",
        "._demo",
        "run the whole pipeline on the built-in synthetic tissue (or your data) -> HTML report",
        "Synthetic tissue (or --sdata) -> normalize -> cell views -> pretrain MAD and the "
        "single-view ablations -> embed -> clusters, decoders, CCA, pseudotime, DE, "
        "enrichment -> OUT/report.html.",
    ),
    Command(
        "prepare",
        "._prepare",
        "normalize the image of a SpatialData zarr and cut every cell's views into a store",
        "mad.pp.normalize and mad.pp.cell_views on SDATA (a SpatialData .zarr): the views of "
        "every cell of the table annotating the segmentation go to the zarr view store --out, "
        "ready for `madspatial pretrain` and `madspatial embed`. Options are those of the two "
        "functions.",
    ),
    Command(
        "pretrain",
        "._pretrain",
        "pretrain a MAD model on a view store or a SpatialData zarr (also under torchrun)",
        "MAD self-distillation on the views in DATA (a zarr view store written by "
        "`madspatial prepare` or mad.pp.cell_views(..., store=...), or a SpatialData .zarr, "
        "whose views are computed with the defaults when its table has none); the model and "
        "checkpoints go to --out. Under torchrun each process trains on its share of the "
        "cells. Options are those of mad.tl.pretrain and madspatial.train.TrainConfig.",
    ),
    Command(
        "embed",
        "._embed",
        "embed every cell of a view store (or a SpatialData zarr) with a trained model",
        "Writes an .h5ad whose obsm holds X_mad, X_mad_morphology and "
        "X_mad_microenvironment (rows: the cells of DATA; for a view store obs_names are the "
        "instance ids, for a SpatialData the rows of its table).",
    ),
)

#: What a command raises for bad user input (a missing file, an unknown key, an option
#: value out of range): printed as one line, exit status 2, like argparse's own errors.
#: ``--debug`` shows the traceback instead.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError)


def _global_options(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    # on sub-commands too (``madspatial pretrain ... --debug``); SUPPRESS there so an
    # option given before the command is not reset by the sub-parser's default
    default = argparse.SUPPRESS if sub else False
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="only warnings and errors, no progress bars",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="debug logging, and the full traceback of an error instead of one line",
    )


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """Build the ``madspatial`` parser.

    Parameters
    ----------
    commands
        Sub-commands whose options are added (their modules imported); default: all.
        Every sub-command is listed in ``--help`` either way.
    """
    from .._version import __version__

    wanted = None if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="madspatial",
        description="Microenvironment-aware distillation (MAD): single-cell embeddings from "
        "microscopy, in the scverse.",
    )
    parser.add_argument("--version", action="version", version=f"madspatial {__version__}")
    _global_options(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        if wanted is None or cmd.name in wanted:
            # an ImportError here is a real bug: it propagates (nothing is hidden)
            module = importlib.import_module(cmd.module, __package__)
            module.add_arguments(p)
            p.set_defaults(func=module.run)
        _global_options(p, sub=True)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """Return the sub-command named in ``argv`` (the first word that is not an option)."""
    names = {c.name for c in COMMANDS}
    for word in argv:
        if not word.startswith("-"):
            return word if word in names else None
    return None


def _one_line(err: BaseException) -> str:
    # KeyError's str() is the repr of its argument: show the message itself
    msg = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else err
    text = " ".join(str(msg).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``madspatial ARGV``; returns the exit status (0 ok, 2 a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_of(argv)
    parser = build_parser([command] if command else [])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .._settings import settings

    if args.debug:
        settings.verbosity = "debug"
    elif args.quiet:
        settings.verbosity = "warning"
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(
            f"madspatial {args.command}: error: {_one_line(err)} (--debug shows the traceback)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"madspatial {args.command}: interrupted", file=sys.stderr)
        return 130
