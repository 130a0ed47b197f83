"""Resolve what ``weights=`` names: a local file, a hub model in the cache, a model folder.

Spellings (:func:`resolve_weights`):

- a local weights **file** (``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin``) in DINOv2, timm
  or reference-MAD layout (read by :func:`~madspatial.nn.load_backbone_weights`);
- a **timm model name with a pretrained tag** (``"vit_small_patch14_dinov2.lvd142m"``), a
  Hugging Face repo id (``"timm/vit_large_patch14_dinov2.lvd142m"``) or either behind
  ``"hf-hub:"``; an optional ``@revision`` suffix. The files (``config.json`` and
  ``model.safetensors``) are taken from huggingface_hub's cache (``HF_HUB_CACHE``, else
  ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``) without any network call when they are
  there; otherwise they are downloaded into that cache, unless ``HF_HUB_OFFLINE=1``, which
  raises :class:`WeightsNotCachedError` saying how to get them;
- a **folder saved by the reference MAD code** (github.com/You-Lab-MIT/MAD, DINOv2 training):
  ``config.yaml`` plus ``eval/training_<N>/teacher_checkpoint.pth`` (the latest ``N``), or
  plus one ``*.pth`` / ``*.pt`` checkpoint (e.g. the released ``checkpoint_mad.pt``, whose
  two backbones are chosen with ``prefix="morphology"`` / ``"neighborhood"``);
- a folder of a **timm model** (``config.json`` + ``model.safetensors``, what ``hf download
  --local-dir`` writes);
- a folder saved by :meth:`MADModel.save` (``kind="mad_model"``: ``mad.tl.pretrain``
  continues training from it).

The hub and reference folders also give the architecture (``backbone``: timm
``VisionTransformer`` keyword arguments) and the input standardisation the weights were
trained with (``pixel_mean`` / ``pixel_std``, RGB; ImageNet's when unrecorded).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._constants import MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, PATCH_SIZE

logger = logging.getLogger("madspatial")

#: ImageNet's RGB standardisation (DINOv2, timm ``IMAGENET_DEFAULT_MEAN/STD``).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

HUB_PREFIX = "hf-hub:"
#: Weights files looked up in a hub repo, in order (safetensors first: no pickle).
HUB_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_CONFIG_FILE = "config.json"
REFERENCE_CONFIG_FILE = "config.yaml"
REFERENCE_TEACHER_FILE = "teacher_checkpoint.pth"
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")

#: The reference code's (DINOv2's) ``student.arch`` names -> ViT shape.
REFERENCE_ARCHS: dict[str, dict[str, Any]] = {
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}

#: Architecture keys compared between ``model=`` and the weights' own architecture.
SHAPE_KEYS = ("embed_dim", "depth", "num_heads", "mlp_ratio")


class WeightsNotCachedError(FileNotFoundError):
    """A hub model is not in the local cache and downloading is not allowed."""


@dataclass
class ResolvedWeights:
    """What a ``weights=`` value resolved to (see :func:`resolve_weights`).

    Attributes
    ----------
    spec
        The value as the user gave it.
    kind
        ``"file"``, ``"hub"``, ``"timm_folder"``, ``"reference_mad"`` or ``"mad_model"``.
    path
        The weights file (the model folder for ``"mad_model"``).
    name
        A short name for keys and logs (the timm model name, the folder name, ...).
    prefix
        Key prefix of the backbone inside the file (``None``: detected).
    backbone
        timm ``VisionTransformer`` kwargs of the weights' architecture, when known.
    pixel_mean, pixel_std
        RGB standardisation the weights were trained with, when known.
    notes
        Where things came from (cache folder, revision, config fields read).
    """

    spec: str
    kind: str
    path: Path
    name: str
    prefix: str | None = None
    backbone: dict[str, Any] | None = None
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-able summary (for ``.uns`` and logs)."""
        return {
            "weights": self.spec,
            "kind": self.kind,
            "file": str(self.path),
            "name": self.name,
            "prefix": self.prefix,
            **{k: v for k, v in self.notes.items() if isinstance(v, str | int | float)},
        }


