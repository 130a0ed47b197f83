"""Initialise a backbone from a local weights file: DINOv2, timm or reference-MAD layout.

Nothing is downloaded. Files are read with safetensors or ``torch.load(weights_only=True)``
(no pickle code execution). Supported layouts, all mapped onto timm parameter names:

- DINOv2 official (``patch_embed.proj.weight``, ``pos_embed``, ``cls_token``,
  ``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.ls1.gamma``, ``mask_token``;
  chunked ``blocks.C.N.*`` too);
- timm (the same names, plus a classifier ``head.*`` that is ignored);
- the reference MAD checkpoints, whose two backbones sit under
  ``backbones.morphology.*`` and ``backbones.neighborhood.*`` (choose with ``prefix=``);
- any of the above nested in a checkpoint dict (``{"model": {...}}``, ``{"teacher": ...}``)
  or behind a DDP ``module.`` prefix.

Adaptations (each listed in the returned :class:`LoadReport`):

- **channels**: a patch embedding trained on ``C_src`` channels (RGB: 3) is turned into
  ``C`` channels by averaging its per-channel filters and replicating the mean, scaled by
  ``C_src / C``. An image whose ``C`` channels are all equal to a plane ``x`` then gives
  exactly the response the source model gave to ``C_src`` copies of ``x``; microscopy
  channels have no RGB order, so no channel is privileged.
- **patch size**: a kernel of another patch size is resampled (timm ``resample_patch_embed``).
- **position embedding**: resized to the backbone's grid (timm ``resample_abs_pos_embed``,
  bicubic, the same interpolation the backbone uses for other input sizes).
- **LayerScale**: weights with ``ls1/ls2.gamma`` loaded into a backbone without LayerScale
  are folded exactly into ``attn.proj`` / ``mlp.fc2``; the reverse sets ``gamma = 1``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed

logger = logging.getLogger("madspatial")

_ANCHOR = "patch_embed.proj.weight"
_CONTAINER_KEYS = ("teacher", "model", "state_dict", "student", "module")


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did.

    Attributes
    ----------
    source
        File path or ``"<state dict>"``.
    prefix
        The key prefix that was selected (``""`` for none).
    loaded
        Backbone parameters/buffers taken from the weights.
    missing
        Backbone parameters left at their initial values (absent from the weights).
    unexpected
        Keys under the prefix that the backbone has no use for (e.g. ``mask_token``, a
        classifier ``head``, ``register_tokens``).
    adapted
        Human-readable notes on each adaptation (channels, position grid, LayerScale).
    """

    source: str
    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors from {self.source} (prefix {self.prefix!r}); "
            f"missing {self.missing or 'none'}; unexpected {self.unexpected or 'none'}; "
            f"adapted: {'; '.join(self.adapted) or 'nothing'}"
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a ``.safetensors`` file or a torch file, without unpickling code.

    Nested checkpoint dicts are flattened into dotted keys (``{"teacher": {"backbone.x": t}}``
    becomes ``"teacher.backbone.x"``); non-tensor entries are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refused or not a torch file
        raise ValueError(
            f"could not read {path} with torch.load(weights_only=True) ({err}). madspatial "
            "only reads plain tensor state dicts; re-save the weights as safetensors or as "
            "a dict of tensors."
        ) from err
    return _flatten(obj)


