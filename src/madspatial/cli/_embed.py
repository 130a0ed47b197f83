"""``madspatial embed DATA --model DIR --out cells.h5ad`` (also under ``torchrun``).

``--weights NAME`` instead of ``--model`` embeds zero-shot with a pretrained backbone.
"""

from __future__ import annotations

import argparse
import os

from ._options import add_options

_SKIP = ("model", "views_key", "key_added", "copy")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``DATA``, ``--model``, ``--out`` and the options of :func:`madspatial.tl.embed`."""
    from ..tl._embed import embed

    p.add_argument("data", metavar="DATA", help="zarr view store, or a SpatialData .zarr")
    p.add_argument(
        "--model",
        default=None,
        help="saved model folder (pretrain --out); leave out with --weights for a zero-shot "
        "embedding with a pretrained backbone",
    )
    p.add_argument("--out", required=True, help="output .h5ad")
    p.set_defaults(_options=add_options(p, embed, skip=_SKIP))  # choices: Literal types


def run(args: argparse.Namespace) -> int:
    """Embed every cell; the main process writes the .h5ad."""
    from .._settings import settings
    from ..tl._embed import embed
    from ._data import existing, open_data

    kwargs = args._options.given(args)
    if args.model is None and kwargs.get("weights") is None:
        raise ValueError("pass --model DIR (a trained MAD model) or --weights NAME (zero-shot).")
    data = open_data(args.data)
    if args.model is not None:
        existing(args.model, "--model")
    info = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from ..train._distributed import init_distributed

        info = init_distributed(settings.resolve_device(kwargs.get("device")))
        kwargs["device"] = info.device
    try:
        result = embed(data, model=args.model, copy=True, **kwargs)
        if info is None or info.is_main:
            result.write_h5ad(args.out)
            print(f"wrote {result.n_obs} embeddings to {args.out}")
    finally:
        if info is not None:
            from ..train._distributed import cleanup

            cleanup(info)
    return 0
