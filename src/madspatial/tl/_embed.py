"""``mad.tl.embed``: class-token embeddings of every cell's views into ``.obsm``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._constants import (
    INSTANCE_KEY,
    OBSM_MAD,
    OBSM_MICROENVIRONMENT_SUFFIX,
    OBSM_MORPHOLOGY_SUFFIX,
    OBSM_ZEROSHOT,
    UNS_MAD,
    UNS_MODEL,
    UNS_VIEWS,
    UNS_ZEROSHOT,
    VIEW_MICROENVIRONMENT,
    VIEW_MORPHOLOGY,
    Precision,
)
from .._logging import added, logger, progress
from .._settings import settings
from .._version import __version__
from .._warnings import warn_user
from ..train._precision import resolve_precision
from ._pretrain import resolve_views

if TYPE_CHECKING:
    from anndata import AnnData

_SUFFIX = {
    VIEW_MORPHOLOGY: OBSM_MORPHOLOGY_SUFFIX,
    VIEW_MICROENVIRONMENT: OBSM_MICROENVIRONMENT_SUFFIX,
}


def _load_model(model: Any, table):
    from ..nn import MADModel

    if isinstance(model, MADModel):
        return model, None
    if model is None:
        record = table.uns.get(UNS_MAD, {}) if table is not None else {}
        model = record.get(UNS_MODEL) if isinstance(record, dict) else None
        if model is None:
            raise ValueError(
                "no model given and none recorded in table.uns['mad']['model']; train one with "
                "mad.tl.pretrain(...) or pass model=<MADModel or saved model folder>."
            )
    path = Path(model)
    return MADModel.load(path), str(path)


def check_model_fits(model, store) -> None:
    """Raise if the model cannot read the store's views (channels); warn on size changes."""
    cfg = model.config
    if int(store.n_channels) != cfg.in_chans:
        raise ValueError(
            f"the model was trained on {cfg.in_chans} channels {cfg.channel_names}, the views "
            f"have {store.n_channels} {list(store.channel_names)}. Use a model trained on these "
            "channels, or recompute the views from an image with the model's channels."
        )
    for view in cfg.views:
        have, want = getattr(store, f"{view}_size"), cfg.view_size(view)
        if int(have) != int(want):
            warn_user(
                f"{view} views are {have}px but the model was trained on {want}px views; "
                "embeddings of a different scale may not be comparable."
            )


