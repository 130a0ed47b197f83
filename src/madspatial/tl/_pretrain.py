"""``mad.tl.pretrain``: MAD self-distillation on the cell views of a dataset."""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._constants import (
    IMAGE_KEY,
    NORMALIZED_SUFFIX,
    UNS_MAD,
    UNS_MODEL,
    UNS_VIEWS,
    Centering,
    Mode,
    Precision,
    Preset,
    Recipe,
    Strategy,
)
from .._logging import added, logger
from .._settings import settings
from ..train._config import (
    AUTO_RECIPE_MIN_STEPS,
    PRESET_FIELDS,
    PRESETS,
    RECIPES,
    TRAIN_OPTION_DOCS,
    VIEW_SIZE_OPTIONS,
    TrainConfig,
    check_recipe,
    explain_recipe,
    recipe_options,
    render_params,
    resolve_preset,
)

if TYPE_CHECKING:
    from ..nn import MADModel

#: TrainConfig's defaults: the keyword defaults of :func:`pretrain` are read from here.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

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


def _compute_views(
    sdata, table_key: str, views_key: str, view_sizes: dict[str, int] | None = None
) -> None:
    """Run ``mad.pp.normalize`` (if needed) and ``mad.pp.cell_views`` with their defaults.

    The views are cut on the fly (``store="on_the_fly"``: nothing is stored, memory stays
    flat at any cell count), with the view sizes of the preset (``view_sizes``) when given.
    """
    from .. import pp
    from ..io._views import ON_THE_FLY

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
        logger.info("no views yet: normalizing image %r with defaults", source)
        pp.normalize(sdata, image_key=source)
        image_key = source + NORMALIZED_SUFFIX
    logger.info(
        "no views yet: cutting the cell views of %r / %r on the fly, with defaults",
        image_key,
        labels_key,
    )
    pp.cell_views(
        sdata,
        image_key=image_key,
        labels_key=labels_key,
        table_key=table_key,
        key_added=views_key,
        store=ON_THE_FLY,
        **(view_sizes or {}),
    )


