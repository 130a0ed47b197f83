"""``madspatial pretrain`` and ``madspatial embed`` subcommands.

``torchrun --nproc_per_node=N -m madspatial pretrain STORE --out DIR`` runs the
same command on N processes (DDP by default, ``--strategy fsdp`` for FSDP2).
"""

from __future__ import annotations

import argparse
import json


def _pair(text: str) -> tuple[float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}")
    return parts[0], parts[1]


def add_train_commands(subparsers) -> None:
    """Add ``pretrain`` and ``embed`` to the ``madspatial`` CLI's subparsers."""
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a MAD model on a view store (single process or under torchrun)",
        description="MAD self-distillation on the views in STORE (a zarr view store written by "
        "mad.pp.cell_views(..., store=...)); the model and checkpoints go to --out. Under "
        "torchrun each process trains on its share of the cells.",
    )
    p.add_argument("store", help="path of the zarr view store")
    p.add_argument("--out", required=True, help="model / checkpoint folder")
    p.add_argument("--mode", default="mad", choices=["mad", "morphology", "microenvironment"])
    p.add_argument("--model", default="vit_small", help="backbone preset (default vit_small)")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64, help="cells per step and process")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32", "fp16"])
    p.add_argument("--strategy", default="auto", choices=["auto", "none", "ddp", "fsdp"])
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--no-resume", action="store_true", help="start over even if --out has one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--weights", default=None, help="local pretrained backbone weights")
    p.add_argument("--n-prototypes", type=int, default=65536)
    p.add_argument("--head-hidden-dim", type=int, default=2048)
    p.add_argument("--head-bottleneck-dim", type=int, default=256)
    p.add_argument("--n-local", type=int, default=4)
    p.add_argument("--teacher-temp", type=_pair, default=(0.04, 0.07), help="start,end")
    p.add_argument("--momentum", type=_pair, default=(0.992, 1.0), help="start,end")
    p.add_argument("--koleo-weight", type=float, default=0.0)
    p.add_argument(
        "--centering",
        default="center",
        choices=["center", "sinkhorn"],
        help="teacher centering: running center (the paper) or Sinkhorn-Knopp",
    )
    p.add_argument(
        "--pixel-stats",
        default="data",
        choices=["data", "fixed"],
        help="input standardisation: channel mean/std of the views, or fixed 0.5/0.25",
    )
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="further TrainConfig option, e.g. --option warmup_steps=100 (repeatable)",
    )
    p.set_defaults(func=_run_pretrain)

    e = subparsers.add_parser(
        "embed",
        help="embed every cell of a view store (or a SpatialData zarr) with a trained model",
        description="Writes an .h5ad whose obsm holds X_mad, X_mad_morphology and "
        "X_mad_microenvironment (rows: the store's cells, obs_names: instance ids).",
    )
    e.add_argument("store", help="zarr view store (or a SpatialData .zarr with views)")
    e.add_argument("--model", required=True, help="saved model folder (pretrain --out)")
    e.add_argument("--out", required=True, help="output .h5ad")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32", "fp16"])
    e.add_argument("--device", default=None)
    e.add_argument("--num-workers", type=int, default=0)
    e.add_argument("--table-key", default=None)
    e.set_defaults(func=_run_embed)


def _parse_options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run_pretrain(args: argparse.Namespace) -> int:
    from ..tl._pretrain import pretrain

    model = pretrain(
        args.store,
        mode=args.mode,
        model=args.model,
        alpha=args.alpha,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        strategy=args.strategy,
        checkpoint_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume,
        seed=args.seed,
        device=args.device,
        grad_checkpointing=args.grad_checkpointing,
        weights=args.weights,
        n_prototypes=args.n_prototypes,
        head_hidden_dim=args.head_hidden_dim,
        head_bottleneck_dim=args.head_bottleneck_dim,
        n_local=args.n_local,
        teacher_temp=args.teacher_temp,
        momentum=args.momentum,
        koleo_weight=args.koleo_weight,
        centering=args.centering,
        pixel_stats=args.pixel_stats,
        num_workers=args.num_workers,
        **_parse_options(args.option),
    )
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        h = model.history or {}
        losses = h.get("loss", [])
        r5 = h.get("recall@5", [])
        print(
            f"saved to {args.out}: {len(losses)} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}"
            + (f", held-out Recall@5 {r5[0]:.3f} -> {r5[-1]:.3f}" if r5 else "")
            if losses
            else f"saved to {args.out}"
        )
    return 0


def _run_embed(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..tl._embed import embed

    source = args.store
    data = source
    if (Path(source) / "zarr.json").exists() or (Path(source) / ".zgroup").exists():
        # a SpatialData zarr has "images"/"tables" folders; a view store has "morphology"
        if (Path(source) / "tables").is_dir():
            import spatialdata

            data = spatialdata.read_zarr(source)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    info = None
    if distributed:
        from .._settings import settings
        from ..train._distributed import init_distributed

        info = init_distributed(settings.resolve_device(args.device))
    try:
        result = embed(
            data,
            model=args.model,
            table_key=args.table_key,
            batch_size=args.batch_size,
            precision=args.precision,
            device=info.device if info else args.device,
            num_workers=args.num_workers,
            copy=True,
        )
        if info is None or info.is_main:
            result.write_h5ad(args.out)
            print(f"wrote {result.n_obs} embeddings to {args.out}")
    finally:
        if info is not None:
            from ..train._distributed import cleanup

            cleanup(info)
    return 0