# ------------------------------------------------------------------ entry point
def resolve_weights(spec: str | os.PathLike, *, prefix: str | None = None) -> ResolvedWeights:
    """Resolve a ``weights=`` value (see the module docstring for the spellings).

    Parameters
    ----------
    spec
        Local file or folder, or a timm / Hugging Face hub model name.
    prefix
        Key prefix of the backbone in the weights (kept in the result).

    Returns
    -------
    A :class:`ResolvedWeights`. Nothing is downloaded unless ``spec`` names a hub model that
    is not cached and ``HF_HUB_OFFLINE`` is unset.
    """
    if isinstance(spec, os.PathLike) or _looks_like_path(str(spec)):
        return _resolve_local(Path(os.path.expanduser(str(spec))), str(spec), prefix)
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(
            f"weights must be a file or folder path or a hub model name (e.g. "
            f"'vit_small_patch14_dinov2.lvd142m'); got {spec!r} ({type(spec).__name__})."
        )
    return _resolve_hub(spec.strip(), prefix)


def _looks_like_path(spec: str) -> bool:
    if spec.startswith(HUB_PREFIX):
        return False
    if os.path.exists(os.path.expanduser(spec)):
        return True
    # hub names are "name.tag" or "owner/name": anything else path-like is a path
    return (
        spec.startswith((".", "/", "~"))
        or spec.lower().endswith(_WEIGHT_SUFFIXES)
        or spec.count("/") > 1
    )


# ------------------------------------------------------------------ local files and folders
def _resolve_local(path: Path, spec: str, prefix: str | None) -> ResolvedWeights:
    if path.is_file():
        return ResolvedWeights(spec, "file", path, path.stem, prefix=prefix)
    if not path.is_dir():
        raise FileNotFoundError(
            f"weights={spec!r}: no such file or folder. Pass a local weights file "
            "(.safetensors/.pt/.pth), a model folder, or a hub model name such as "
            "'vit_small_patch14_dinov2.lvd142m'."
        )
    if (path / MODEL_CONFIG_FILE).is_file() and (path / MODEL_WEIGHTS_FILE).is_file():
        cfg = _read_json(path / MODEL_CONFIG_FILE)
        if "format_version" in cfg:  # written by MADModel.save
            return ResolvedWeights(spec, "mad_model", path, path.name)
        if "architecture" in cfg:  # a timm model folder (hf download --local-dir)
            return _timm_weights(
                spec, "timm_folder", path / MODEL_WEIGHTS_FILE, cfg, prefix, {"folder": str(path)}
            )
    if (path / REFERENCE_CONFIG_FILE).is_file():
        return _resolve_reference(path, spec, prefix)
    found = sorted(p.name for p in path.iterdir())[:10]
    raise FileNotFoundError(
        f"weights={spec!r} is a folder but not a model folder madspatial reads: expected "
        f"{MODEL_CONFIG_FILE} + {MODEL_WEIGHTS_FILE} (MADModel.save or a timm model), or "
        f"{REFERENCE_CONFIG_FILE} + a checkpoint (reference MAD training output); found "
        f"{found}."
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}).") from err
    if not isinstance(d, dict):
        raise ValueError(f"{path} holds a JSON {type(d).__name__}, not a model config.")
    return d