def _flatten(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def _candidate_prefixes(keys) -> list[str]:
    return sorted({k[: -len(_ANCHOR)] for k in keys if k.endswith(_ANCHOR)})


def _select_prefix(keys, prefix: str | None) -> str:
    candidates = _candidate_prefixes(keys)
    if not candidates:
        raise ValueError(
            f"no '{_ANCHOR}' key found in the weights: not a ViT backbone state dict "
            f"(first keys: {sorted(keys)[:5]})."
        )
    if prefix is not None:
        want = prefix if prefix == "" or prefix.endswith(".") else prefix + "."
        if want in candidates:
            return want
        # Accept an unambiguous tail, e.g. "backbones.morphology" inside "model.backbones..."
        # or simply "morphology".
        tail = [c for c in candidates if c.endswith("." + want) or c.endswith(want)]
        if len(tail) == 1:
            return tail[0]
        raise ValueError(
            f"prefix {prefix!r} matches {len(tail)} backbones in the weights; available "
            f"prefixes: {candidates}."
        )
    if len(candidates) == 1:
        return candidates[0]
    # A checkpoint with student and teacher copies: the teacher is the one to use (DINO).
    teachers = [c for c in candidates if c.startswith("teacher.")]
    if len(teachers) == 1:
        return teachers[0]
    raise ValueError(
        f"the weights hold {len(candidates)} backbones: {candidates}; choose one with "
        "prefix=..., e.g. prefix='backbones.morphology' for the reference MAD checkpoints."
    )


def _adapt_channels(w: torch.Tensor, in_chans: int) -> torch.Tensor:
    src = w.shape[1]
    mean = w.float().mean(dim=1, keepdim=True)
    return (mean * (src / in_chans)).expand(-1, in_chans, -1, -1).contiguous().to(w.dtype)


def load_backbone_weights(
    backbone: torch.nn.Module,
    path_or_state_dict: str | Path | Mapping[str, torch.Tensor],
    *,
    prefix: str | None = None,
    strict: bool = False,
) -> LoadReport:
    """Load pretrained weights into a :class:`~madspatial.nn.ViTBackbone`, adapting them.

    Parameters
    ----------
    backbone
        The backbone (from :func:`build_backbone`), modified in place.
    path_or_state_dict
        A local ``.safetensors`` / ``.pt`` / ``.pth`` file, or a (possibly nested) dict of
        tensors, in DINOv2, timm or reference-MAD layout (see the module docstring).
    prefix
        Key prefix of the backbone inside the weights, e.g. ``"backbones.morphology"`` or
        ``"backbones.neighborhood"`` for the reference MAD checkpoints (an unambiguous tail
        such as ``"morphology"`` suffices). ``None`` detects it: the one backbone present,
        else the ``teacher.`` copy, else an error listing the candidates.
    strict
        Raise if any backbone parameter is missing from the weights or any key under the
        prefix is unused.

    Returns
    -------
    A :class:`LoadReport` (also logged at INFO; missing keys at WARNING).
    """
    source, flat = _read_weights(path_or_state_dict)
    chosen = _select_prefix(flat.keys(), prefix)
    sd = {k[len(chosen) :]: v for k, v in flat.items() if k.startswith(chosen)}
    report = LoadReport(source=source, prefix=chosen)

    # DINOv2 chunked blocks ("blocks.<chunk>.<global index>.") -> "blocks.<global index>."
    sd = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in sd.items()}

    target = backbone.state_dict()
    out = _layer_scale(sd, target, report)
    for key, value in sd.items():
        if key not in target:
            report.unexpected.append(key)
            continue
        want = target[key].shape
        if key == "patch_embed.proj.weight":
            value = _adapt_patch_embed(key, value, want, report)
        elif key == "pos_embed" and value.shape != want:
            value = _adapt_pos_embed(backbone, value, want, report)
        _check_shape(key, value, want, embed_dim=target["cls_token"].shape[-1])
        out[key] = value.to(target[key].dtype)

    report.loaded = sorted(out)
    report.missing = sorted(k for k in target if k not in out)
    if strict and (report.missing or report.unexpected):
        raise ValueError(
            f"strict loading failed: missing {report.missing}, unexpected {report.unexpected}."
        )
    backbone.load_state_dict(out, strict=False)
    logger.info("backbone weights: %s", report)
    if report.missing:
        logger.warning("backbone parameters not in the weights (kept at init): %s", report.missing)
    return report


# ---------------------------------------------------------- steps of load_backbone_weights
def _read_weights(path_or_state_dict) -> tuple[str, dict[str, torch.Tensor]]:
    """``(source name, flat state dict)`` of a weights file or a (nested) dict of tensors."""
    if isinstance(path_or_state_dict, str | Path):
        return str(path_or_state_dict), read_state_dict(path_or_state_dict)
    return "<state dict>", _flatten(path_or_state_dict)


