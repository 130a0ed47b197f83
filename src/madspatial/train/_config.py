"""``TrainConfig``, the options of a pretraining run, and the presets (torch-free).

The single source of the training options: their defaults (the dataclass fields), their
descriptions (:data:`TRAIN_OPTION_DOCS`, rendered into ``TrainConfig``'s and
``tl.pretrain``'s docstrings and the command line's help), their choices (``Literal`` types
from :mod:`madspatial._constants`) and their validation (:meth:`TrainConfig._validate`).
Nothing here imports torch, so ``madspatial pretrain --help`` does not either.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._constants import (
    CENTERINGS,
    CROSS_TERMS,
    MODE_MAD,
    PATCH_SIZE,
    PIXEL_STATS,
    PRECISIONS,
    PRESET_NAMES,
    RECIPE_NAMES,
    STRATEGIES,
    Centering,
    CrossTerms,
    Mode,
    PixelStats,
    Precision,
    Strategy,
)
from .._docs import doc_params
from ..nn._config import MADConfig, mode_views
from ._identity import config_identity


def render_params(docs: dict[str, str], names: tuple[str, ...] | list[str] | None = None) -> str:
    """numpy-docstring ``Parameters`` entries (``name`` + indented text) for ``names``."""
    import textwrap

    out = []
    for name in docs if names is None else names:
        out.append(name)
        if "\n" in docs[name]:  # laid out by hand (lists, paragraphs): kept as written
            out.extend("    " + line if line else "" for line in docs[name].split("\n"))
            continue
        out.extend(
            textwrap.wrap(
                docs[name],
                width=84,
                initial_indent="    ",
                subsequent_indent="    ",
                break_on_hyphens=False,
            )
        )
    return "\n".join(out)


#: Description of every TrainConfig field, written once: ``TrainConfig``'s docstring, the
#: ``tl.pretrain`` docstring (the options it names) and ``madspatial pretrain --help``
#: render it. Keys are field names in field order; tests check that every field has one.
TRAIN_OPTION_DOCS: dict[str, str] = {
    "mode": (
        '``"mad"`` (both views with cross-view terms), ``"morphology"`` or '
        '``"microenvironment"`` (single-view DINO; only that view is read).'
    ),
    "backbone": (
        'Backbone preset (``"vit_pico"``, ``"vit_tiny"``, ``"vit_small"``, ``"vit_base"``, '
        '``"vit_large"``) or a dict of timm ViT options.'
    ),
    "alpha": "Weight of the cross-view terms.",
    "epochs": "Passes over the training cells.",
    "max_steps": "Train for exactly this many steps instead (schedules span them).",
    "batch_size": "Cells per step and process.",
    "lr": "Peak learning rate; default ``base_lr * batch_size * n_processes / 256`` (DINO).",
    "base_lr": "Learning rate per 256 cells when ``lr`` is None (DINO: 5e-4).",
    "min_lr": "Learning rate at the end of the cosine decay.",
    "warmup_steps": "Steps of linear learning-rate warm-up (default 10% of the run).",
    "weight_decay": "AdamW weight decay at the start and the end (cosine; not on biases, norms and tokens).",
    "momentum": "EMA momentum of the teacher at the start and the end (cosine).",
    "teacher_temp": "Teacher temperature at the start and after the warm-up.",
    "teacher_temp_warmup_steps": "Steps of teacher-temperature warm-up (default 30% of the run).",
    "student_temp": "Student temperature.",
    "center_momentum": "Momentum of the teacher's running center.",
    "centering": (
        'How the teacher\'s targets are centred: ``"center"`` (a running mean subtracted '
        'before the sharpened softmax, as in the paper and DINO) or ``"sinkhorn"`` '
        "(Sinkhorn-Knopp equipartition of each batch over the prototypes, as in DINOv2). "
        "On short CPU runs from random weights we saw no gain from Sinkhorn-Knopp "
        "(benchmarks: see the docs' concepts page)."
    ),
    "view_centers": (
        "One running center per view instead of one shared center (the two views' mean "
        "teacher outputs differ). Measured on the synthetic tissue: it does not lift the "
        "MAD teacher out of its near-uniform state (benchmarks/results/collapse.md)."
    ),
    "cross_terms": (
        '``"both"`` cross-view terms (the paper\'s), or one direction: '
        '``"to_microenvironment"`` (the microenvironment student learns the morphology '
        "teacher, which its view can predict: the cell is in its centre) or "
        '``"to_morphology"`` (the reverse; the morphology view cannot see the niche).'
    ),
    "view_heads": (
        "One projection head per view (``mode='mad'``): each cross-view term asks one "
        "view's crops to predict the other view's teacher in that view's own prototypes, "
        "instead of one shared head for both (the paper's)."
    ),
    "predictor_heads": (
        "With ``view_heads``: one predictor head per view scores the other view's crops "
        "in the cross-view terms, so those terms cannot flatten the head that makes a "
        "view's teacher."
    ),
    "alpha_warmup_steps": (
        "Ramp the cross-view weight from 0 to ``alpha`` over this many steps (0: constant "
        "alpha, the paper's)."
    ),
    "pixel_stats": (
        '``"data"``: a new model standardises its input with the channel mean and std of '
        'the views (microenvironment views when used, 1,024 cells); ``"fixed"`` uses '
        "0.5 / 0.25. Fluorescence views are mostly dark, and the fixed scale leaves a "
        "random-initialised ViT with class tokens that differ by only 4-6% between cells, "
        "too little for the teacher to be anything but uniform early on."
    ),
    "freeze_last_layer_steps": (
        "Steps with frozen prototypes (default: the first epoch, at most 10% of the run)."
    ),
    "clip_grad": "Gradient-norm clip (0 or None: off).",
    "koleo_weight": "Weight of the KoLeo regulariser on the student's class tokens (DINOv2: 0.1).",
    "n_prototypes": "Prototypes of the projection head (DINOv2 default; e.g. 1024 for small data).",
    "head_layers": "Layers of the projection head's MLP.",
    "head_hidden_dim": "Hidden width of the projection head (e.g. 1024 for small data).",
    "head_bottleneck_dim": "Bottleneck width of the projection head (e.g. 64 for small data).",
    "drop_path_rate": "Stochastic depth of the backbone.",
    "n_global": "Global crops (teacher and student) per view.",
    "n_local": "Zoomed-in local crops (student) per view.",
    "local_morphology_size": "Side of a local morphology crop (default ~0.44 x the view).",
    "local_microenvironment_size": (
        "Side of a local microenvironment crop (default ~0.44 x the view)."
    ),
    "augment": "Further :class:`~madspatial.nn.MultiCropAugment` options (a dict).",
    "precision": (
        '``"auto"`` (default: bf16 autocast where it is faster than fp32, i.e. CUDA GPUs '
        "with bf16 and CPUs with AMX; fp32 elsewhere, including AVX512-BF16 CPUs without "
        'AMX, where bf16 measured 0.2-0.8x fp32 in 6 of 7 cases), ``"bf16"``, ``"fp32"``, or ``"fp16"`` (CUDA only, '
        "with gradient scaling)."
    ),
    "grad_checkpointing": "Recompute activations in the backward pass (less memory, ~30% slower).",
    "strategy": (
        '``"auto"`` (DDP when several processes), ``"ddp"``, ``"fsdp"`` (FSDP2 '
        '``fully_shard`` per transformer block) or ``"none"``.'
    ),
    "device": '``"cpu"``, ``"cuda"``, ... (default ``mad.settings.device``).',
    "seed": "Seed of initialisation, sampling and augmentation. On CPU the same seed gives the same numbers.",
    "checkpoint_dir": "Folder for checkpoints and the final model.",
    "checkpoint_every": "Steps between checkpoints (default: every epoch, at most every 1000 steps).",
    "resume": "Continue from the checkpoint in ``checkpoint_dir`` when there is one.",
    "n_holdout": "Cells held out for Recall@K (default ``min(256, max(16, n // 10))``).",
    "eval_every": "Steps between Recall@K evaluations (default: 20 evaluations a run).",
    "num_workers": "DataLoader worker processes reading views ahead of the model.",
    "weights": (
        "Local file of pretrained backbone weights (DINOv2 / timm / reference-MAD layout) to "
        "initialise from; nothing is downloaded."
    ),
    "weights_prefix": "Key prefix of the backbone in ``weights``.",
}


@dataclass
@doc_params(doc_train_config=render_params(TRAIN_OPTION_DOCS))
class TrainConfig:
    """Options of a MAD pretraining run (:func:`madspatial.tl.pretrain` builds one).

    Every default is written here once: ``tl.pretrain``'s keyword defaults, the command
    line (``madspatial pretrain``) and the run identity read them from these fields. The
    head shape and backbone default to :class:`~madspatial.nn.MADConfig`'s.

    Parameters
    ----------
    {doc_train_config}
    """

    mode: Mode = MODE_MAD
    backbone: str | dict = MADConfig.backbone
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
    centering: Centering = "center"
    view_centers: bool = False
    cross_terms: CrossTerms = "both"
    view_heads: bool = False
    predictor_heads: bool = False
    alpha_warmup_steps: int = 0
    pixel_stats: PixelStats = "data"
    freeze_last_layer_steps: int | None = None
    clip_grad: float | None = 3.0
    koleo_weight: float = 0.0
    n_prototypes: int = MADConfig.n_prototypes
    head_layers: int = MADConfig.head_layers
    head_hidden_dim: int = MADConfig.head_hidden_dim
    head_bottleneck_dim: int = MADConfig.head_bottleneck_dim
    drop_path_rate: float = MADConfig.drop_path_rate
    n_global: int = 2
    n_local: int = 4
    local_morphology_size: int | None = None
    local_microenvironment_size: int | None = None
    augment: dict = field(default_factory=dict)
    precision: Precision = "auto"
    grad_checkpointing: bool = False
    strategy: Strategy = "auto"
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
        if self.pixel_stats not in PIXEL_STATS:
            raise ValueError(
                f"pixel_stats must be one of {list(PIXEL_STATS)}, got {self.pixel_stats!r}."
            )
        if self.centering not in CENTERINGS:
            raise ValueError(
                f"centering must be one of {list(CENTERINGS)}, got {self.centering!r}."
            )
        if self.cross_terms not in CROSS_TERMS:
            raise ValueError(
                f"cross_terms must be one of {list(CROSS_TERMS)}, got {self.cross_terms!r}."
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
        _int(
            "n_prototypes",
            self.n_prototypes,
            1,
            f"e.g. {MADConfig.n_prototypes}, or 1024 for small data",
        )
        _int("head_layers", self.head_layers, 1, "DINO uses 3")
        _int("head_hidden_dim", self.head_hidden_dim, 1, "e.g. 2048")
        _int("head_bottleneck_dim", self.head_bottleneck_dim, 1, "e.g. 256")
        _int("seed", self.seed, None, "e.g. 0")
        _int("alpha_warmup_steps", self.alpha_warmup_steps, 0, "0 keeps alpha constant")
        for name in ("view_centers", "view_heads", "predictor_heads"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False; got {_show(getattr(self, name))}.")
        if self.view_heads and self.mode != MODE_MAD:
            raise ValueError(
                f"view_heads=True needs both views; got mode={self.mode!r} (use mode='mad', or "
                "view_heads=False for a single-view run)."
            )
        if self.predictor_heads and not self.view_heads:
            raise ValueError("predictor_heads=True needs view_heads=True (one head per view).")
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
            "center_momentum",
            self.center_momentum,
            "in [0, 1)",
            lambda v: 0 <= v < 1,
            "DINO uses 0.9",
        )
        _num("clip_grad", self.clip_grad, ">= 0", lambda v: v >= 0, "3.0; 0 or None: off", True)
        _num("koleo_weight", self.koleo_weight, ">= 0", lambda v: v >= 0, "DINOv2 uses 0.1")
        _num(
            "drop_path_rate",
            self.drop_path_rate,
            "in [0, 1)",
            lambda v: 0 <= v < 1,
            "e.g. 0.1",
        )
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


#: TrainConfig fields a preset sets; ``morphology_size`` / ``microenvironment_size`` go to
#: ``mad.pp.cell_views`` when ``tl.pretrain`` computes the views itself.
PRESET_FIELDS = (
    "backbone",
    "n_prototypes",
    "head_hidden_dim",
    "head_bottleneck_dim",
    "n_local",
    "base_lr",
)
VIEW_SIZE_OPTIONS = ("morphology_size", "microenvironment_size")


def _default(name: str) -> Any:
    """Return the default of a TrainConfig field."""
    f = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


#: ``tl.pretrain(preset=...)``: option sets for a machine. ``"paper"`` is the library's
#: defaults (the paper's GPU settings: ViT-S/14, 70 / 224 px views, 4 local crops, 65,536
#: prototypes, head 2048 / 256); ``"cpu"`` is what ``make demo`` trains on 2 CPU cores
#: (a 3-block ViT, 56 / 112 px views, 2 local crops, head 1024 / 512 / 128, a higher
#: learning rate for the short run; ~10 s a step of 64 cells on a busy 2-core machine,
#: where the paper's settings take minutes). ``"auto"`` is ``"paper"`` on a CUDA device and
#: ``"cpu"`` elsewhere. Explicit options win over a preset.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        **{name: _default(name) for name in PRESET_FIELDS},
        "morphology_size": MADConfig.morphology_size,
        "microenvironment_size": MADConfig.microenvironment_size,
    },
    "cpu": {
        "backbone": {"preset": "vit_pico", "embed_dim": 96, "depth": 3, "num_heads": 3},
        "n_prototypes": 1024,
        "head_hidden_dim": 512,
        "head_bottleneck_dim": 128,
        "n_local": 2,
        "base_lr": 8e-3,  # 2e-3 at 64 cells a step
        "morphology_size": 56,
        "microenvironment_size": 112,
    },
}
assert set(PRESETS) | {"auto"} == set(PRESET_NAMES)


#: Loss and crop recipes of :func:`madspatial.tl.pretrain` (``recipe=``), each a set of
#: TrainConfig options; explicit options win, ``augment`` keys merge (yours win). The
#: options that need both views apply in ``mode="mad"`` only, so a single-view run of a
#: recipe gets its crops and is the fair control for it.
#: ``"predictor_heads"``: one projection head per view, a student-only predictor head per
#: view for the cross-view terms, microenvironment crops kept within 10% of the cell
#: (measured on the synthetic tissue: ``docs/concepts.md``, "The collapse watch").
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "predictor_heads": {
        "view_heads": True,
        "predictor_heads": True,
        "augment": {"microenvironment_center_jitter": 0.1},
    },
}
#: Recipe options a single-view run cannot use (one head per view needs two views).
_TWO_VIEW_OPTIONS = ("view_heads", "predictor_heads", "cross_terms")
assert set(RECIPES) | {"auto"} == set(RECIPE_NAMES)

#: ``recipe="auto"`` (the default) trains ``"predictor_heads"`` when a run plans at least
#: this many optimizer steps and ``"paper"`` below. Measured on the synthetic tissue,
#: pretraining on training cells only, scored on held-out spatial blocks
#: (``benchmarks/results/science_*steps*.md``): against the paper's loss the recipe clustered
#: worse at 200 steps, tied at 500, won on every target at 1,000 (5 seeds, on the plain
#: tissue and on one with a niche imprint) and led on every seed at 2,000 (3 seeds);
#: against two single-view models trained apart it won on clustering and kNN accuracy
#: from 1,000 steps and lost or tied below.
AUTO_RECIPE_MIN_STEPS = 1000


def check_recipe(recipe: str) -> None:
    """Raise a ValueError naming the choices unless ``recipe`` is one of them."""
    if recipe not in RECIPE_NAMES:
        raise ValueError(
            f"recipe must be one of {list(RECIPE_NAMES)}; got {_show(recipe)} "
            '("paper": the paper\'s loss, "predictor_heads": one head per view with '
            'predictor heads for the cross-view terms, "auto": "predictor_heads" for runs of '
            f'at least {AUTO_RECIPE_MIN_STEPS} steps, else "paper").'
        )


def resolve_recipe(
    recipe: str,
    total_steps: int,
    *,
    start_heads: bool | None = None,
    pretrained: bool = False,
) -> str:
    """Return the recipe a run of ``total_steps`` optimizer steps trains (``"auto"`` resolved).

    ``"auto"``: a model trained further keeps its own heads (``start_heads``: whether it
    has per-view predictor heads; ``None`` for a new model); pretrained backbone weights
    (the paper's regime) get ``"paper"``; a model from random weights gets
    ``"predictor_heads"`` from :data:`AUTO_RECIPE_MIN_STEPS` steps on, else ``"paper"``.
    Any other name is returned as it is (after checking it).
    """
    return explain_recipe(recipe, total_steps, start_heads=start_heads, pretrained=pretrained)[0]


def explain_recipe(
    recipe: str,
    total_steps: int,
    *,
    start_heads: bool | None = None,
    pretrained: bool = False,
) -> tuple[str, str]:
    """:func:`resolve_recipe`'s choice and the reason, for the log."""
    check_recipe(recipe)
    if recipe != "auto":
        return recipe, "named"
    if start_heads is not None:
        return ("predictor_heads" if start_heads else "paper"), "the starting model's heads"
    if pretrained:
        return "paper", "pretrained weights: the paper's regime"
    chosen = "predictor_heads" if total_steps >= AUTO_RECIPE_MIN_STEPS else "paper"
    return chosen, f"{total_steps} planned steps; 'predictor_heads' from {AUTO_RECIPE_MIN_STEPS}"


def recipe_options(recipe: str, mode: str, given: dict[str, Any]) -> dict[str, Any]:
    """Fill in the TrainConfig options of ``recipe`` that ``given`` leaves out.

    Parameters
    ----------
    recipe
        A key of :data:`RECIPES` (``"auto"`` is resolved first, by :func:`resolve_recipe`).
    mode
        ``"mad"``, or a single view (the recipe's two-view options are left out).
    given
        The options the caller passed; an ``augment`` dict is merged over the recipe's.

    Returns
    -------
    ``given`` with the recipe's options filled in.
    """
    check_recipe(recipe)
    if recipe not in RECIPES:
        raise ValueError(
            f"recipe={recipe!r} depends on the run's length: resolve it first with "
            "resolve_recipe(recipe, total_steps)."
        )
    out = {
        k: v for k, v in RECIPES[recipe].items() if mode == MODE_MAD or k not in _TWO_VIEW_OPTIONS
    }
    merged = {**out, **given}
    if "augment" in out:
        merged["augment"] = {**out["augment"], **dict(given.get("augment") or {})}
    return merged


def resolve_preset(preset: str, device: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a preset; ``"auto"``: ``"paper"`` on CUDA, else ``"cpu"``."""
    if preset not in PRESET_NAMES:
        raise ValueError(
            f"preset must be one of {list(PRESET_NAMES)}; got {_show(preset)} "
            '("paper": the library defaults, "cpu": a small model for a laptop).'
        )
    if preset == "auto":
        from .._settings import settings

        preset = "paper" if settings.resolve_device(device).startswith("cuda") else "cpu"
    return preset, dict(PRESETS[preset])