def _resolve_reference(path: Path, spec: str, prefix: str | None) -> ResolvedWeights:
    """Resolve a reference-MAD (DINOv2 training) folder: ``config.yaml`` + a checkpoint."""
    import yaml

    cfg_file = path / REFERENCE_CONFIG_FILE
    try:
        cfg = yaml.safe_load(cfg_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{cfg_file} is not valid YAML ({err}).") from err
    ckpt = _reference_checkpoint(path)
    student = cfg.get("student") or {}
    crops = cfg.get("crops") or {}
    arch = str(student.get("arch", "vit_large"))
    if arch not in REFERENCE_ARCHS:
        raise ValueError(
            f"{cfg_file}: student.arch={arch!r} is not supported; madspatial builds "
            f"{sorted(REFERENCE_ARCHS)} (vit_giant2 uses a SwiGLU MLP it does not build)."
        )
    ffn = str(student.get("ffn_layer", "mlp"))
    if ffn != "mlp":
        raise ValueError(f"{cfg_file}: student.ffn_layer={ffn!r} is not supported (only 'mlp').")
    if int(student.get("num_register_tokens", 0) or 0):
        raise ValueError(
            f"{cfg_file}: student.num_register_tokens="
            f"{student.get('num_register_tokens')} is not supported (DINOv2 register tokens "
            "take no position embedding, timm's layout differs); use a checkpoint without "
            "registers."
        )
    # the checkpoint's tensors give the shape; the arch name gives the head count
    heads = REFERENCE_ARCHS[arch]["num_heads"]
    backbone = infer_architecture(
        ckpt, prefix, num_heads_by_dim={REFERENCE_ARCHS[arch]["embed_dim"]: heads}
    )
    if student.get("qkv_bias") is False:
        backbone["qkv_bias"] = False
    size = int(crops.get("global_crops_size", 224) or 224)
    if "img_size" not in backbone and size % PATCH_SIZE == 0:
        backbone["img_size"] = size
    mean = crops.get("normalize_mean") or IMAGENET_MEAN
    std = crops.get("normalize_std") or IMAGENET_STD
    notes = {"config": str(cfg_file), "arch": arch, "patch_size": student.get("patch_size", "")}
    return ResolvedWeights(
        spec,
        "reference_mad",
        ckpt,
        path.name,
        prefix=prefix,
        backbone=backbone,
        pixel_mean=tuple(float(x) for x in mean),
        pixel_std=tuple(float(x) for x in std),
        notes=notes,
    )


def _reference_checkpoint(path: Path) -> Path:
    """Return the latest ``eval/*/teacher_checkpoint.pth``, else the folder's one checkpoint."""
    evals = []
    for f in path.glob(f"eval/*/{REFERENCE_TEACHER_FILE}"):
        digits = re.findall(r"\d+", f.parent.name)
        evals.append((int(digits[-1]) if digits else -1, f))
    if evals:
        return max(evals)[1]
    top = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix in (".pth", ".pt", ".safetensors")
    )
    teacher = [p for p in top if p.name == REFERENCE_TEACHER_FILE]
    if teacher:
        return teacher[0]
    if len(top) == 1:
        return top[0]
    if not top:
        raise FileNotFoundError(
            f"{path} has {REFERENCE_CONFIG_FILE} but no checkpoint: expected "
            f"eval/training_<N>/{REFERENCE_TEACHER_FILE} or one .pth/.pt file."
        )
    raise ValueError(
        f"{path} holds {len(top)} checkpoints {[p.name for p in top]}; pass the file itself "
        f"as weights= (e.g. weights={str(path / top[0].name)!r})."
    )


