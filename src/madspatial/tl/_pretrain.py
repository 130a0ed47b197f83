"""``mad.tl.pretrain``: MAD self-distillation on the cell views of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._constants import (
    IMAGE_KEY,
    MODE_MAD,
    NORMALIZED_SUFFIX,
    UNS_MAD,
    UNS_MODEL,
    UNS_VIEWS,
)
from .._logging import added, logger
from .._settings import settings

#: Parent folder of the default ``checkpoint_dir`` (relative to the working directory).
DEFAULT_MODEL_ROOT = "mad_models"


def _is_sdata(obj: Any) -> bool:
    return hasattr(obj, "tables") and hasattr(obj, "images")


def _is_adata(obj: Any) -> bool:
    import anndata as ad

    return isinstance(obj, ad.AnnData)


def _pick_table(sdata, table_key: str | None, views_key: str):
    tables = sdata.tables
    if table_key is not None:
        if table_key not in tables:
            raise KeyError(f"no table {table_key!r} in the SpatialData; tables: {list(tables)}.")
        return table_key
    with_views = [k for k, t in tables.items() if views_key in t.uns]
    if len(with_views) == 1:
        return with_views[0]
    if len(tables) == 1:
        return next(iter(tables))
    raise ValueError(f"the SpatialData has several tables {list(tables)}; pass table_key=.")


def _compute_views(sdata, table_key: str, views_key: str) -> None:
    """Run ``mad.pp.normalize`` (if needed) and ``mad.pp.cell_views`` with their defaults."""
    from .. import pp

    table = sdata.tables[table_key]
    region = table.uns.get("spatialdata_attrs", {}).get("region")
    labels_key = region if isinstance(region, str) else None
    if labels_key is None or labels_key not in sdata.labels:
        raise ValueError(
            f"table {table_key!r} has no views (.uns[{views_key!r}]) and does not name one labels "
            f"element in uns['spatialdata_attrs']['region'] (got {region!r}); run "
            "mad.pp.cell_views(sdata, image_key=..., labels_key=...) first."
        )
    images = list(sdata.images)
    normalized = [k for k in images if k.endswith(NORMALIZED_SUFFIX)]
    if len(normalized) == 1:
        image_key = normalized[0]
    else:
        raw = [k for k in images if not k.endswith(NORMALIZED_SUFFIX)]
        source = IMAGE_KEY if IMAGE_KEY in raw else (raw[0] if len(raw) == 1 else None)
        if source is None:
            raise ValueError(
                f"cannot tell which image to cut views from ({images}); run "
                "mad.pp.normalize and mad.pp.cell_views(sdata, image_key=..., labels_key=...) "
                "first."
            )
        logger.info("pretrain: no views yet; normalizing image %r with defaults", source)
        pp.normalize(sdata, image_key=source)
        image_key = source + NORMALIZED_SUFFIX
    logger.info("pretrain: computing cell views of %r / %r with defaults", image_key, labels_key)
    pp.cell_views(
        sdata, image_key=image_key, labels_key=labels_key, table_key=table_key, key_added=views_key
    )


def resolve_views(data: Any, *, table_key: str | None = None, views_key: str = UNS_VIEWS,
                  compute: bool = False):  # fmt: skip
    """``(store, table)`` for a SpatialData, AnnData, ViewStore or path (table may be None).

    With ``compute=True`` a SpatialData without views gets them (``pp.cell_views``).
    """
    from ..io import ViewStore, read_views

    if isinstance(data, ViewStore):
        return data, None
    if isinstance(data, str | Path):
        return read_views(data), None
    if _is_sdata(data):
        key = _pick_table(data, table_key, views_key)
        table = data.tables[key]
        if views_key not in table.uns:
            if not compute:
                raise KeyError(
                    f"table {key!r} has no .uns[{views_key!r}]: run mad.pp.cell_views(sdata, "
                    "image_key=..., labels_key=...) (or mad.tl.pretrain, which does) first."
                )
            _compute_views(data, key, views_key)
            table = data.tables[key]
        return read_views(table, key=views_key), table
    if _is_adata(data):
        if views_key not in data.uns:
            raise KeyError(
                f"the AnnData has no .uns[{views_key!r}]: compute the views with "
                "mad.pp.cell_views on the SpatialData it belongs to."
            )
        return read_views(data, key=views_key), data
    if hasattr(data, "batch") and hasattr(data, "morphology"):
        return data, None  # a view-store-like object
    raise TypeError(
        "data must be a SpatialData, an AnnData with views, a ViewStore or a path to one; "
        f"got {type(data).__name__}."
    )


def default_checkpoint_dir(digest: str, mode: str, backbone: Any) -> Path:
    """``./mad_models/<mode>_<backbone>_<digest>``; ``digest`` hashes the run's identity.

    The identity (:meth:`madspatial.train.Trainer.identity`) covers every training and
    model option and a fingerprint of the data, so another dataset or option never lands
    in (and resumes) this folder.
    """
    name = backbone if isinstance(backbone, str) else "custom"
    return Path(DEFAULT_MODEL_ROOT) / f"{mode}_{name}_{digest}"


def pretrain(
    data: Any,
    *,
    mode: str = MODE_MAD,
    model: Any = "vit_small",
    alpha: float = 1.0,
    epochs: int = 10,
    max_steps: int | None = None,
    batch_size: int = 64,
    lr: float | None = None,
    precision: str = "auto",
    strategy: str = "auto",
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    seed: int | None = None,
    device: str | None = None,
    grad_checkpointing: bool = False,
    weights: str | Path | None = None,
    n_prototypes: int = 65536,
    head_hidden_dim: int = 2048,
    head_bottleneck_dim: int = 256,
    n_global: int = 2,
    n_local: int = 4,
    teacher_temp: tuple[float, float] = (0.04, 0.07),
    momentum: tuple[float, float] = (0.992, 1.0),
    koleo_weight: float = 0.0,
    centering: str = "center",
    num_workers: int = 0,
    table_key: str | None = None,
    views_key: str = UNS_VIEWS,
    cells: Any = None,
    **train_options: Any,
):
    """Pretrain a MAD model: self-distillation of every cell's two views into one ViT.

    DINO-style: the student (one shared ViT backbone + projection head) sees global and
    zoomed-in local crops of the morphology and microenvironment views; the teacher, an
    exponential moving average of the student, sees the global crops. The loss is the
    paper's four-way cross-entropy ``CE(mm) + CE(ee) + alpha * (CE(me) + CE(em))`` with
    teacher centering and sharpening. Schedules follow DINO/DINOv2: AdamW with linear
    lr warm-up (10% of the steps) and cosine decay, weight decay 0.04 -> 0.4 (not on
    biases, norms and tokens), EMA momentum 0.992 -> 1, teacher temperature warm-up
    (30% of the steps), prototypes frozen during the first epoch (at most 10% of the
    steps), gradient clipping at 3.

    Runs on one CPU or GPU, or under ``torchrun`` on many GPUs and nodes (DDP, or FSDP2
    with ``strategy="fsdp"``); see ``madspatial pretrain --help`` for the command line.
    Self-distillation can collapse on small data; the training history (``model.history``,
    also saved as ``history.json``) tracks the loss, the teacher's entropy against
    ``ln(n_prototypes)`` and cross-view Recall@1/5/10 on held-out cells, and a collapsed
    run warns and sets ``history["collapsed"]``.

    Parameters
    ----------
    data
        A SpatialData (views are computed with ``mad.pp.normalize`` and
        ``mad.pp.cell_views`` defaults when its table has none), an AnnData table with
        ``.uns[views_key]``, a :class:`~madspatial.io.ViewStore` or the path of one.
    mode
        ``"mad"`` (both views with cross-view terms), ``"morphology"`` or
        ``"microenvironment"`` (single-view DINO; only that view is read).
    model
        Backbone preset (``"vit_pico"``, ``"vit_tiny"``, ``"vit_small"``, ``"vit_base"``,
        ``"vit_large"``), a dict of timm ViT options, or a :class:`~madspatial.nn.MADModel`
        to continue training from.
    alpha
        Weight of the cross-view terms.
    epochs
        Passes over the training cells.
    max_steps
        Train for exactly this many steps instead (schedules span them).
    batch_size
        Cells per step and process.
    lr
        Peak learning rate; default ``5e-4 * batch_size * n_processes / 256`` (DINO).
    precision
        ``"auto"`` (default: bf16 autocast where the hardware computes bf16 natively, i.e.
        CUDA GPUs with bf16 and CPUs with AVX512-BF16/AMX; fp32 elsewhere, because emulated
        bf16 is several times slower), ``"bf16"``, ``"fp32"``, or ``"fp16"`` (CUDA only,
        with gradient scaling).
    strategy
        ``"auto"`` (DDP when several processes), ``"ddp"``, ``"fsdp"`` (FSDP2
        ``fully_shard`` per transformer block) or ``"none"``.
    checkpoint_dir
        Folder for checkpoints and the final model (``config.json``,
        ``model.safetensors``, ``history.json``, ``checkpoint.pt``). Default
        ``./mad_models/<mode>_<backbone>_<hash of the run's identity>``: every training
        and model option, the starting weights and a fingerprint of the data (a seeded
        sample of the view pixels, channel names, view sizes, cell count and ids, the
        ``cells=`` selection). Re-running the same call on the same data resumes (or
        returns the finished model) instead of training again; other data or options get
        another folder.
    checkpoint_every
        Steps between checkpoints (default: every epoch, at most every 1000 steps).
    resume
        Continue from the checkpoint in ``checkpoint_dir`` when there is one. A checkpoint
        (or saved model) of another run - any option or the data fingerprint differs - is
        never resumed: it raises an error naming the fields that differ. ``False`` starts
        over (the folder's checkpoint and model are overwritten).
    seed
        Seed of initialisation, sampling and augmentation (default ``mad.settings.seed``).
        On CPU the same seed gives the same numbers.
    device
        ``"cpu"``, ``"cuda"``, ... (default ``mad.settings.device``).
    grad_checkpointing
        Recompute activations in the backward pass (less memory, ~30% slower).
    weights
        Local file of pretrained backbone weights (DINOv2 / timm / reference-MAD layout) to
        initialise from; nothing is downloaded.
    n_prototypes, head_hidden_dim, head_bottleneck_dim
        Projection-head shape (DINOv2 defaults; use e.g. 1024 / 256 / 64 for small data).
    n_global, n_local
        Global crops (teacher and student) and local crops (student) per view.
    teacher_temp
        Teacher temperature at the start and after the warm-up.
    momentum
        EMA momentum of the teacher at the start and the end (cosine).
    koleo_weight
        Weight of the KoLeo regulariser on the student's class tokens (DINOv2: 0.1).
    centering
        How the teacher's targets are centred: ``"center"`` (a running mean subtracted
        before the sharpened softmax, as in the paper and DINO) or ``"sinkhorn"``
        (Sinkhorn-Knopp equipartition of each batch over the prototypes, as in DINOv2).
        On short CPU runs from random weights we saw no gain from Sinkhorn-Knopp
        (benchmarks: see the docs' concepts page).
    num_workers
        DataLoader worker processes reading views ahead of the model.
    table_key
        Table of a SpatialData (default: the one with views, or the only one).
    views_key
        ``.uns`` key written by ``mad.pp.cell_views``.
    cells
        Train on a subset of the table's rows only (e.g. the training split, so that
        held-out cells are never seen in pretraining): a boolean mask of length
        ``n_obs``, an array of integer row indices, the name of a boolean ``obs`` column,
        or ``(obs_column, value)`` / ``(obs_column, [values])``. Only the selected cells'
        views are read (the store is not loaded); the pixel statistics and the held-out
        Recall@K cells come from them, and the selection is part of the run's identity
        (another selection never resumes this run's checkpoint). Default: every cell.
    **train_options
        Further options of :class:`madspatial.train.TrainConfig` (e.g. ``warmup_steps``,
        ``freeze_last_layer_steps``, ``min_lr``, ``weight_decay``, ``n_holdout``,
        ``eval_every``, ``augment`` (dict of MultiCropAugment options), ``head_layers``,
        ``drop_path_rate``, ``clip_grad``, ``student_temp``, ``pixel_stats``). With
        ``pixel_stats="data"`` (default) a new model standardises its input with the
        channel mean and std of the views (microenvironment views when used, 1,024 cells);
        ``"fixed"`` uses 0.5 / 0.25. Fluorescence views are mostly dark, and the fixed
        scale leaves a random-initialised ViT with class tokens that differ by only 4-6%
        between cells, too little for the teacher to be anything but uniform early on.

    Returns
    -------
    The trained :class:`~madspatial.nn.MADModel` (teacher weights, as in DINO), with
    ``.history`` attached. It is saved to ``checkpoint_dir``; when ``data`` has a table,
    ``table.uns["mad"]["model"]`` records that folder (``mad.tl.embed`` uses it by
    default).
    """
    from ..nn import MADModel
    from ..train import TrainConfig, Trainer
    from ..train._data import resolve_cells

    store, table = resolve_views(data, table_key=table_key, views_key=views_key, compute=True)
    rows = resolve_cells(cells, len(store), obs=table.obs if table is not None else None)
    init_model = model if isinstance(model, MADModel) else None
    backbone = init_model.config.backbone if init_model is not None else model
    cfg = TrainConfig(
        mode=mode,
        backbone=backbone,
        alpha=alpha,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        precision=precision,
        strategy=strategy,
        checkpoint_every=checkpoint_every,
        resume=resume,
        seed=settings.seed if seed is None else seed,
        device=device,
        grad_checkpointing=grad_checkpointing,
        weights=str(weights) if weights is not None else None,
        n_prototypes=init_model.config.n_prototypes if init_model else n_prototypes,
        head_hidden_dim=init_model.config.head_hidden_dim if init_model else head_hidden_dim,
        head_bottleneck_dim=(
            init_model.config.head_bottleneck_dim if init_model else head_bottleneck_dim
        ),
        n_global=n_global,
        n_local=n_local,
        teacher_temp=tuple(teacher_temp),
        momentum=tuple(momentum),
        koleo_weight=koleo_weight,
        centering=centering,
        num_workers=num_workers,
        **train_options,
    )
    trainer = Trainer(store, cfg, model=init_model, cells=rows)
    if checkpoint_dir is None:
        checkpoint_dir = default_checkpoint_dir(trainer.identity_digest(), mode, backbone)
    cfg.checkpoint_dir = str(checkpoint_dir)
    result = trainer.fit()
    if table is not None:
        record = dict(table.uns.get(UNS_MAD, {}))
        record[UNS_MODEL] = str(Path(checkpoint_dir).resolve())
        table.uns[UNS_MAD] = record
        added(f"{UNS_MAD}']['{UNS_MODEL}", "uns")
    return result