def resolve_views(
    data: Any,
    *,
    table_key: str | None = None,
    views_key: str = UNS_VIEWS,
    compute: bool = False,
    view_sizes: dict[str, int] | None = None,
):
    """``(store, table)`` for a SpatialData, AnnData, ViewStore or path (table may be None).

    With ``compute=True`` a SpatialData without views gets them (``pp.cell_views``, with
    ``view_sizes`` as its ``morphology_size`` / ``microenvironment_size`` when given).
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
            _compute_views(data, key, views_key, view_sizes)
            table = data.tables[key]
        # the SpatialData, not the table: views cut on the fly need its image and labels
        return read_views(data, table_key=key, key=views_key), data.tables[key]
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


#: ``model=``'s default: replaced by the weights' own architecture when they carry one.
DEFAULT_BACKBONE = _DEFAULTS["backbone"]


def resolve_pretrain_weights(model: Any, weights: Any, *, prefix: str | None = None):
    """``(model, weights file)`` for ``pretrain``: resolve ``weights=`` (file, hub, folder).

    A saved MADModel folder becomes the model to continue from; weights with a known
    architecture pick it when ``model`` is the default, and refuse a ``model`` of another
    shape.
    """
    from ..nn import MADModel, resolve_backbone_kwargs
    from ..nn._pretrained import matching_preset, resolve_weights, shape_mismatch

    if weights is None:
        return model, None
    resolved = resolve_weights(weights, prefix=prefix)
    if resolved.kind == "mad_model":
        if isinstance(model, MADModel):
            raise ValueError(
                f"weights={str(weights)!r} is a saved MADModel folder and model= is a MADModel "
                "too: pass one of them (model=MADModel.load(folder) or weights=folder)."
            )
        loaded = MADModel.load(resolved.path)
        if model != DEFAULT_BACKBONE and model != loaded.config.backbone:
            raise ValueError(
                f"weights={str(weights)!r} is a saved {loaded.config.backbone!r} MADModel but "
                f"model={model!r}; drop model= to continue training that model."
            )
        logger.info("pretrain: continuing from the MADModel saved in %s", resolved.path)
        return loaded, None
    if isinstance(model, MADModel):
        raise ValueError(
            f"model= is a MADModel and weights={str(weights)!r} too: to continue training the "
            "model, drop weights=; to start from the weights, pass a preset as model=."
        )
    if resolved.backbone is not None:
        diff = shape_mismatch(resolve_backbone_kwargs(model), resolved.backbone)
        if diff and model == DEFAULT_BACKBONE:
            model = matching_preset(resolved.backbone) or dict(resolved.backbone)
            logger.info("pretrain: weights %s are a %s ViT: model=%r", weights, diff, model)
        elif diff:
            want = matching_preset(resolved.backbone) or dict(resolved.backbone)
            raise ValueError(
                f"weights={str(weights)!r} are a ViT with "
                + ", ".join(f"{k}={b}" for k, (_, b) in diff.items())
                + f" but model={model!r} has "
                + ", ".join(f"{k}={a}" for k, (a, _) in diff.items())
                + f"; pass model={want!r} (or leave model= at its default)."
            )
    return model, str(resolved.path)


def _document_options(own: dict[str, str]):
    """Fill ``{doc_pretrain_params}`` with a description of every parameter.

    In signature order: ``own`` for the ones described here, :data:`TRAIN_OPTION_DOCS` for
    the training options (with each preset's value of the options a preset sets).
    """

    def decorate(func):
        names = [
            p.name
            for p in inspect.signature(func).parameters.values()
            if p.kind is not p.VAR_KEYWORD
        ]
        docs = {}
        for name in names:
            if name in own:
                docs[name] = own[name]
                continue
            text = TRAIN_OPTION_DOCS[name]
            if name in PRESET_FIELDS:
                text += (
                    " Default: the preset's ("
                    + ", ".join(f"{p!r}: {v[name]!r}" for p, v in PRESETS.items())
                    + ")."
                )
            docs[name] = text
        func.__doc__ = func.__doc__.replace(
            "    {doc_pretrain_params}", _indent(render_params(docs, names))
        )
        # The options a preset fills default to None (= "the preset's"); the signature
        # shows the default preset's values, which is what a call without them gets.
        sig = inspect.signature(func)
        paper = {"model" if k == "backbone" else k: v for k, v in PRESETS["paper"].items()}
        func.__signature__ = sig.replace(
            parameters=[
                p.replace(default=paper[p.name]) if p.name in paper else p
                for p in sig.parameters.values()
            ]
        )
        return func

    return decorate


def _indent(text: str) -> str:
    return "\n".join("    " + line if line else line for line in text.split("\n"))


#: Parameters of :func:`pretrain` described here (the others: TRAIN_OPTION_DOCS).
_PRETRAIN_DOCS = {
    "weights": """Pretrained weights to start from (see the docs' *Pretrained weights* page):

- a local file (``.safetensors`` / ``.pt`` / ``.pth``) in DINOv2, timm or
  reference-MAD layout;
- a timm model name with a pretrained tag (``"vit_small_patch14_dinov2.lvd142m"``) or
  a Hugging Face repo id (``"timm/vit_large_patch14_dinov2.lvd142m"``), read from the
  huggingface_hub cache (``HF_HOME`` / ``HF_HUB_CACHE``) when it is there, downloaded
  into it otherwise; with ``HF_HUB_OFFLINE=1`` a model not in the cache raises
  an error saying how to get it;
- a folder saved by the reference MAD code (``config.yaml`` plus
  ``eval/training_<N>/teacher_checkpoint.pth`` or one checkpoint file; choose one of
  two backbones with ``weights_prefix="morphology"`` / ``"neighborhood"``);
- a folder saved by :meth:`~madspatial.nn.MADModel.save` (or ``pretrain``): training
  continues from that model (as with ``model=<the loaded MADModel>``).

The backbone's patch embedding is adapted to the views' channels. When the weights
carry their architecture (hub models, reference folders) and ``model`` is left at
``"vit_small"`` while the weights are another shape, the weights' architecture is
used (the matching preset, e.g. ``"vit_large"``); any other mismatching ``model``
raises. Nothing is downloaded unless a hub model is named.""",
    "data": (
        "A SpatialData (when its table has no views, ``mad.pp.normalize`` and "
        "``mad.pp.cell_views`` run with their defaults and the preset's view sizes, and "
        "the views are cut on the fly in the data loader: nothing is stored, memory stays "
        "flat at any cell count; run ``mad.pp.cell_views`` first to choose otherwise), an "
        "AnnData table with ``.uns[views_key]``, a :class:`~madspatial.io.ViewStore` or the "
        "path of one."
    ),
    "preset": (
        'Option set for the machine: ``"paper"`` (default: the paper\'s GPU settings, '
        'ViT-S/14, 70 / 224 px views, 65,536 prototypes), ``"cpu"`` (what ``make demo`` '
        "trains on a laptop CPU: a 3-block ViT, 56 / 112 px views, 2 local crops, head "
        '1024 / 512 / 128) or ``"auto"`` (``"paper"`` on a CUDA device, else ``"cpu"``). '
        "It fills the options you do not give (``model``, ``n_prototypes``, "
        "``head_hidden_dim``, ``head_bottleneck_dim``, ``n_local``, ``base_lr``, and the "
        "view sizes when the views are computed here); explicit options always win. The "
        'default stays ``"paper"`` on every device, so the same call trains the same '
        "model everywhere; the run logs its projected wall time after its first steps "
        '(a warning names ``preset="cpu"`` when a CPU run would take over an hour).'
    ),
    "recipe": (
        'The loss and crops: ``"auto"`` (default), ``"paper"`` (one projection head shared '
        'by both views, the paper\'s four-way loss) or ``"predictor_heads"`` (one head per '
        "view, a student-only predictor head per view for the two cross-view terms, "
        "microenvironment crops kept within 10% of the cell: ``view_heads=True, "
        'predictor_heads=True, augment={"microenvironment_center_jitter": 0.1}``). '
        f'``"auto"`` trains ``"predictor_heads"`` when a run from random weights plans at '
        f"least {AUTO_RECIPE_MIN_STEPS:,} optimizer steps (``max_steps``, else ``epochs`` x "
        'batches per epoch) and ``"paper"`` below and from pretrained ``weights`` (the '
        "paper's regime); a model trained further keeps its own heads. It logs its "
        "choice. On the synthetic "
        "tissue (held-out spatial blocks) the predictor-heads recipe beat the paper's loss "
        "on every target at 1,000 steps and led it on every seed at 2,000, and beat two "
        "separately trained single-view models on clustering and kNN from 1,000 steps; at "
        "200 steps it clustered worse than the paper's loss and at 500 it tied "
        "(``docs/concepts.md``). A single-view ``mode`` takes only its crops, so the same "
        "recipe trains the fair single-view control. Explicit options win; ``augment`` "
        "keys merge over the recipe's."
    ),
    "model": (
        'Backbone preset (``"vit_pico"``, ``"vit_tiny"``, ``"vit_small"``, ``"vit_base"``, '
        '``"vit_large"``), a dict of timm ViT options, or a :class:`~madspatial.nn.MADModel` '
        "to continue training from (its head shape is kept). Default: the preset's ("
        + ", ".join(f"{p!r}: {v['backbone']!r}" for p, v in PRESETS.items())
        + ")."
    ),
    "checkpoint_dir": (
        "Folder for checkpoints and the final model (``config.json``, "
        "``model.safetensors``, ``history.json``, ``checkpoint.pt``). Default "
        "``./mad_models/<mode>_<backbone>_<hash of the run's identity>``: every training "
        "and model option, the starting weights and a fingerprint of the data (a seeded "
        "sample of the view pixels, channel names, view sizes, cell count and ids, the "
        "``cells=`` selection). Re-running the same call on the same data resumes (or "
        "returns the finished model) instead of training again; other data or options get "
        "another folder."
    ),
    "resume": (
        "Continue from the checkpoint in ``checkpoint_dir`` when there is one. A checkpoint "
        "(or saved model) of another run - any option or the data fingerprint differs - is "
        "never resumed: it raises an error naming the fields that differ. ``False`` starts "
        "over (the folder's checkpoint and model are overwritten)."
    ),
    "seed": (
        "Seed of initialisation, sampling and augmentation (default ``mad.settings.seed``). "
        "On CPU the same seed gives the same numbers."
    ),
    "table_key": "Table of a SpatialData (default: the one with views, or the only one).",
    "views_key": "``.uns`` key written by ``mad.pp.cell_views``.",
    "cells": (
        "Train on a subset of the table's rows only (e.g. the training split, so that "
        "held-out cells are never seen in pretraining): a boolean mask of length "
        "``n_obs``, an array of integer row indices, the name of a boolean ``obs`` column, "
        "or ``(obs_column, value)`` / ``(obs_column, [values])``. Only the selected cells' "
        "views are read (the store is not loaded); the pixel statistics and the held-out "
        "Recall@K cells come from them, and the selection is part of the run's identity "
        "(another selection never resumes this run's checkpoint). Default: every cell."
    ),
}


def _check_train_options(train_options: dict[str, Any]) -> None:
    """Raise a TypeError naming each unknown option, with the closest known names."""
    import difflib

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(train_options) - known)
    if not unknown:
        return
    candidates = sorted(known | set(inspect.signature(pretrain).parameters) - {"data"})
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise TypeError(
        f"pretrain() got unknown option(s) {', '.join(hints)}; the options are pretrain()'s "
        "parameters and the fields of madspatial.train.TrainConfig (the model folder is "
        "checkpoint_dir=)."
    )


def _apply_recipe(
    recipe: str,
    mode: str,
    options: dict[str, Any],
    *,
    n_cells: int,
    epochs: int,
    max_steps: int | None,
    batch_size: int,
    start: MADModel | None = None,
    pretrained: bool = False,
) -> dict[str, Any]:
    """Resolve ``recipe`` for this run and fill in its options (rule: ``resolve_recipe``)."""
    from ..train._trainer import planned_steps

    steps = planned_steps(
        n_cells,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        n_holdout=options.get("n_holdout"),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )
    chosen, why = explain_recipe(
        recipe,
        steps,
        start_heads=None if start is None else start.config.predictor_heads,
        pretrained=pretrained,
    )
    options = recipe_options(chosen, mode, options)
    if recipe == "auto":
        logger.info("pretrain: recipe 'auto' -> %r (%s)", chosen, why)
    if chosen != "paper":
        logger.info(
            "pretrain: recipe %r (%s)",
            chosen,
            ", ".join(f"{k}={options[k]!r}" for k in RECIPES[chosen] if k in options),
        )
    return options


@_document_options(_PRETRAIN_DOCS)
def pretrain(
    data: Any,
    *,
    preset: Preset = "paper",
    recipe: Recipe = "auto",
    mode: Mode = _DEFAULTS["mode"],
    model: Any = None,
    alpha: float = _DEFAULTS["alpha"],
    epochs: int = _DEFAULTS["epochs"],
    max_steps: int | None = _DEFAULTS["max_steps"],
    batch_size: int = _DEFAULTS["batch_size"],
    lr: float | None = _DEFAULTS["lr"],
    precision: Precision = _DEFAULTS["precision"],
    strategy: Strategy = _DEFAULTS["strategy"],
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = _DEFAULTS["checkpoint_every"],
    resume: bool = _DEFAULTS["resume"],
    seed: int | None = None,
    device: str | None = _DEFAULTS["device"],
    grad_checkpointing: bool = _DEFAULTS["grad_checkpointing"],
    weights: str | Path | None = _DEFAULTS["weights"],
    n_prototypes: int | None = None,
    head_hidden_dim: int | None = None,
    head_bottleneck_dim: int | None = None,
    n_global: int = _DEFAULTS["n_global"],
    n_local: int | None = None,
    teacher_temp: tuple[float, float] = _DEFAULTS["teacher_temp"],
    momentum: tuple[float, float] = _DEFAULTS["momentum"],
    koleo_weight: float = _DEFAULTS["koleo_weight"],
    centering: Centering = _DEFAULTS["centering"],
    num_workers: int = _DEFAULTS["num_workers"],
    table_key: str | None = None,
    views_key: str = UNS_VIEWS,
    cells: Any = None,
    **train_options: Any,
) -> MADModel:
    """Pretrain a MAD model: self-distillation of every cell's two views into one ViT.

    DINO-style: the student (one shared ViT backbone + projection head) sees global and
    zoomed-in local crops of the morphology and microenvironment views; the teacher, an
    exponential moving average of the student, sees the global crops. The loss is the
    paper's four-way cross-entropy ``CE(mm) + CE(ee) + alpha * (CE(me) + CE(em))`` with
    teacher centering and sharpening (``recipe="predictor_heads"``, which the default
    ``recipe="auto"`` trains for runs of 1,000 steps or more, scores the two cross-view
    terms through a head per view instead). Schedules follow DINO/DINOv2: AdamW with linear
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

    The defaults are the paper's GPU settings (``preset="paper"``): on a laptop CPU they
    take minutes a step. ``preset="cpu"`` (or ``"auto"``) trains a small model instead.

    Parameters
    ----------
    {doc_pretrain_params}
    **train_options
        Further options of :class:`madspatial.train.TrainConfig` (see its
        documentation), e.g. ``warmup_steps``, ``freeze_last_layer_steps``, ``min_lr``,
        ``base_lr``, ``weight_decay``, ``n_holdout``, ``eval_every``, ``augment``,
        ``head_layers``, ``drop_path_rate``, ``clip_grad``, ``student_temp``,
        ``pixel_stats``. An unknown name raises a TypeError.

    Returns
    -------
    The trained :class:`~madspatial.nn.MADModel` (teacher weights, as in DINO), with
    ``.history`` attached. It is saved to ``checkpoint_dir``; when ``data`` has a table,
    ``table.uns["mad"]["model"]`` records that folder (``mad.tl.embed`` uses it by
    default).
    """
    from ..nn import MADModel
    from ..train import Trainer
    from ..train._data import resolve_cells

    _check_train_options(train_options)  # before any slow step (normalising, cutting views)
    name, options = resolve_preset(preset, device)
    view_sizes = {k: options.pop(k) for k in VIEW_SIZE_OPTIONS}
    given = {
        "backbone": model,
        "n_prototypes": n_prototypes,
        "head_hidden_dim": head_hidden_dim,
        "head_bottleneck_dim": head_bottleneck_dim,
        "n_local": n_local,
    }
    options.update({k: v for k, v in given.items() if v is not None})
    options.update(train_options)  # explicit options win over the preset
    check_recipe(recipe)
    logger.info("pretrain: preset %r (%s)", name, ", ".join(f"{k}={options[k]!r}" for k in given))
    store, table = resolve_views(
        data,
        table_key=table_key,
        views_key=views_key,
        compute=True,
        view_sizes=view_sizes if name != "paper" else None,
    )
    rows = resolve_cells(cells, len(store), obs=table.obs if table is not None else None)
    weights_file = None
    if weights is not None:  # weights that carry an architecture pick it unless model= is given
        options["backbone"], weights_file = resolve_pretrain_weights(
            model if model is not None else DEFAULT_BACKBONE,
            weights,
            prefix=options.get("weights_prefix"),
        )
    init_model = options["backbone"] if isinstance(options["backbone"], MADModel) else None
    if init_model is not None:  # continue training: the model's architecture
        mc = init_model.config
        options.update(
            backbone=mc.backbone,
            n_prototypes=mc.n_prototypes,
            head_hidden_dim=mc.head_hidden_dim,
            head_bottleneck_dim=mc.head_bottleneck_dim,
        )
    options = _apply_recipe(
        recipe,
        mode,
        options,
        n_cells=len(store) if rows is None else len(rows),
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        start=init_model,
        pretrained=weights_file is not None,
    )  # explicit options win over the recipe
    backbone = options["backbone"]
    cfg = TrainConfig(
        mode=mode,
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
        weights=weights_file,
        n_global=n_global,
        teacher_temp=tuple(teacher_temp),
        momentum=tuple(momentum),
        koleo_weight=koleo_weight,
        centering=centering,
        num_workers=num_workers,
        **options,
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
