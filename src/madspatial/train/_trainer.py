"""The MAD training loop: DINO-style self-distillation of two views into one ViT.

One step::

    uint8 views of B cells (lazy read) -> multi-crop augmentation (torch.Generator)
    teacher(global crops)          -> teacher logits (no grad)
    student(global + local crops)  -> student logits
    MADLoss(student, teacher, T_t) -> backward -> clip 3.0 -> (freeze prototypes early)
    -> AdamW step (lr / weight-decay schedules) -> EMA teacher update -> center update

Determinism: the sampler order is a function of (seed, epoch), the augmentation
generator and the global torch RNG (stochastic depth) are re-seeded from
(seed, step, rank) at every step. A run resumed from a checkpoint therefore
replays exactly the batches and crops the uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._constants import MODE_MAD, PATCH_SIZE, VIEW_MICROENVIRONMENT, VIEW_MORPHOLOGY
from .._logging import logger, progress
from .._settings import settings
from .._version import __version__
from ..nn._loss import CENTERINGS, mode_views
from . import _checkpoint as ckpt
from . import _distributed as D
from ._data import (
    ChunkBatchSampler,
    RowSubset,
    derive_seed,
    iterate_batches,
    make_loader,
    pixel_statistics,
    read_batch,
    resolve_cells,
    storage_positions,
    store_chunk_size,
)
from ._distributed import STRATEGIES
from ._forward import MultiCropForward
from ._history import (
    History,
    cross_view_recall,
    format_rate,
    probs_entropies,
    view_diagnostics,
)
from ._identity import (
    IDENTITY_VERSION,
    RunMismatchError,
    config_identity,
    data_fingerprint,
    file_sha256,
    identity_digest,
    identity_mismatch,
    model_identity,
    state_dict_digest,
)
from ._optim import Schedules, build_optimizer
from ._precision import PRECISIONS, autocast_dtype, resolve_precision
from ._teacher import ema_update, make_teacher
from ._warn import warn_user

#: ``TrainConfig.pixel_stats``: standardise inputs with the data's channel statistics or
#: with MADConfig's fixed 0.5 / 0.25.
PIXEL_STATS = ("data", "fixed")


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Options of a MAD pretraining run (see :func:`madspatial.tl.pretrain` for meanings)."""

    mode: str = MODE_MAD
    backbone: str | dict = "vit_small"
    alpha: float = 1.0
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64
    lr: float | None = None
    base_lr: float = 5e-4
    min_lr: float = 1e-6
    warmup_steps: int | None = None
    weight_decay: tuple[float, float] = (0.04, 0.4)
    momentum: tuple[float, float] = (0.992, 1.0)
    teacher_temp: tuple[float, float] = (0.04, 0.07)
    teacher_temp_warmup_steps: int | None = None
    student_temp: float = 0.1
    center_momentum: float = 0.9
    centering: str = "center"
    view_centers: bool = False
    alpha_warmup_steps: int = 0
    pixel_stats: str = "data"
    freeze_last_layer_steps: int | None = None
    clip_grad: float | None = 3.0
    koleo_weight: float = 0.0
    n_prototypes: int = 65536
    head_layers: int = 3
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    drop_path_rate: float = 0.0
    n_global: int = 2
    n_local: int = 4
    local_morphology_size: int | None = None
    local_microenvironment_size: int | None = None
    augment: dict = field(default_factory=dict)
    precision: str = "auto"
    grad_checkpointing: bool = False
    strategy: str = "auto"
    device: str | None = None
    seed: int = 0
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = True
    n_holdout: int | None = None
    eval_every: int | None = None
    num_workers: int = 0
    weights: str | None = None
    weights_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}.")
        self._validate()
        _int("alpha_warmup_steps", self.alpha_warmup_steps, 0, "0 keeps alpha constant")
        if not isinstance(self.view_centers, bool):
            raise TypeError(f"view_centers must be True or False; got {_show(self.view_centers)}.")
        if self.pixel_stats not in PIXEL_STATS:
            raise ValueError(
                f"pixel_stats must be one of {list(PIXEL_STATS)}, got {self.pixel_stats!r}."
            )
        if self.centering not in CENTERINGS:
            raise ValueError(
                f"centering must be one of {list(CENTERINGS)}, got {self.centering!r}."
            )
        self.weight_decay = tuple(self.weight_decay)
        self.momentum = tuple(self.momentum)
        self.teacher_temp = tuple(self.teacher_temp)

    def _validate(self) -> None:
        """Refuse impossible options, naming the option, the value, the rule and a fix."""
        mode_views(self.mode)
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {list(STRATEGIES)}; got {_show(self.strategy)}."
            )
        _int("epochs", self.epochs, 0 if self.max_steps else 1, "e.g. 10")
        _int("max_steps", self.max_steps, 1, "e.g. 1000, or None to train for epochs=", True)
        _int("batch_size", self.batch_size, 2, "e.g. 64 cells per process")
        _int("n_global", self.n_global, 1, "DINO uses 2")
        _int("n_local", self.n_local, 0, "e.g. 4, or 0 for no local crops")
        _int("n_prototypes", self.n_prototypes, 1, "e.g. 65536, or 1024 for small data")
        _int("head_layers", self.head_layers, 1, "DINO uses 3")
        _int("head_hidden_dim", self.head_hidden_dim, 1, "e.g. 2048")
        _int("head_bottleneck_dim", self.head_bottleneck_dim, 1, "e.g. 256")
        _int("seed", self.seed, None, "e.g. 0")
        for name in ("warmup_steps", "teacher_temp_warmup_steps", "freeze_last_layer_steps"):
            _int(name, getattr(self, name), 0, "or None for the default share of the run", True)
        _int("checkpoint_every", self.checkpoint_every, 1, "steps, or None: every epoch", True)
        _int("eval_every", self.eval_every, 1, "steps, or None: 20 evaluations a run", True)
        _int("n_holdout", self.n_holdout, 0, "e.g. 256, or 0 for no Recall@K", True)
        _int("num_workers", self.num_workers, 0, "0 reads in a background thread")
        _num("lr", self.lr, "> 0", lambda v: v > 0, "e.g. 5e-4, or None for the DINO rule", True)
        _num("base_lr", self.base_lr, "> 0", lambda v: v > 0, "DINO uses 5e-4")
        _num("min_lr", self.min_lr, ">= 0", lambda v: v >= 0, "e.g. 1e-6")
        _num(
            "alpha",
            self.alpha,
            ">= 0",
            lambda v: v >= 0,
            "the paper uses 1; 0 drops the cross-view terms",
        )
        _num("student_temp", self.student_temp, "> 0", lambda v: v > 0, "DINO uses 0.1")
        _num(
            "center_momentum", self.center_momentum, "in [0, 1)", lambda v: 0 <= v < 1,
            "DINO uses 0.9",
        )  # fmt: skip
        _num("clip_grad", self.clip_grad, ">= 0", lambda v: v >= 0, "3.0; 0 or None: off", True)
        _num("koleo_weight", self.koleo_weight, ">= 0", lambda v: v >= 0, "DINOv2 uses 0.1")
        _num(
            "drop_path_rate", self.drop_path_rate, "in [0, 1)", lambda v: 0 <= v < 1,
            "e.g. 0.1",
        )  # fmt: skip
        _pair("momentum", self.momentum, "in [0, 1]", lambda v: 0 <= v <= 1, "(0.992, 1.0)")
        _pair("teacher_temp", self.teacher_temp, "> 0", lambda v: v > 0, "(0.04, 0.07)")
        _pair("weight_decay", self.weight_decay, ">= 0", lambda v: v >= 0, "(0.04, 0.4)")
        for name in ("local_morphology_size", "local_microenvironment_size"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < PATCH_SIZE or v % PATCH_SIZE):
                raise ValueError(
                    f"{name} must be a positive int multiple of {PATCH_SIZE} (e.g. 28), or None "
                    f"for ~0.44 x the view; got {_show(v)}."
                )
        if not isinstance(self.augment, dict):
            raise TypeError(
                "augment must be a dict of MultiCropAugment options (e.g. {'jitter': 0.1}); "
                f"got {_show(self.augment)}."
            )

    def identity_fields(self) -> dict[str, Any]:
        """Every field that changes the run's numbers (all but :data:`NOT_IDENTITY`)."""
        return config_identity(self)