def _layer_scale(sd: dict, target: Mapping, report: LoadReport) -> dict[str, torch.Tensor]:
    """Reconcile LayerScale between the weights and the backbone.

    Fold the source gammas into ``sd``'s projections (in place) when the backbone has none, or
    return gammas of 1 when only the backbone has them.
    """
    out: dict[str, torch.Tensor] = {}
    has_ls = any(k.endswith("ls1.gamma") for k in target)
    src_ls = sorted(k for k in sd if re.search(r"\.ls[12]\.gamma$", k))
    if src_ls and not has_ls:
        for key in src_ls:
            gamma = sd.pop(key).float()
            proj = key.replace("ls1.gamma", "attn.proj").replace("ls2.gamma", "mlp.fc2")
            for suffix, scale in ((".weight", gamma[:, None]), (".bias", gamma)):
                if proj + suffix in sd:
                    t = sd[proj + suffix]
                    sd[proj + suffix] = (t.float() * scale).to(t.dtype)
        report.adapted.append(f"folded {len(src_ls)} LayerScale gammas into attn.proj/mlp.fc2")
    elif has_ls and not src_ls:
        for key in target:
            if key.endswith(("ls1.gamma", "ls2.gamma")):
                out[key] = torch.ones_like(target[key])
        report.adapted.append("weights have no LayerScale: set gamma = 1 (identity)")
    return out


def _adapt_patch_embed(key: str, value: torch.Tensor, want, report: LoadReport) -> torch.Tensor:
    """Resample the patch embedding to the backbone's patch size and channel count."""
    if value.ndim != 4 or value.shape[0] != want[0]:
        raise ValueError(
            f"cannot adapt {key}: weights have shape {tuple(value.shape)}, backbone "
            f"needs {tuple(want)} (embedding width differs: build the backbone with "
            f"embed_dim={value.shape[0]})."
        )
    if value.shape[-2:] != want[-2:]:
        value = resample_patch_embed(value.float(), list(want[-2:])).to(value.dtype)
        report.adapted.append(f"patch kernel resampled to {tuple(want[-2:])}")
    if value.shape[1] != want[1]:
        report.adapted.append(
            f"patch embedding {value.shape[1]} -> {want[1]} channels "
            f"(mean filter x {value.shape[1]}/{want[1]})"
        )
        value = _adapt_channels(value, want[1])
    return value


def _adapt_pos_embed(backbone, value: torch.Tensor, want, report: LoadReport) -> torch.Tensor:
    """Resize the position embedding to the backbone's patch grid."""
    n_prefix = 0 if getattr(backbone, "no_embed_class", False) else 1
    grid_src = value.shape[1] - n_prefix
    side = round(grid_src**0.5)
    if value.ndim != 3 or value.shape[-1] != want[-1] or side * side != grid_src:
        raise ValueError(
            f"cannot adapt pos_embed of shape {tuple(value.shape)} to {tuple(want)} "
            f"(expects a square grid plus {n_prefix} class-token position)."
        )
    grid = backbone.patch_embed.grid_size
    value = resample_abs_pos_embed(
        value.float(),
        new_size=list(grid),
        old_size=[side, side],
        num_prefix_tokens=n_prefix,
    ).to(value.dtype)
    report.adapted.append(f"pos_embed grid {side}x{side} -> {grid[0]}x{grid[1]}")
    return value


def _check_shape(key: str, value: torch.Tensor, want, *, embed_dim: int) -> None:
    if value.shape != want:
        hint = ""
        if value.ndim and len(want) and value.shape[-1] != want[-1]:
            hint = (
                f" (weights are {value.shape[-1]}-d, the backbone {embed_dim}-d: "
                "pick the matching preset)"
            )
        raise ValueError(
            f"shape mismatch for {key}: weights {tuple(value.shape)} vs backbone "
            f"{tuple(want)}{hint}."
        )