# ------------------------------------------------------------------ hub models
def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, read from the environment now (not at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it (1/true/yes/on), read now."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_repo(spec: str) -> tuple[str, str | None, str]:
    """``(repo_id, revision, display name)`` of a timm name / repo id / ``hf-hub:`` spec."""
    name = spec[len(HUB_PREFIX) :] if spec.startswith(HUB_PREFIX) else spec
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
    if "/" in name:
        return name, revision, name.split("/")[-1]
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as err:  # a known architecture with an unknown tag
        raise ValueError(
            f"weights={spec!r}: {err} See timm.list_pretrained('{name.split('.')[0]}*')."
        ) from err
    if cfg is None:
        raise ValueError(
            f"weights={spec!r} is neither a local file or folder nor a timm pretrained "
            "model name (e.g. 'vit_small_patch14_dinov2.lvd142m', "
            "'timm/vit_large_patch14_dinov2.lvd142m'); list them with "
            "timm.list_pretrained('vit_*dinov2*')."
        )
    if not cfg.hf_hub_id:
        raise ValueError(
            f"weights={spec!r}: timm has no Hugging Face hub copy of this model (its weights "
            "come from a URL); download them yourself and pass the file."
        )
    return cfg.hf_hub_id, revision, name


def _resolve_hub(spec: str, prefix: str | None) -> ResolvedWeights:
    repo_id, revision, name = hub_repo(spec)
    cache = hub_cache_dir()
    cfg_path = _cached(repo_id, HUB_CONFIG_FILE, revision, cache)
    w_path = next(
        (p for f in HUB_WEIGHTS_FILES if (p := _cached(repo_id, f, revision, cache))), None
    )
    if cfg_path is None or w_path is None:
        if hub_offline():
            missing = [
                f
                for f, p in ((HUB_CONFIG_FILE, cfg_path), ("model.safetensors", w_path))
                if p is None
            ]
            rev = f" --revision {revision}" if revision else ""
            raise WeightsNotCachedError(
                f"weights={spec!r} (no local file or folder of that name): the hub model "
                f"{repo_id} is not in the Hugging Face cache "
                f"{cache} ({', '.join(missing)} missing) and HF_HUB_OFFLINE=1 forbids "
                f"downloading it. Get it on a machine with network with `hf download "
                f"{repo_id} {HUB_CONFIG_FILE} model.safetensors{rev}` (the same HF_HOME / "
                "HF_HUB_CACHE), or unset HF_HUB_OFFLINE to let madspatial download it, or "
                "pass a local weights file."
            )
        cfg_path, w_path = _download(repo_id, revision, cache)
    cfg = _read_json(Path(cfg_path))
    notes = {"repo_id": repo_id, "cache": str(cache)}
    if revision:
        notes["revision"] = revision
    res = _timm_weights(spec, "hub", Path(w_path), cfg, prefix, notes)
    res.name = name
    return res


def _cached(repo_id: str, filename: str, revision: str | None, cache: Path) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=revision)
    return found if isinstance(found, str) and os.path.isfile(found) else None


def _download(repo_id: str, revision: str | None, cache: Path) -> tuple[str, str]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    logger.warning(
        "downloading %s from the Hugging Face hub into %s (set HF_HUB_OFFLINE=1 to forbid "
        "downloads)",
        repo_id,
        cache,
    )
    kw = {"revision": revision, "cache_dir": cache, "library_name": "madspatial"}
    cfg_path = hf_hub_download(repo_id, HUB_CONFIG_FILE, **kw)
    for fname in HUB_WEIGHTS_FILES:
        try:
            return cfg_path, hf_hub_download(repo_id, fname, **kw)
        except EntryNotFoundError:
            continue
    raise FileNotFoundError(f"hub repo {repo_id} has none of {list(HUB_WEIGHTS_FILES)}.")


def _timm_weights(spec, kind, w_path, cfg, prefix, notes) -> ResolvedWeights:
    """Architecture and standardisation from a timm ``config.json``."""
    arch = cfg.get("architecture")
    pcfg = cfg.get("pretrained_cfg") or {}
    if not isinstance(arch, str):
        raise ValueError(f"{spec!r}: config.json names no timm 'architecture' ({sorted(cfg)}).")
    backbone = timm_architecture(arch, cfg.get("model_args") or {})
    notes = {**notes, "architecture": arch}
    mean, std = pcfg.get("mean") or IMAGENET_MEAN, pcfg.get("std") or IMAGENET_STD
    return ResolvedWeights(
        spec,
        kind,
        Path(w_path),
        arch,
        prefix=prefix,
        backbone=backbone,
        pixel_mean=tuple(float(x) for x in mean),
        pixel_std=tuple(float(x) for x in std),
        notes=notes,
    )