def holdout_size(n: int, wanted: int | None, batch_size: int, world_size: int,
                 log: bool = True) -> int:  # fmt: skip
    """Cells held out for Recall@K: ``wanted`` (default ``min(256, max(16, n // 10))``),
    lowered so that one global batch of training cells remains; a lowered or empty
    hold-out is logged at WARNING with the reason (never silently)."""
    default = wanted is None
    want = min(256, max(16, n // 10)) if default else int(wanted)
    room = n - batch_size * world_size  # cells left after one global batch of training
    got = max(0, min(want, room))
    if log and got < want:
        batch = f"batch_size={batch_size}" + (
            f" x {world_size} processes" if world_size > 1 else ""
        )
        if got == 0:
            logger.warning(
                "no held-out cells, so no Recall@K will be computed: the %d training cells are "
                "all needed to fill one batch (%s). Lower batch_size to at most %d to hold out "
                "%d cells for Recall@K.",
                n,
                batch,
                max(2, (n - want) // world_size),
                want,
            )
        else:
            logger.warning(
                "holding out %d cells for Recall@K instead of %d%s: %d cells and %s leave room "
                "for no more (Recall@K on few cells is noisy; lower batch_size to keep more).",
                got,
                want,
                " (the default)" if default else f" (n_holdout={wanted})",
                n,
                batch,
            )
    return got


def _show(v: Any) -> str:
    return f"{v!r} ({type(v).__name__})"


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _int(name: str, v: Any, low: int | None, fix: str, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not _is_int(v) or (low is not None and v < low):
        rule = "an int" if low is None else f"an int >= {low}"
        raise ValueError(f"{name} must be {rule} ({fix}); got {_show(v)}.")


def _num(name: str, v: Any, rule: str, ok, fix: str, optional: bool = False) -> None:
    if v is None and optional:
        return
    good = isinstance(v, int | float | np.number) and not isinstance(v, bool)
    if not good or not math.isfinite(float(v)) or not ok(float(v)):
        raise ValueError(f"{name} must be a number {rule} ({fix}); got {_show(v)}.")


def _pair(name: str, v: Any, rule: str, ok, fix: str) -> None:
    vals = tuple(v) if isinstance(v, list | tuple) else ()
    good = len(vals) == 2 and all(
        isinstance(x, int | float | np.number) and not isinstance(x, bool) and math.isfinite(x)
        for x in vals
    )
    if not good or not all(ok(float(x)) for x in vals):
        raise ValueError(
            f"{name} must be a pair (start, end) of numbers {rule} (e.g. {fix}); got {_show(v)}."
        )


def _local_size(size: int) -> int:
    """Side of a zoomed-in local crop: ~0.44 x the view, a multiple of the patch (70->28, 224->98)."""
    return max(PATCH_SIZE, round(0.44 * size / PATCH_SIZE) * PATCH_SIZE)


class Trainer:
    """Self-distillation of a :class:`~madspatial.nn.MADModel` on a view store.

    Parameters
    ----------
    store
        A view store (``mad.io.read_views``) or anything with its interface.
    config
        The run's options.
    model
        Start from this model's weights (and architecture) instead of a fresh one.
    callback
        ``callback(step, trainer)`` after every completed step (e.g. to stop early).
    cells
        Train on these store rows only (a boolean mask or integer row indices; see
        :func:`madspatial.tl.pretrain`): only they are read, and the pixel statistics and
        the held-out Recall@K cells come from them.
    """

    def __init__(
        self,
        store,
        config: TrainConfig,
        *,
        model=None,
        callback: Callable[[int, Trainer], None] | None = None,
        cells=None,
    ) -> None:
        self.cells = resolve_cells(cells, len(store))
        self.full_store = store
        self.store = store if self.cells is None else RowSubset(store, self.cells)
        self.cfg = config
        self.init_model = model
        self.callback = callback
        self.history: History | None = None
        self.model_dir: Path | None = None
        self.precision = config.precision  # resolved ("auto" -> bf16/fp32) in fit()
        self._mconfig = None
        self._inputs_id: dict[str, Any] | None = None

    # ------------------------------------------------------------------ identity
    def identity(self, world_size: int | None = None) -> dict[str, Any]:
        """What must match for a checkpoint (or finished model) to be this run's.

        Every TrainConfig field but :data:`~madspatial.train._identity.NOT_IDENTITY`, the
        model's config (pixel statistics included), the starting weights and a fingerprint
        of the data (see :mod:`madspatial.train._identity`). ``world_size`` defaults to
        ``WORLD_SIZE`` of the environment (``torchrun``), else 1.
        """
        import os

        cfg = self.cfg
        if world_size is None:
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
        mconfig = self.model_config()
        if self._inputs_id is None:  # reading and hashing the inputs once is enough
            weights = cfg.weights
            self._inputs_id = {
                "weights_file": (
                    file_sha256(weights)
                    if weights is not None and Path(weights).is_file()
                    else None
                ),
                "init_model": (
                    state_dict_digest(self.init_model.state_dict())
                    if self.init_model is not None
                    else None
                ),
                "data": data_fingerprint(self.store, mconfig.views, self.cells),
            }
        return {
            "identity_version": IDENTITY_VERSION,
            "config": config_identity(cfg),
            "model": model_identity(mconfig),
            **self._inputs_id,
            "world_size": int(world_size),
        }

    def identity_digest(self, world_size: int | None = None) -> str:
        """Short hash of :meth:`identity` (names the default checkpoint folder)."""
        return identity_digest(self.identity(world_size))

    # ------------------------------------------------------------------ set-up
    def model_config(self):
        """The :class:`~madspatial.nn.MADConfig` of the model this run trains (computed once)."""
        if self._mconfig is None:
            if len(self.store) == 0:
                raise ValueError("the view store holds no cells; run mad.pp.cell_views first.")
            self._mconfig = self._model_config()
        return self._mconfig

    def _model_config(self):
        from ..nn import MADConfig

        cfg, store = self.cfg, self.store
        if self.init_model is not None:
            mc = MADConfig.from_dict(self.init_model.config.to_dict())
            if mc.mode != cfg.mode:
                mc.mode = cfg.mode
            return mc
        pixel_mean = pixel_std = None  # MADConfig's fixed default (0.5 / 0.25)
        if cfg.pixel_stats == "data":
            pixel_mean, pixel_std = pixel_statistics(
                store, mode_views(cfg.mode), seed=derive_seed(cfg.seed, 0, 0, 3)
            )
        return MADConfig(
            backbone=cfg.backbone,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            in_chans=int(store.n_channels),
            channel_names=list(store.channel_names),
            mode=cfg.mode,
            morphology_size=int(store.morphology_size),
            microenvironment_size=int(store.microenvironment_size),
            head_layers=cfg.head_layers,
            head_hidden_dim=cfg.head_hidden_dim,
            head_bottleneck_dim=cfg.head_bottleneck_dim,
            n_prototypes=cfg.n_prototypes,
            drop_path_rate=cfg.drop_path_rate,
            metadata={"view_store": _store_attrs(store)},
        )

    def _check_store(self, mconfig) -> None:
        store = self.store
        if len(store) == 0:
            raise ValueError("the view store holds no cells; run mad.pp.cell_views first.")
        if int(store.n_channels) != mconfig.in_chans:
            raise ValueError(
                f"the model expects {mconfig.in_chans} channels {mconfig.channel_names}, the view "
                f"store has {store.n_channels} {list(store.channel_names)}; recompute the views "
                "with the model's channels or train a new model."
            )
        if list(store.channel_names) != list(mconfig.channel_names):
            warn_user(
                f"channel names differ: model {mconfig.channel_names}, views "
                f"{list(store.channel_names)}; assuming the same channel order."
            )
        for view, size in (
            (VIEW_MORPHOLOGY, store.morphology_size),
            (VIEW_MICROENVIRONMENT, store.microenvironment_size),
        ):
            if view in mconfig.views and int(size) % PATCH_SIZE:
                raise ValueError(
                    f"{view} views are {size}x{size} px, not a multiple of the patch size "
                    f"{PATCH_SIZE}; recompute them with mad.pp.cell_views."
                )

    def _augment(self, mconfig):
        from ..nn import MultiCropAugment

        cfg = self.cfg
        ms, es = mconfig.morphology_size, mconfig.microenvironment_size
        kwargs = dict(
            morphology_size=ms,
            microenvironment_size=es,
            n_global=cfg.n_global,
            n_local=cfg.n_local,
            local_morphology_size=cfg.local_morphology_size or _local_size(ms),
            local_microenvironment_size=cfg.local_microenvironment_size or _local_size(es),
        )
        kwargs.update(cfg.augment)
        return MultiCropAugment(**kwargs)

    def _plan(self, steps_per_epoch: int) -> dict[str, int]:
        cfg = self.cfg
        total = cfg.max_steps or cfg.epochs * steps_per_epoch
        plan = {
            "steps_per_epoch": steps_per_epoch,
            "total_steps": total,
            # DINO: 10 of 100 epochs warm-up, teacher temperature over 30, prototypes
            # frozen in epoch 1; shortened proportionally for short runs
            "warmup_steps": (
                cfg.warmup_steps if cfg.warmup_steps is not None else max(1, round(0.1 * total))
            ),
            "teacher_temp_warmup_steps": (
                cfg.teacher_temp_warmup_steps
                if cfg.teacher_temp_warmup_steps is not None
                else max(1, round(0.3 * total))
            ),
            "freeze_last_layer_steps": (
                cfg.freeze_last_layer_steps
                if cfg.freeze_last_layer_steps is not None
                else min(steps_per_epoch, total // 10)
            ),
            "checkpoint_every": cfg.checkpoint_every or max(1, min(steps_per_epoch, 1000)),
            "eval_every": cfg.eval_every or max(1, math.ceil(total / 20)),
        }
        return plan

    # ------------------------------------------------------------------ run
    def fit(self):
        """Train; returns the teacher as a :class:`~madspatial.nn.MADModel` (on CPU)."""
        cfg = self.cfg
        device = settings.resolve_device(cfg.device)
        info = D.init_distributed(device)
        try:
            # the user's global RNG is restored afterwards: we reseed it at every step
            devices = (
                [torch.device(info.device).index or 0] if info.device.startswith("cuda") else []
            )
            with torch.random.fork_rng(devices=devices):
                return self._fit(info)
        finally:
            D.cleanup(info)

    def _fit(self, info: D.DistInfo):
        from ..nn import MADLoss, MADModel, koleo_loss

        cfg, store = self.cfg, self.store
        dev = torch.device(info.device)
        strategy = D.resolve_strategy(cfg.strategy, info)
        mconfig = self.model_config()
        self._check_store(mconfig)
        views = mconfig.views
        precision = resolve_precision(cfg.precision, dev)
        self.precision = precision
        amp_dtype = autocast_dtype(precision)

        # --- data: held-out cells for Recall@K, the rest for training -----------------
        n = len(store)
        n_holdout = holdout_size(n, cfg.n_holdout, cfg.batch_size, info.world_size, info.is_main)
        rng = np.random.default_rng(derive_seed(cfg.seed, 0xE7A1))
        holdout = np.sort(rng.choice(n, size=n_holdout, replace=False)) if n_holdout else None
        train_idx = np.setdiff1d(np.arange(n), holdout) if n_holdout else np.arange(n)
        sampler = ChunkBatchSampler(
            train_idx,
            cfg.batch_size,
            seed=cfg.seed,
            chunk_size=store_chunk_size(store),
            positions=storage_positions(store),
            rank=info.rank,
            world_size=info.world_size,
        )
        plan = self._plan(sampler.batches_per_rank())
        total = plan["total_steps"]
        spe = plan["steps_per_epoch"]
        lr = cfg.lr if cfg.lr is not None else cfg.base_lr * cfg.batch_size * info.world_size / 256
        sched = Schedules.build(
            total,
            lr=lr,
            min_lr=min(cfg.min_lr, lr),
            warmup_steps=plan["warmup_steps"],
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            teacher_temp=cfg.teacher_temp,
            teacher_temp_warmup_steps=plan["teacher_temp_warmup_steps"],
            freeze_last_layer_steps=plan["freeze_last_layer_steps"],
        )

        # --- models ------------------------------------------------------------------
        torch.manual_seed(derive_seed(cfg.seed, 0x1A17))  # identical initial weights on all ranks
        student = MADModel(
            mconfig,
            weights=cfg.weights,
            weights_prefix=cfg.weights_prefix,
            grad_checkpointing=cfg.grad_checkpointing,
        )
        if self.init_model is not None:
            student.load_state_dict(self.init_model.state_dict())
        teacher = make_teacher(student)
        student_f = MultiCropForward(student).to(dev)
        teacher_f = MultiCropForward(teacher).to(dev)
        student_f.train()
        teacher_f.eval()
        student_w, teacher_w = D.wrap_models(student_f, teacher_f, strategy, info)
        optimizer = build_optimizer(student_f)
        loss_fn = MADLoss(
            mconfig.n_prototypes,
            mode=cfg.mode,
            alpha=cfg.alpha,
            student_temp=cfg.student_temp,
            center_momentum=cfg.center_momentum,
            centering=cfg.centering,
            view_centers=cfg.view_centers,
        ).to(dev)
        augment = self._augment(mconfig)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        recall_views = (
            "morphology<->microenvironment (teacher class tokens)"
            if cfg.mode == MODE_MAD
            else f"{cfg.mode}: two augmented global crops (teacher class tokens)"
        )
        history = History(mconfig.n_prototypes, n_holdout, recall_views)
        self.history = history
        run_id = self.identity(info.world_size)

        # --- resume ----------------------------------------------------------------
        ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        start = 0
        if ckpt_dir is not None and cfg.resume:
            state = ckpt.load_checkpoint(ckpt_dir)
            if state is None:
                _check_model_folder(ckpt_dir, run_id)
            if state is not None:
                diffs = identity_mismatch(state.get("run"), run_id)
                if diffs:
                    raise RunMismatchError(ckpt_dir / ckpt.CHECKPOINT_FILE, diffs)
                self._load_state(state, student_f, teacher_f, optimizer, loss_fn)
                history = History.from_dict(state["history"])
                self.history = history
                start = int(state["step"])
                if info.is_main:
                    logger.info("resuming from %s at step %d / %d", ckpt_dir, start, total)

        # --- held-out batch ------------------------------------------------------------
        held = None
        if holdout is not None:
            held = {
                v: torch.from_numpy(np.ascontiguousarray(a)).to(dev)
                for v, a in read_batch(store, holdout, views).items()
            }
        if start == 0 and held is not None:
            history.log_eval(0, self._evaluate(teacher_w, held, augment, amp_dtype, dev))

        loader = make_loader(store, views, sampler, num_workers=cfg.num_workers)
        bar = progress(
            total=total,
            initial=start,
            desc=f"MAD pretrain ({cfg.mode})",
            disable=not (info.is_main and settings.show_progress),
        )
        cells_per_step = cfg.batch_size * info.world_size
        it = None
        t_last = time.perf_counter()
        try:
            for step in range(start, total):
                epoch, b = divmod(step, spe)
                if it is None or b == 0:
                    sampler.set_epoch(epoch, start_batch=b)
                    it = iterate_batches(loader)
                batch = next(it)
                torch.manual_seed(derive_seed(cfg.seed, step, info.rank, 1))
                gen = torch.Generator(device=dev).manual_seed(
                    derive_seed(cfg.seed, step, info.rank, 2)
                )
                x = {v: batch[v].to(dev, non_blocking=True) for v in views}
                crops = augment(x.get(VIEW_MORPHOLOGY), x.get(VIEW_MICROENVIRONMENT), generator=gen)
                sched.apply(optimizer, step)
                temp = float(sched.teacher_temp[step])
                autocast = (
                    torch.autocast(dev.type, dtype=amp_dtype)
                    if amp_dtype is not None
                    else contextlib.nullcontext()
                )
                with autocast:
                    with torch.no_grad():
                        _, t_logits = teacher_w({v: crops[v]["global"] for v in views})
                    s_feats, s_logits = student_w(
                        {v: crops[v]["global"] + crops[v]["local"] for v in views}
                    )
                s_logits = {v: [z.float() for z in zs] for v, zs in s_logits.items()}
                t_logits = {v: [z.float() for z in zs] for v, zs in t_logits.items()}
                if step == 0:
                    # Warm-start the running center at the first batch's teacher mean. With
                    # DINO's zero init the first ~1/(1 - center_momentum) steps compare the
                    # student with an uncentred, artificially peaked teacher, which makes the
                    # loss start low and rise for reasons unrelated to learning.
                    loss_fn.center.zero_()
                    loss_fn.update_center(t_logits)
                    loss_fn.center.div_(1 - loss_fn.center_momentum)
                if cfg.alpha_warmup_steps:  # cross-view terms ramped in from 0
                    loss_fn.alpha = cfg.alpha * min(1.0, step / cfg.alpha_warmup_steps)
                loss = loss_fn(s_logits, t_logits, temp)
                if cfg.koleo_weight:
                    for v in views:
                        for f in s_feats[v][: cfg.n_global]:
                            loss = loss + cfg.koleo_weight * koleo_loss(f.float()) / (
                                len(views) * cfg.n_global
                            )
                # one all-reduce per step: mean loss for the log, and every rank stops together
                stats = D.all_reduce_mean(
                    torch.stack([loss.detach(), (~torch.isfinite(loss.detach())).float()]), info
                )
                if stats[1] > 0:
                    raise TrainingDivergedError(
                        self._nan_message(step, epoch, float(stats[0]), sched, x)
                    )
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                else:
                    loss.backward()
                if cfg.clip_grad:
                    torch.nn.utils.clip_grad_norm_(student_f.parameters(), cfg.clip_grad)
                sched.freeze_last_layer(optimizer, step)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                m = float(sched.momentum[step])
                ema_update(teacher_f, student_f, m)
                ent, batch_ent = probs_entropies(
                    torch.cat([p for v in views for p in loss_fn.last_teacher_probs[v]])
                )
                view_stats = view_diagnostics(loss_fn, views)
                loss_fn.update_center(t_logits)

                now = time.perf_counter()
                cps = cells_per_step / max(now - t_last, 1e-9)
                t_last = now
                history.log_step(
                    step=step,
                    epoch=epoch,
                    loss=float(stats[0]),
                    lr=float(sched.lr[step]),
                    weight_decay=float(sched.weight_decay[step]),
                    momentum=m,
                    teacher_temp=temp,
                    teacher_entropy=ent,
                    teacher_batch_entropy=batch_ent,
                    cells_per_s=cps,
                    alpha=loss_fn.alpha,
                    **view_stats,
                )
                done = step + 1
                if held is not None and (done % plan["eval_every"] == 0 or done == total):
                    history.log_eval(done, self._evaluate(teacher_w, held, augment, amp_dtype, dev))
                if ckpt_dir is not None and (done % plan["checkpoint_every"] == 0 or done == total):
                    self._save_state(
                        ckpt_dir,
                        done,
                        student_f,
                        teacher_f,
                        optimizer,
                        loss_fn,
                        history,
                        run_id,
                        mconfig,
                        info,
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{float(stats[0]):.4f}", cells_s=format_rate(cps))
                if self.callback is not None:
                    self.callback(done, self)
        finally:
            bar.close()

        # --- finish: teacher weights into a plain MADModel, saved on rank 0 -------------
        for msg in history.check_collapse():
            if info.is_main:
                warn_user(f"MAD pretraining: {msg}", RuntimeWarning)
        model = self._export_teacher(teacher_f, mconfig, history, run_id, plan, lr, strategy)
        if ckpt_dir is not None:
            if info.is_main:
                model.save(ckpt_dir)
            D.barrier(info)
            self.model_dir = ckpt_dir
        return model

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def _evaluate(self, teacher_w, held, augment, amp_dtype, dev) -> dict[int, float]:
        """Cross-view Recall@K of teacher class tokens on the held-out cells (no augmentation)."""
        cfg = self.cfg
        autocast = (
            torch.autocast(dev.type, dtype=amp_dtype)
            if amp_dtype is not None
            else contextlib.nullcontext()
        )
        if cfg.mode == MODE_MAD:
            crops = {v: [held[v].float().div(255.0)] for v in held}
            with autocast:
                feats, _ = teacher_w(crops, with_head=False)
            a, b = feats[VIEW_MORPHOLOGY][0], feats[VIEW_MICROENVIRONMENT][0]
        else:
            # one view: retrieve a cell's second augmented global crop with its first
            gen = torch.Generator(device=dev).manual_seed(derive_seed(cfg.seed, 0xE7A1, 2))
            x = held[cfg.mode]
            aug = augment(
                x if cfg.mode == VIEW_MORPHOLOGY else None,
                x if cfg.mode == VIEW_MICROENVIRONMENT else None,
                generator=gen,
            )[cfg.mode]["global"]
            pair = [aug[0], aug[1 % len(aug)]]
            with autocast:
                feats, _ = teacher_w({cfg.mode: pair}, with_head=False)
            a, b = feats[cfg.mode]
        return cross_view_recall(a.float(), b.float())

    def _nan_message(self, step, epoch, loss, sched, x) -> str:
        empty = {v: int((t.reshape(t.shape[0], -1).amax(1) == 0).sum()) for v, t in x.items()}
        causes = [
            f"learning rate too high (lr at this step {sched.lr[step]:.3g}; try lr=... 10x lower)",
        ]
        if self.precision == "fp16":
            causes.append("fp16 overflow (use precision='bf16' or 'fp32')")
        elif self.precision == "bf16":
            causes.append("low precision (try precision='fp32' to rule it out)")
        causes.append(
            "empty views (all-zero cells in this batch: "
            + ", ".join(f"{v} {k}/{x[v].shape[0]}" for v, k in empty.items())
            + "; check mad.pp.cell_views and the segmentation)"
        )
        causes.append(f"teacher temperature {sched.teacher_temp[step]:.3g} too low")
        return (
            f"MAD pretraining diverged: loss is {loss} at step {step} (epoch {epoch}). "
            "Likely causes: " + "; ".join(causes) + "."
        )

    def _full_state(self, module, info) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        if not info.distributed:
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        return get_model_state_dict(
            module, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

    def _save_state(
        self,
        ckpt_dir,
        step,
        student_f,
        teacher_f,
        optimizer,
        loss_fn,
        history,
        run_id,
        mconfig,
        info,
    ) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        # collectives (FSDP gathers) run on every rank; only rank 0 writes
        student_sd = self._full_state(student_f, info)
        teacher_sd = self._full_state(teacher_f, info)
        optim_sd = get_optimizer_state_dict(
            student_f,
            optimizer,
            options=StateDictOptions(full_state_dict=True, cpu_offload=info.distributed),
        )
        if info.is_main:
            ckpt.save_checkpoint(
                {
                    "step": int(step),
                    "student": student_sd,
                    "teacher": teacher_sd,
                    "optimizer": optim_sd,
                    "center": loss_fn.center.detach().cpu().clone(),
                    "rng": ckpt.get_rng_state(),
                    "history": history.to_dict(),
                    "run": run_id,
                    "model_config": mconfig.to_dict(),
                    "madspatial": __version__,
                },
                ckpt_dir,
            )
        D.barrier(info)

    def _load_state(self, state, student_f, teacher_f, optimizer, loss_fn) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True)
        set_model_state_dict(student_f, state["student"], options=opts)
        set_model_state_dict(teacher_f, state["teacher"], options=opts)
        # strict=False: parameters frozen so far (the prototypes in the first steps) have no
        # optimizer state yet, exactly as in the uninterrupted run
        set_optimizer_state_dict(
            student_f,
            optimizer,
            state["optimizer"],
            options=StateDictOptions(full_state_dict=True, strict=False),
        )
        # ... but torch fills missing states with a zero-gradient "initialisation" step, which
        # would start those parameters' Adam step count at 1 instead of 0: drop them again
        saved = set(state["optimizer"].get("state", {}))
        for name, p in student_f.named_parameters():
            if p in optimizer.state and name not in saved:
                del optimizer.state[p]
        loss_fn.center.copy_(state["center"].to(loss_fn.center.device))
        ckpt.set_rng_state(state["rng"])

    def _export_teacher(self, teacher_f, mconfig, history, run_id, plan, lr, strategy):
        from ..nn import MADConfig, MADModel

        if strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
            )

            # all-gather: every rank returns the same full model
            sd = get_model_state_dict(teacher_f, options=StateDictOptions(full_state_dict=True))
        else:  # the teacher is never wrapped by DDP: every rank holds the same full copy
            sd = teacher_f.state_dict()
        sd = {k.removeprefix("model."): v.detach().cpu() for k, v in sd.items()}
        config = MADConfig.from_dict(mconfig.to_dict())
        config.metadata = dict(
            config.metadata,
            training={
                **run_id["config"],
                "n_cells": run_id["data"]["n_cells"],
                "world_size": run_id["world_size"],
                **plan,
                "lr": lr,
                "precision": self.precision,
                "identity_digest": identity_digest(run_id),
                "identity": run_id,
            },
        )
        model = MADModel(config)
        model.load_state_dict(sd)
        model.history = history.to_dict()
        return model.eval()


def _check_model_folder(ckpt_dir: Path, run_id: dict[str, Any]) -> None:
    """Refuse to overwrite (or stand for) a saved model of another run in ``ckpt_dir``."""
    import json

    from .._constants import MODEL_CONFIG_FILE

    path = ckpt_dir / MODEL_CONFIG_FILE
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
        training = saved.get("metadata", {}).get("training", {})
    except (OSError, ValueError, AttributeError):
        training = None
    if not isinstance(training, dict) or "identity" not in training:
        raise RunMismatchError(
            path,
            ["the folder holds a model without a recorded training identity (not written by "
             "this run, or damaged)"],
        )  # fmt: skip
    diffs = identity_mismatch(training["identity"], run_id)
    if diffs:
        raise RunMismatchError(path, diffs)


def _store_attrs(store) -> dict[str, Any]:
    attrs = dict(getattr(store, "attrs", {}) or {})
    keep = {}
    for k, v in attrs.items():
        if isinstance(v, str | int | float | bool) or v is None:
            keep[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v):
            keep[k] = list(v)
    if getattr(store, "path", None):
        keep["path"] = str(store.path)
    keep["n_cells"] = len(store)
    return keep


def train_config_fields() -> list[str]:
    return list(asdict(TrainConfig()).keys())
