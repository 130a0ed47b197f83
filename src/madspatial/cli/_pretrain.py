"""``madspatial pretrain DATA --out DIR`` (also under ``torchrun``).

Options: every keyword parameter of :func:`madspatial.tl.pretrain`, then every further
field of :class:`madspatial.train.TrainConfig` (passed as ``**train_options``), with the
choices the library validates against (``Literal`` types of ``madspatial._constants``:
``MODES``, ``PRECISIONS``, ``CENTERINGS``, ...). Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import os

from ._options import add_options, key_values

#: Set by the command itself: the folder (``--out``), resuming (``--no-resume``), the
#: view-store key, and TrainConfig's spelling of options pretrain names differently.
_SKIP = ("checkpoint_dir", "resume", "views_key", "backbone")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``DATA``, ``--out`` and the training options."""
    from ..tl._pretrain import pretrain
    from ..train._config import TrainConfig

    p.add_argument("data", metavar="DATA", help="zarr view store, or a SpatialData .zarr")
    p.add_argument("--out", required=True, help="model / checkpoint folder")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out holds a run")
    # choices come from the Literal annotations (madspatial._constants)
    seen: set[str] = set()
    options = add_options(p, pretrain, skip=_SKIP, seen=seen)
    group = p.add_argument_group("further training options (madspatial.train.TrainConfig)")
    train = add_options(group, TrainConfig, skip=_SKIP, seen=seen)
    group.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any TrainConfig option as JSON, e.g. --option 'augment={\"jitter\": 0.2}' "
        "(repeatable)",
    )
    p.set_defaults(_options={"pretrain": options, "train": train})


def run(args: argparse.Namespace) -> int:
    """Train; rank 0 prints where the model went and how the loss moved."""
    from ..tl._pretrain import pretrain
    from ._data import open_data

    data = open_data(args.data)
    kwargs = {
        **args._options["pretrain"].given(args),
        **args._options["train"].given(args),
        **key_values(args.option),
    }
    model = pretrain(data, checkpoint_dir=args.out, resume=not args.no_resume, **kwargs)
    if int(os.environ.get("RANK", "0")) == 0:
        h = model.history or {}
        losses = h.get("loss", [])
        r5 = h.get("recall@5", [])
        text = f"saved to {args.out}"
        if losses:
            text += f": {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        if losses and r5:
            text += f", held-out Recall@5 {r5[0]:.3f} -> {r5[-1]:.3f}"
        print(text)
    return 0
