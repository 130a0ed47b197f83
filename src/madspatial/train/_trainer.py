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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._constants import MODE_MAD, PATCH_SIZE, VIEW_MICROENVIRONMENT, VIEW_MORPHOLOGY
from .._logging import logger, progress
from .._settings import settings
from .._version import __version__
from .._warnings import warn_user
from ..nn._config import mode_views
from . import _checkpoint as ckpt
from . import _distributed as D
from ._config import PIXEL_STATS as PIXEL_STATS
from ._config import TrainConfig as TrainConfig
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
from ._precision import autocast_dtype, resolve_precision
from ._teacher import ema_update, make_teacher


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


def planned_steps(
    n: int,
    *,
    epochs: int,
    max_steps: int | None,
    batch_size: int,
    n_holdout: int | None = None,
    world_size: int = 1,
) -> int:
    """Return the optimizer steps a run on ``n`` cells will take, before it starts.

    ``max_steps`` if given, else ``epochs`` full batches per rank over the cells left after
    the Recall@K hold-out (what :class:`Trainer` plans; ``tl.pretrain(recipe="auto")``
    decides by it).
    """
    if max_steps:
        return int(max_steps)
    held = holdout_size(n, n_holdout, batch_size, world_size, log=False)
    return int(epochs) * (((n - held) // world_size) // batch_size)


def holdout_size(
    n: int, wanted: int | None, batch_size: int, world_size: int, log: bool = True
) -> int:
    """Return the number of cells held out for Recall@K.

    ``wanted`` (default ``min(256, max(16, n // 10))``), lowered so that one global batch of
    training cells remains; a lowered or empty hold-out is logged at WARNING with the reason
    (never silently).
    """
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


def _local_size(size: int) -> int:
    """Side of a zoomed-in local crop: ~0.44 x the view, a multiple of the patch (70->28, 224->98)."""
    return max(PATCH_SIZE, round(0.44 * size / PATCH_SIZE) * PATCH_SIZE)


class _Run:
    """The state of one :meth:`Trainer.fit` shared by its steps (models, schedules, ...)."""

    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


#: A CPU run projected to take longer than this logs a WARNING naming ``preset="cpu"``.
LONG_CPU_RUN_S = 3600.0


def format_duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.4 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class WallClock:
    """Projects the run's wall time from its first steps and logs it once.

    The first step (compilation, allocator and loader warm-up) is not counted: the
    projection uses the steps after it, up to :attr:`MEASURE` of them.
    """

    MEASURE = 3

    def __init__(self, start: int, total: int, device_type: str, *, log: bool = True) -> None:
        self.start, self.total, self.device_type, self.log = start, total, device_type, log
        self.t_first: float | None = None
        self.projected_s: float | None = None

    def step_done(self, done: int, now: float) -> None:
        """Call after each completed step ``done`` (1-based) ended at ``now`` (perf_counter)."""
        if self.projected_s is not None or not self.log:
            return
        if done == self.start + 1:
            self.t_first = now
            return
        measured = done - self.start - 1
        if self.t_first is None or (measured < self.MEASURE and done < self.total):
            return
        per_step = (now - self.t_first) / measured
        self.projected_s = per_step * (self.total - self.start)
        remaining = per_step * (self.total - done)
        logger.info(
            "MAD pretraining: %.2f s a step, projected wall time of the run ~%s "
            "(%d steps; ~%s left)",
            per_step,
            format_duration(self.projected_s),
            self.total - self.start,
            format_duration(remaining),
        )
        if self.device_type == "cpu" and self.projected_s > LONG_CPU_RUN_S:
            logger.warning(
                "MAD pretraining on CPU is projected to take ~%s (%.1f s a step x %d steps). "
                "The library defaults are the paper's GPU settings; for a model sized for a "
                'CPU use mad.tl.pretrain(..., preset="cpu") (or preset="auto"), or train '
                "fewer steps (max_steps=), or use a CUDA device.",
                format_duration(self.projected_s),
                per_step,
                self.total - self.start,
            )


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
        """Return what must match for a checkpoint (or finished model) to be this run's.

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
        """Return the :class:`~madspatial.nn.MADConfig` of the model this run trains (made once)."""
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
            for name in ("view_heads", "predictor_heads"):
                have, want = getattr(mc, name), getattr(cfg, name)
                if have != want:
                    raise ValueError(
                        f"the starting model has {name}={have}, the run asks for "
                        f"{name}={want}; pass {name}={have} to continue from it, or train a "
                        "new model."
                    )
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
            view_heads=cfg.view_heads,
            predictor_heads=cfg.predictor_heads,
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
        """Run the training, in named steps: data, models, resume, held-out batch, loop, finish."""
        r = _Run(info=info, dev=torch.device(info.device))
        r.strategy = D.resolve_strategy(self.cfg.strategy, info)
        r.mconfig = self.model_config()
        self._check_store(r.mconfig)
        r.views = r.mconfig.views
        self.precision = resolve_precision(self.cfg.precision, r.dev)
        r.amp_dtype = autocast_dtype(self.precision)
        self._setup_data(r)
        self._build_models(r)
        self._resume(r)
        self._held_out_batch(r)
        self._loop(r)
        return self._finish(r)

    # --- data: held-out cells for Recall@K, the rest for training -----------------
    def _setup_data(self, r: _Run) -> None:
        cfg, store, info = self.cfg, self.store, r.info
        n = len(store)
        r.n_holdout = holdout_size(n, cfg.n_holdout, cfg.batch_size, info.world_size, info.is_main)
        rng = np.random.default_rng(derive_seed(cfg.seed, 0xE7A1))
        holdout = np.sort(rng.choice(n, size=r.n_holdout, replace=False)) if r.n_holdout else None
        r.holdout = holdout
        train_idx = np.setdiff1d(np.arange(n), holdout) if r.n_holdout else np.arange(n)
        r.sampler = ChunkBatchSampler(
            train_idx,
            cfg.batch_size,
            seed=cfg.seed,
            chunk_size=store_chunk_size(store),
            positions=storage_positions(store),
            rank=info.rank,
            world_size=info.world_size,
        )
        r.plan = plan = self._plan(r.sampler.batches_per_rank())
        r.total = plan["total_steps"]
        lr = cfg.lr if cfg.lr is not None else cfg.base_lr * cfg.batch_size * info.world_size / 256
        r.lr = lr
        r.sched = Schedules.build(
            r.total,
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
    def _build_models(self, r: _Run) -> None:
        from ..nn import MADLoss, MADModel

        cfg, mconfig, dev = self.cfg, r.mconfig, r.dev
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
        r.student_f = MultiCropForward(student).to(dev)
        r.teacher_f = MultiCropForward(teacher).to(dev)
        r.student_f.train()
        r.teacher_f.eval()
        r.student_w, r.teacher_w = D.wrap_models(r.student_f, r.teacher_f, r.strategy, r.info)
        r.optimizer = build_optimizer(r.student_f)
        r.loss_fn = MADLoss(
            mconfig.n_prototypes,
            mode=cfg.mode,
            alpha=cfg.alpha,
            student_temp=cfg.student_temp,
            center_momentum=cfg.center_momentum,
            centering=cfg.centering,
            view_centers=cfg.view_centers,
            view_heads=mconfig.view_heads,
            predictor_heads=mconfig.predictor_heads,
            cross_terms=cfg.cross_terms,
        ).to(dev)
        r.augment = self._augment(mconfig)
        r.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        recall_views = (
            "morphology<->microenvironment (teacher class tokens)"
            if cfg.mode == MODE_MAD
            else f"{cfg.mode}: two augmented global crops (teacher class tokens)"
        )
        r.history = History(mconfig.n_prototypes, r.n_holdout, recall_views)
        self.history = r.history
        r.run_id = self.identity(r.info.world_size)

    # --- resume ----------------------------------------------------------------
    def _resume(self, r: _Run) -> None:
        cfg = self.cfg
        r.ckpt_dir = ckpt_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        r.start = 0
        if ckpt_dir is None or not cfg.resume:
            return
        state = ckpt.load_checkpoint(ckpt_dir)
        if state is None:
            _check_model_folder(ckpt_dir, r.run_id)
            return
        diffs = identity_mismatch(state.get("run"), r.run_id)
        if diffs:
            raise RunMismatchError(ckpt_dir / ckpt.CHECKPOINT_FILE, diffs)
        self._load_state(state, r.student_f, r.teacher_f, r.optimizer, r.loss_fn)
        r.history = History.from_dict(state["history"])
        self.history = r.history
        r.start = int(state["step"])
        if r.info.is_main:
            logger.info("resuming from %s at step %d / %d", ckpt_dir, r.start, r.total)

    # --- held-out batch ------------------------------------------------------------
    def _held_out_batch(self, r: _Run) -> None:
        r.held = None
        if r.holdout is not None:
            r.held = {
                v: torch.from_numpy(np.ascontiguousarray(a)).to(r.dev)
                for v, a in read_batch(self.store, r.holdout, r.views).items()
            }
        if r.start == 0 and r.held is not None:
            r.history.log_eval(0, self._evaluate_run(r))

    def _evaluate_run(self, r: _Run) -> dict[int, float]:
        return self._evaluate(r.teacher_w, r.held, r.augment, r.amp_dtype, r.dev)

    # --- the loop ------------------------------------------------------------------
    def _loop(self, r: _Run) -> None:
        cfg, info = self.cfg, r.info
        loader = make_loader(self.store, r.views, r.sampler, num_workers=cfg.num_workers)
        bar = progress(
            total=r.total,
            initial=r.start,
            desc=f"MAD pretrain ({cfg.mode})",
            disable=not (info.is_main and settings.show_progress),
        )
        clock = WallClock(r.start, r.total, r.dev.type, log=info.is_main)
        spe = r.plan["steps_per_epoch"]
        it = None
        r.t_last = time.perf_counter()
        try:
            for step in range(r.start, r.total):
                epoch, b = divmod(step, spe)
                if it is None or b == 0:
                    r.sampler.set_epoch(epoch, start_batch=b)
                    it = iterate_batches(loader)
                loss, cps = self._train_step(r, step, epoch, next(it))
                done = step + 1
                self._after_step(r, done)
                clock.step_done(done, r.t_last)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", cells_s=format_rate(cps))
                if self.callback is not None:
                    self.callback(done, self)
        finally:
            bar.close()

    def _train_step(self, r: _Run, step: int, epoch: int, batch) -> tuple[float, float]:
        """One optimisation step; returns the (all-reduced) loss and cells per second."""
        from ..nn import koleo_loss

        cfg, info, dev, views, sched, loss_fn = self.cfg, r.info, r.dev, r.views, r.sched, r.loss_fn
        torch.manual_seed(derive_seed(cfg.seed, step, info.rank, 1))
        gen = torch.Generator(device=dev).manual_seed(derive_seed(cfg.seed, step, info.rank, 2))
        x = {v: batch[v].to(dev, non_blocking=True) for v in views}
        crops = r.augment(x.get(VIEW_MORPHOLOGY), x.get(VIEW_MICROENVIRONMENT), generator=gen)
        sched.apply(r.optimizer, step)
        temp = float(sched.teacher_temp[step])
        autocast = (
            torch.autocast(dev.type, dtype=r.amp_dtype)
            if r.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            with torch.no_grad():
                _, t_logits = r.teacher_w({v: crops[v]["global"] for v in views})
            s_feats, s_logits = r.student_w(
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
            raise TrainingDivergedError(self._nan_message(step, epoch, float(stats[0]), sched, x))
        self._backward_and_update(r, loss, step)
        ent, batch_ent = probs_entropies(
            torch.cat([p for v in views for p in loss_fn.last_teacher_probs[v]])
        )
        view_stats = view_diagnostics(loss_fn, views)
        loss_fn.update_center(t_logits)

        now = time.perf_counter()
        cps = cfg.batch_size * info.world_size / max(now - r.t_last, 1e-9)
        r.t_last = now
        r.history.log_step(
            step=step,
            epoch=epoch,
            loss=float(stats[0]),
            lr=float(sched.lr[step]),
            weight_decay=float(sched.weight_decay[step]),
            momentum=float(sched.momentum[step]),
            teacher_temp=temp,
            teacher_entropy=ent,
            teacher_batch_entropy=batch_ent,
            cells_per_s=cps,
            alpha=loss_fn.alpha,
            **view_stats,
        )
        return float(stats[0]), cps

    def _backward_and_update(self, r: _Run, loss, step: int) -> None:
        """Backward, clip, (frozen prototypes), optimizer step and the teacher's EMA."""
        cfg, optimizer, scaler = self.cfg, r.optimizer, r.scaler
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(r.student_f.parameters(), cfg.clip_grad)
        r.sched.freeze_last_layer(optimizer, step)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        ema_update(r.teacher_f, r.student_f, float(r.sched.momentum[step]))

    def _after_step(self, r: _Run, done: int) -> None:
        """Recall@K and checkpoints on their schedule."""
        plan, total = r.plan, r.total
        if r.held is not None and (done % plan["eval_every"] == 0 or done == total):
            r.history.log_eval(done, self._evaluate_run(r))
        if r.ckpt_dir is not None and (done % plan["checkpoint_every"] == 0 or done == total):
            self._save_state(
                r.ckpt_dir,
                done,
                r.student_f,
                r.teacher_f,
                r.optimizer,
                r.loss_fn,
                r.history,
                r.run_id,
                r.mconfig,
                r.info,
            )

    # --- finish: teacher weights into a plain MADModel, saved on rank 0 -------------
    def _finish(self, r: _Run):
        info = r.info
        for msg in r.history.check_collapse():
            if info.is_main:
                warn_user(f"MAD pretraining: {msg}", RuntimeWarning)
        model = self._export_teacher(
            r.teacher_f, r.mconfig, r.history, r.run_id, r.plan, r.lr, r.strategy
        )
        if r.ckpt_dir is not None:
            if info.is_main:
                model.save(r.ckpt_dir)
            D.barrier(info)
            self.model_dir = r.ckpt_dir
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
            [
                "the folder holds a model without a recorded training identity (not written by "
                "this run, or damaged)"
            ],
        )
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