def timm_architecture(arch: str, model_args: dict[str, Any]) -> dict[str, Any]:
    """ViTBackbone kwargs of a timm ViT architecture (built on the meta device: no memory)."""
    import timm
    import torch
    from timm.layers import Mlp
    from timm.models.vision_transformer import VisionTransformer

    args = {k: v for k, v in model_args.items() if k not in ("in_chans", "num_classes")}
    try:
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False, num_classes=0, **args)
    except Exception as err:  # unknown architecture or arguments
        raise ValueError(f"timm cannot build architecture {arch!r} ({err}).") from err
    if not isinstance(model, VisionTransformer):
        raise ValueError(
            f"{arch!r} is a {type(model).__name__}, not a timm VisionTransformer; madspatial's "
            "backbone is a ViT (e.g. vit_small_patch14_dinov2, vit_large_patch14_dinov2)."
        )
    blk = model.blocks[0]
    if type(blk.mlp) is not Mlp or not model.has_class_token:
        raise ValueError(
            f"{arch!r} uses a {type(blk.mlp).__name__} MLP / class_token={model.has_class_token}; "
            "madspatial's backbone builds a plain-MLP ViT with a class token (DINOv2 ViT-S/B/L)."
        )
    out: dict[str, Any] = {
        "embed_dim": int(model.embed_dim),
        "depth": len(model.blocks),
        "num_heads": int(blk.attn.num_heads),
        "mlp_ratio": blk.mlp.fc1.out_features / model.embed_dim,
        "img_size": int(model.patch_embed.img_size[0]),
    }
    if hasattr(blk.ls1, "gamma"):
        out["init_values"] = 1e-5  # the gammas themselves come with the weights
    if blk.attn.qkv.bias is None:
        out["qkv_bias"] = False
    if model.num_reg_tokens:
        out["reg_tokens"] = int(model.num_reg_tokens)
    if model.no_embed_class:
        out["no_embed_class"] = True
    if out["img_size"] % PATCH_SIZE:
        out["img_size"] = PATCH_SIZE * max(1, round(out["img_size"] / PATCH_SIZE))
    return out


def shape_mismatch(model_kwargs: dict[str, Any], weights: dict[str, Any]) -> dict[str, tuple]:
    """``{key: (model, weights)}`` for the ViT shape keys that differ."""
    defaults = {"mlp_ratio": 4.0}
    diff = {}
    for k in SHAPE_KEYS:
        a, b = model_kwargs.get(k, defaults.get(k)), weights.get(k, defaults.get(k))
        if a is None or b is None:
            continue
        if (abs(float(a) - float(b)) > 1e-6) if k == "mlp_ratio" else int(a) != int(b):
            diff[k] = (a, b)
    return diff


def matching_preset(weights: dict[str, Any]) -> str | None:
    """Return the :data:`BACKBONE_PRESETS` name with the same ViT shape, if any."""
    from ._backbone import BACKBONE_PRESETS

    for name, kw in BACKBONE_PRESETS.items():
        if not shape_mismatch(kw, weights):
            return name
    return None


def rgb_to_channels(values: tuple[float, ...] | None, default, in_chans: int) -> list[float]:
    """Per-channel standardisation for ``in_chans`` channels from an RGB one.

    Three channels keep the RGB values; any other count gets the mean of the RGB values on
    every channel, matching the patch-embedding adaptation (the mean RGB filter on every
    channel, :func:`~madspatial.nn.load_backbone_weights`): a C-channel image whose channels
    all equal a plane then gets what the RGB model gets for that plane as a grey image,
    up to ImageNet's small per-channel differences.
    """
    vals = tuple(values) if values else tuple(default)
    if in_chans == len(vals):
        return [float(v) for v in vals]
    return [float(sum(vals) / len(vals))] * in_chans