def embed_store(
    store,
    model,
    *,
    batch_size: int = 256,
    precision: str = "auto",
    device: str | None = None,
    num_workers: int = 0,
    prefetch: int = 2,
    show_progress: bool | None = None,
) -> dict[str, np.ndarray]:
    """Class tokens of every row of ``store``, ``{view: (N, D) float32}``, in row order.

    Reads one batch at a time in storage order (sequential zarr reads), with a background
    thread (or ``num_workers`` processes) fetching the next batches while the model runs,
    so memory holds a few batches of views plus the output, whatever the cell count.
    Under an initialised ``torch.distributed`` process group every rank embeds its own
    contiguous shard and the results are gathered on every rank.
    """
    import torch
    import torch.distributed as dist

    from ..train._data import (
        ChunkBatchSampler,
        make_loader,
        prefetch_iter,
        storage_positions,
    )
    from ..train._precision import autocast_dtype

    dev = torch.device(settings.resolve_device(device))
    amp = autocast_dtype(resolve_precision(precision, dev))
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    views = model.views
    n = len(store)
    sampler = ChunkBatchSampler(
        np.arange(n),
        batch_size,
        positions=storage_positions(store),
        rank=rank,
        world_size=world,
        shuffle=False,
        drop_last=False,
    )
    model = model.to(dev).eval()
    out = {v: np.zeros((n, model.embed_dim), dtype=np.float32) for v in views}
    done = np.zeros(n, dtype=bool)
    loader = make_loader(store, views, sampler, num_workers=num_workers)
    reads = loader if num_workers > 0 else prefetch_iter(loader, depth=prefetch)
    show = settings.show_progress if show_progress is None else show_progress
    bar = progress(total=n // world, desc="MAD embed", unit="cell", disable=not show or rank > 0)
    try:
        for read in reads:
            for batch in read:
                idx = batch["index"].numpy()
                x = {v: batch[v].to(dev, non_blocking=True) for v in views}
                feats = model.embed(
                    x.get(VIEW_MORPHOLOGY), x.get(VIEW_MICROENVIRONMENT), autocast_dtype=amp
                )
                for v in views:
                    out[v][idx] = feats[v].cpu().numpy()
                done[idx] = True
                bar.update(len(idx))
    finally:
        bar.close()
    if distributed:
        parts = [None] * world
        mine = np.flatnonzero(done)
        dist.all_gather_object(parts, (mine, {v: out[v][mine] for v in views}))
        for rows, arrays in parts:
            for v in views:
                out[v][rows] = arrays[v]
            done[rows] = True
    if not done.all():  # pragma: no cover - the sampler covers every row
        raise RuntimeError(f"{int((~done).sum())} cells were not embedded.")
    return out


def embed(
    data: Any,
    *,
    model: Any = None,
    table_key: str | None = None,
    views_key: str = UNS_VIEWS,
    key_added: str | None = None,
    weights: str | Path | None = None,
    weights_prefix: str | None = None,
    batch_size: int = 256,
    precision: Precision = "auto",
    device: str | None = None,
    num_workers: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Embed every cell: the backbone's class tokens of its views.

    Views are read from the view store batch by batch (lazily for zarr stores), so memory
    does not grow with the number of cells beyond the output itself. Rows follow the
    table's row order.

    Parameters
    ----------
    data
        A SpatialData or AnnData table with views (``mad.pp.cell_views``), or a
        :class:`~madspatial.io.ViewStore` / path to one (then a new AnnData is returned).
        Views recorded as ``store="on_the_fly"`` are cut from the SpatialData's image in
        the data loader, one batch at a time (pass the SpatialData, not its table). A
        SpatialData whose table has no views gets them cut on the fly (``mad.pp.normalize``
        and ``mad.pp.cell_views`` with their defaults and the model's view sizes): nothing
        is stored and memory stays flat at any cell count.
    model
        A :class:`~madspatial.nn.MADModel` or the folder of a saved one; default: the model
        recorded by :func:`madspatial.tl.pretrain` in ``table.uns["mad"]["model"]``.
    table_key
        Table of a SpatialData (default: the one with views).
    views_key
        ``.uns`` key written by ``mad.pp.cell_views``.
    key_added
        ``.obsm`` key of the joint embedding (default ``"X_mad"``, or ``"X_zeroshot"`` with
        ``weights=``); the per-view ones get the suffixes ``_morphology`` and
        ``_microenvironment``.
    weights
        **Zero-shot embedding**: embed with these pretrained backbone weights as they are,
        with no MAD training (instead of ``model=``), e.g.
        ``"vit_small_patch14_dinov2.lvd142m"`` (a timm name, read from the huggingface_hub
        cache), a hub repo id, a local weights file or a reference-MAD folder (the spellings
        of :func:`madspatial.tl.pretrain`'s ``weights=``). Both views go through the
        pretrained ViT and its class token is the embedding, so foundation-model features
        and MAD's can be compared side by side. Input: ``[0, 1]`` pixels standardised with
        the weights' own mean / std (ImageNet's for DINOv2) on 3 channels; for another
        channel count every channel gets the mean of the RGB mean / std, and the patch
        embedding's RGB filters are averaged onto every channel (see the docs' *Pretrained
        weights* page).
    weights_prefix
        Backbone prefix inside ``weights`` (e.g. ``"morphology"`` for the reference MAD
        ``checkpoint_mad.pt``).
    batch_size
        Cells per forward pass.
    precision
        ``"auto"`` (default: bf16 autocast where it is faster than fp32 - CUDA with
        bf16, CPUs with AMX - else fp32), ``"bf16"``, ``"fp32"`` or ``"fp16"`` (CUDA).
    device
        Torch device (default ``mad.settings.device``).
    num_workers
        DataLoader worker processes reading ahead (``0``: one background thread).
    copy
        Return a modified copy of the table instead of writing into it.

    Returns
    -------
    ``None`` (the table is modified), or an AnnData when ``copy=True`` or when ``data`` is a
    view store (one row per cell, ``obs_names`` = instance ids). Written:

    ``.obsm["X_mad"]``
        ``(n_cells, 2 * D)``: morphology and microenvironment class tokens concatenated
        (for a one-view model, that view's ``(n_cells, D)`` tokens).
    ``.obsm["X_mad_morphology"]``, ``.obsm["X_mad_microenvironment"]``
        ``(n_cells, D)`` per view (only the model's views; a stale entry of the other view
        is removed).
    ``.uns["mad"]``
        Model folder and id, mode, backbone, embedding width, madspatial version, precision,
        the view parameters and the keys written.
    ``.uns["mad_zeroshot"][key_added]``
        With ``weights=`` (instead of ``.uns["mad"]``, which keeps describing the MAD model):
        the weights as given, the file they were read from, the architecture, the
        standardisation and the channel adaptation.
    """
    import anndata as ad
    import pandas as pd

    if weights is not None and model is not None:
        raise ValueError(
            "pass model= (a MAD-trained model) or weights= (zero-shot: pretrained weights "
            f"with no MAD training), not both; got model={model!r}, weights={weights!r}."
        )
    mad_model = model_path = view_sizes = None
    missing = _table_without_views(data, table_key, views_key)
    if missing is not None and weights is None:
        # views cut now are cut at the model's sizes (the preset's of pretrain)
        mad_model, model_path = _load_model(model, missing)
        cfg = mad_model.config
        view_sizes = {
            "morphology_size": int(cfg.morphology_size),
            "microenvironment_size": int(cfg.microenvironment_size),
        }
    store, table = resolve_views(
        data, table_key=table_key, views_key=views_key, compute=True, view_sizes=view_sizes
    )
    zeroshot = None
    if weights is not None:
        mad_model, zeroshot = _zeroshot_model(weights, weights_prefix, store)
    elif mad_model is None:
        mad_model, model_path = _load_model(model, table)
    if key_added is None:
        key_added = OBSM_MAD if zeroshot is None else OBSM_ZEROSHOT
    check_model_fits(mad_model, store)
    feats = embed_store(
        store,
        mad_model,
        batch_size=batch_size,
        precision=precision,
        device=device,
        num_workers=num_workers,
    )
    views = mad_model.views
    _check_finite(feats, store, table, model_path, key_added)
    if table is None:
        ids = np.asarray(store.instance_id)
        target = ad.AnnData(
            obs=pd.DataFrame({INSTANCE_KEY: ids}, index=pd.Index(ids.astype(str), name=None))
        )
    else:
        if table.n_obs != len(store):
            raise ValueError(
                f"the table has {table.n_obs} rows but the view store {len(store)} cells; "
                "re-run mad.pp.cell_views on this table."
            )
        target = table.copy() if copy else table
    joint = np.concatenate([feats[v] for v in views], axis=1) if len(views) > 1 else feats[views[0]]
    target.obsm[key_added] = joint
    keys = [key_added]
    for v in views:
        target.obsm[key_added + _SUFFIX[v]] = feats[v]
        keys.append(key_added + _SUFFIX[v])
    for v, suffix in _SUFFIX.items():
        # a one-view model replaces X_mad: drop the other view's now inconsistent tokens
        if v not in views and key_added + suffix in target.obsm:
            del target.obsm[key_added + suffix]
    cfg = mad_model.config
    if zeroshot is not None:
        _record_zeroshot(target, key_added, zeroshot, mad_model, store, keys, precision, device)
        if table is None or copy:
            return target
        return None
    record = dict(target.uns.get(UNS_MAD, {}))
    record.update(
        {
            UNS_MODEL: model_path or record.get(UNS_MODEL),
            "model_id": _model_id(mad_model),
            "mode": cfg.mode,
            "views": list(views),
            "backbone": cfg.backbone,
            "embed_dim": int(mad_model.embed_dim),
            "version": __version__,
            "model_version": cfg.version,
            "precision": resolve_precision(precision, settings.resolve_device(device)),
            "channel_names": list(cfg.channel_names),
            "view_params": _view_params(store),
            "obsm_keys": keys,
        }
    )
    target.uns[UNS_MAD] = {k: v for k, v in record.items() if v is not None}
    for k in keys:
        added(k, "obsm")
    added(UNS_MAD, "uns")
    if table is None or copy:
        return target
    return None


def _table_without_views(data: Any, table_key: str | None, views_key: str):
    """Return the table of a SpatialData ``data`` that has no views yet, else ``None``."""
    from ._pretrain import _is_sdata, _pick_table

    if not _is_sdata(data):
        return None
    table = data.tables[_pick_table(data, table_key, views_key)]
    return None if views_key in table.uns else table


def _zeroshot_model(weights, prefix, store):
    """``(model, record)`` of a zero-shot backbone sized for ``store``'s views."""
    from ..nn._pretrained import resolve_weights, zeroshot_model

    resolved = resolve_weights(weights, prefix=prefix)
    model, report = zeroshot_model(
        resolved,
        in_chans=int(store.n_channels),
        channel_names=[str(c) for c in store.channel_names],
        morphology_size=int(store.morphology_size),
        microenvironment_size=int(store.microenvironment_size),
    )
    record = resolved.record()
    record["adapted"] = list(report.adapted)
    logger.info("zero-shot embedding with %s (%s)", weights, report)
    return model, record


def _record_zeroshot(target, key_added, record, model, store, keys, precision, device) -> None:
    cfg = model.config
    entry = dict(record)
    entry.update(
        {
            "backbone": cfg.backbone,
            "embed_dim": int(model.embed_dim),
            "pixel_mean": list(cfg.pixel_mean),
            "pixel_std": list(cfg.pixel_std),
            "views": list(model.views),
            "version": __version__,
            "precision": resolve_precision(precision, settings.resolve_device(device)),
            "channel_names": list(cfg.channel_names),
            "view_params": _view_params(store),
            "obsm_keys": keys,
        }
    )
    block = dict(target.uns.get(UNS_ZEROSHOT, {}))
    block[key_added] = {k: v for k, v in entry.items() if v is not None}
    target.uns[UNS_ZEROSHOT] = block
    for k in keys:
        added(k, "obsm")
    added(f"{UNS_ZEROSHOT}']['{key_added}", "uns")


def _check_finite(feats, store, table, model_path, key_added) -> None:
    """Refuse to write NaN / inf embeddings: they mean damaged weights or views."""
    for view, x in feats.items():
        ok = np.isfinite(x).all(axis=1)
        if ok.all():
            continue
        rows = np.flatnonzero(~ok)
        if table is not None and table.n_obs == len(ok):
            ids = [str(i) for i in table.obs_names[rows[:5]]]
        else:
            ids = [str(i) for i in np.asarray(store.instance_id)[rows[:5]]]
        where = f"model {model_path}" if model_path else "the model"
        raise ValueError(
            f"{len(rows)} of {len(ok)} cells got non-finite (NaN or inf) {view} embeddings "
            f"from {where}, so nothing was written to .obsm[{key_added!r}]; first rows "
            f"{rows[:5].tolist()} (cell ids {ids}). The weights or these cells' views are "
            "damaged: reload the model (MADModel.load verifies its checksum), check the views "
            "of these cells (mad.pl.cell_views), or re-train."
        )


def _model_id(model) -> str:
    """Fingerprint the weights, shortly (same weights, same id)."""
    import hashlib

    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().float().numpy().tobytes()[:4096])
        h.update(str(float(t.float().sum())).encode())
    return h.hexdigest()[:16]


def _view_params(store) -> dict[str, Any]:
    keep = {}
    for k, v in (getattr(store, "attrs", {}) or {}).items():
        if isinstance(v, str | int | float | bool):
            keep[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v):
            keep[k] = list(v)
    if getattr(store, "path", None):
        keep["store"] = str(store.path)
    return keep