# ------------------------------------------------------------------ architecture of a file
def infer_architecture(
    path: str | Path, prefix: str | None = None, *, num_heads_by_dim: dict[int, int] | None = None
) -> dict[str, Any]:
    """ViT shape of a weights file: width, depth, MLP ratio, LayerScale, position grid.

    The head count is not stored in a state dict: ``num_heads_by_dim[embed_dim]`` when
    given, else ``embed_dim / 64`` (the head width of every DINOv2 and timm ViT-S/B/L).
    """
    from ._weights import _select_prefix, read_state_dict

    flat = read_state_dict(path)
    chosen = _select_prefix(flat.keys(), prefix)
    sd = {k[len(chosen) :]: v for k, v in flat.items() if k.startswith(chosen)}
    sd = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in sd.items()}
    if "cls_token" not in sd:
        raise ValueError(f"{path}: no cls_token under prefix {chosen!r}; not a class-token ViT.")
    dim = int(sd["cls_token"].shape[-1])
    depth = len({int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))})
    known = (num_heads_by_dim or {}).get(dim)
    if known is None and dim % 64:
        raise ValueError(
            f"{path}: a {dim}-d ViT; its head count cannot be inferred (not a multiple of 64). "
            "Pass a hub model name or a folder with its config instead of the bare file."
        )
    heads = known if known is not None else dim // 64
    out: dict[str, Any] = {"embed_dim": dim, "depth": depth, "num_heads": heads}
    if "blocks.0.mlp.fc1.weight" in sd:
        out["mlp_ratio"] = sd["blocks.0.mlp.fc1.weight"].shape[0] / dim
    if "blocks.0.ls1.gamma" in sd:
        out["init_values"] = 1e-5
    pos = sd.get("pos_embed")
    if pos is not None:
        side = round((pos.shape[1] - 1) ** 0.5)
        if side * side == pos.shape[1] - 1:
            out["img_size"] = side * PATCH_SIZE
    return out


# ------------------------------------------------------------------ zero-shot model
def zeroshot_model(
    resolved: ResolvedWeights,
    *,
    in_chans: int,
    channel_names: list[str] | None = None,
    morphology_size: int = 70,
    microenvironment_size: int = 224,
    seed: int = 0,
):
    """Build a :class:`~madspatial.nn.MADModel` around the pretrained ViT, untrained by MAD.

    Only the backbone matters (its class token is the embedding); the DINO head is a minimal
    placeholder. The input is standardised as the weights expect (:func:`rgb_to_channels`),
    and the patch embedding is adapted to ``in_chans`` channels by
    :func:`~madspatial.nn.load_backbone_weights`.

    Returns
    -------
    ``(model, report)``: the model in eval mode and the :class:`~madspatial.nn.LoadReport`.
    """
    import torch

    from ._model import MADConfig, MADModel
    from ._weights import load_backbone_weights

    if resolved.kind == "mad_model":
        raise ValueError(
            f"weights={resolved.spec!r} is a trained MAD model, not pretrained backbone "
            "weights; embed with it as model= (mad.tl.embed(sdata, model=...))."
        )
    backbone = resolved.backbone or infer_architecture(resolved.path, resolved.prefix)
    img_size = int(backbone.get("img_size", 224))
    config = MADConfig(
        backbone=dict(backbone),
        in_chans=in_chans,
        channel_names=channel_names,
        morphology_size=morphology_size,
        microenvironment_size=microenvironment_size,
        head_layers=1,
        head_hidden_dim=8,
        head_bottleneck_dim=8,
        n_prototypes=8,
        pixel_mean=rgb_to_channels(resolved.pixel_mean, IMAGENET_MEAN, in_chans),
        pixel_std=rgb_to_channels(resolved.pixel_std, IMAGENET_STD, in_chans),
        img_size=img_size,
        metadata={"zeroshot": resolved.record()},
    )
    # a fixed seed for what the weights leave at init (the placeholder head), without
    # touching the caller's global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MADModel(config)
    report = load_backbone_weights(model.backbone, resolved.path, prefix=resolved.prefix)
    if report.missing:
        from .._warnings import warn_user

        warn_user(
            f"weights={resolved.spec!r} leave backbone parameters {report.missing[:6]} at "
            "their random initial values: the zero-shot embedding is not the pretrained "
            "model's. Check the architecture (and prefix=) of the weights."
        )
    config.metadata["zeroshot"]["adapted"] = list(report.adapted)
    return model.eval(), report
