"""``MADModel``: one shared ViT backbone + one DINO head, with its config and save/load.

Input scale (the contract between augmentation, training and embedding): the model takes
images as float in ``[0, 1]`` (``uint8 / 255``), which is exactly what
:class:`~madspatial.nn.MultiCropAugment` outputs and what :meth:`MADModel.preprocess` makes
of the view store's uint8 pixels. The per-channel standardisation ``(x - mean) / std``
(``MADConfig.pixel_mean`` / ``pixel_std``) happens *inside* :meth:`MADModel.forward_features`,
so training and embedding cannot disagree on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._constants import (
    MODEL_CONFIG_FILE,
    MODEL_HISTORY_FILE,
    MODEL_WEIGHTS_FILE,
    VIEW_MICROENVIRONMENT,
    VIEW_MORPHOLOGY,
)
from .._serialize import atomic_text as _atomic_text
from .._serialize import atomic_write as _atomic
from .._serialize import json_default as _jsonable
from .._version import __version__
from ._backbone import build_backbone
from ._config import MODEL_FORMAT_VERSION, MADConfig
from ._head import DINOHead, ViewHeads

logger = logging.getLogger("madspatial")


def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy array, got {type(x).__name__}.")
    return x.to(device, non_blocking=True)


class MADModel(nn.Module):
    """One shared ViT backbone and one DINO head (a student, or its EMA teacher copy).

    Parameters
    ----------
    config
        Architecture and view settings.
    weights
        Optional local pretrained backbone weights (see
        :func:`~madspatial.nn.load_backbone_weights`); nothing is downloaded.
    weights_prefix
        Key prefix of the backbone in ``weights``.
    grad_checkpointing
        Activation checkpointing in the backbone blocks.

    Attributes
    ----------
    config
        The :class:`MADConfig`.
    backbone
        :class:`~madspatial.nn.ViTBackbone`.
    head
        :class:`~madspatial.nn.DINOHead`, or :class:`~madspatial.nn.ViewHeads` (one head
        per view) when ``config.view_heads``.
    history
        Training history attached by the trainer (saved as ``history.json``), or ``None``.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        config: MADConfig,
        *,
        weights: str | Path | Mapping[str, torch.Tensor] | None = None,
        weights_prefix: str | None = None,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = build_backbone(
            config.backbone,
            in_chans=config.in_chans,
            weights=weights,
            prefix=weights_prefix,
            grad_checkpointing=grad_checkpointing,
            drop_path_rate=config.drop_path_rate,
            img_size=config.img_size,
        )
        head_kwargs = dict(
            n_layers=config.head_layers,
            hidden_dim=config.head_hidden_dim,
            bottleneck_dim=config.head_bottleneck_dim,
            n_prototypes=config.n_prototypes,
        )
        self.head = (
            ViewHeads(
                self.backbone.embed_dim,
                config.views,
                predictors=config.predictor_heads,
                **head_kwargs,
            )
            if config.view_heads
            else DINOHead(self.backbone.embed_dim, **head_kwargs)
        )
        # non-persistent: derived from the config, so the safetensors hold only weights
        shape = (1, config.in_chans, 1, 1)
        mean = torch.tensor(config.pixel_mean, dtype=torch.float32).reshape(shape)
        std = torch.tensor(config.pixel_std, dtype=torch.float32).reshape(shape)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.history: dict[str, Any] | None = None

    # ------------------------------------------------------------------ forward
    @property
    def views(self) -> tuple[str, ...]:
        """Views used by the model's mode."""
        return self.config.views

    @property
    def embed_dim(self) -> int:
        """Class-token width ``D``."""
        return int(self.backbone.embed_dim)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    @staticmethod
    def preprocess(x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` pixels -> float32 in ``[0, 1]``, the model's input scale.

        Float input is assumed to be on that scale already and is returned as float32.
        """
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        if not torch.is_floating_point(x):
            raise TypeError(f"expected uint8 or float images, got dtype {x.dtype}.")
        return x.float()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Class token ``(B, D)`` of images in ``[0, 1]`` (standardised here)."""
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(
                f"expected (B, {self.config.in_chans}, H, W) images "
                f"(channels {self.config.channel_names}), got shape {tuple(x.shape)}."
            )
        x = (x - self.pixel_mean) / self.pixel_std
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Prototype logits ``head(backbone(x))``: ``(B, K)``, or ``(B, 2K)`` with view heads."""
        return self.head(self.forward_features(x))

    def embed(
        self,
        morph: torch.Tensor | np.ndarray | None = None,
        micro: torch.Tensor | np.ndarray | None = None,
        *,
        autocast_dtype: torch.dtype | None = None,
    ) -> dict[str, torch.Tensor]:
        """Class tokens of the given views, without gradients.

        Parameters
        ----------
        morph
            Morphology views ``(B, C, Hm, Wm)``, uint8 pixels or float in ``[0, 1]``.
        micro
            Microenvironment views ``(B, C, He, We)``, same convention.
        autocast_dtype
            Run under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``).

        Returns
        -------
        ``{"morphology": (B, D), "microenvironment": (B, D)}`` float32 tensors on the model's
        device, for the views that were given. The switch to eval mode is undone afterwards.
        """
        inputs = {VIEW_MORPHOLOGY: morph, VIEW_MICROENVIRONMENT: micro}
        if all(v is None for v in inputs.values()):
            raise ValueError("embed() needs at least one of morph= and micro=.")
        device = self.device
        was_training = self.training
        self.eval()
        out: dict[str, torch.Tensor] = {}
        try:
            with torch.inference_mode():
                for view, x in inputs.items():
                    if x is None:
                        continue
                    x = self.preprocess(_as_tensor(x, device))
                    if autocast_dtype is None:
                        out[view] = self.forward_features(x).float()
                    else:
                        with torch.autocast(device.type, dtype=autocast_dtype):
                            out[view] = self.forward_features(x).float()
        finally:
            self.train(was_training)
        return out

    # ------------------------------------------------------------------ save / load
    def save(
        self, directory: str | Path, *, state_dict: Mapping[str, torch.Tensor] | None = None
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and (if set) ``history.json``.

        ``config.json`` records the sha256 of ``model.safetensors`` and of the config's own
        fields (``integrity``), and the weights file records the config's hash in its
        metadata, so :meth:`load` detects damaged weights and a config (e.g. its
        ``pixel_mean``) that no longer belongs to them.

        Parameters
        ----------
        directory
            Target folder (created). Files are written to temporaries and renamed, so an
            interrupted save never leaves a half-written file; they get the permissions
            of a newly created file (``0o666 & ~umask``).
        state_dict
            Full state dict to save instead of ``self.state_dict()`` (e.g. gathered from an
            FSDP-sharded model on rank 0).

        Returns
        -------
        The directory.
        """
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sd = self.state_dict() if state_dict is None else state_dict
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
        config = _canonical(self.config.to_dict())
        config_sha = _config_sha256(config)
        meta = {
            "format_version": str(MODEL_FORMAT_VERSION),
            "madspatial": __version__,
            INTEGRITY_CONFIG: config_sha,
        }
        digest: dict[str, str] = {}

        def write_weights(tmp: str) -> None:
            save_file(tensors, tmp, metadata=meta)
            digest["sha"] = _sha256_file(tmp)

        _atomic(directory / MODEL_WEIGHTS_FILE, write_weights)
        config[INTEGRITY_KEY] = {
            "weights_file": MODEL_WEIGHTS_FILE,
            INTEGRITY_WEIGHTS: digest["sha"],
            INTEGRITY_CONFIG: config_sha,
        }
        _atomic_text(directory / MODEL_CONFIG_FILE, json.dumps(config, indent=2))
        if self.history is not None:
            _atomic_text(
                directory / MODEL_HISTORY_FILE,
                json.dumps(self.history, indent=1, default=_jsonable),
            )
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, map_location: str | torch.device = "cpu") -> MADModel:
        """Load a model written by :meth:`save` (safetensors only, no pickle).

        The weights are checked against the sha256 recorded in ``config.json`` and the
        config against its own recorded hash; a damaged or mismatched file raises
        :class:`ModelFileError` naming it. A damaged ``history.json`` only warns.

        Parameters
        ----------
        directory
            Folder holding ``config.json`` and ``model.safetensors``.
        map_location
            Device to put the weights on.

        Returns
        -------
        The model in eval mode, with :attr:`history` set when ``history.json`` exists.
        """
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, w_path = directory / MODEL_CONFIG_FILE, directory / MODEL_WEIGHTS_FILE
        if not directory.is_dir():
            raise FileNotFoundError(
                f"model folder {directory} not found, so it is not a saved MADModel; pass the "
                "folder written by mad.tl.pretrain (or MADModel.save)."
            )
        if not cfg_path.is_file():
            raise FileNotFoundError(
                f"{cfg_path} not found: {directory} is not a saved MADModel "
                f"(expected {MODEL_CONFIG_FILE} and {MODEL_WEIGHTS_FILE})."
            )
        d = _read_config(cfg_path)
        if not w_path.is_file():
            raise FileNotFoundError(
                f"{w_path} not found: {directory} is not a complete saved MADModel "
                f"(expected {MODEL_CONFIG_FILE} and {MODEL_WEIGHTS_FILE}). {_FIX}"
            )
        integrity = d.pop(INTEGRITY_KEY, None)
        if d.get("format_version") != MODEL_FORMAT_VERSION:
            MADConfig.from_dict(d)  # raises the format-version error (before any checksum)
        if isinstance(integrity, dict):
            if integrity.get(INTEGRITY_CONFIG) != _config_sha256(d):
                raise ModelFileError(
                    cfg_path,
                    "its fields (e.g. pixel_mean, pixel_std, channel_names) were changed after "
                    f"the model was saved: they no longer match the checksum saved with "
                    f"{MODEL_WEIGHTS_FILE}",
                )
            sha = _sha256_file(w_path)
            if sha != integrity.get(INTEGRITY_WEIGHTS):
                raise ModelFileError(
                    w_path,
                    f"its sha256 {sha[:16]}... differs from the one recorded in "
                    f"{MODEL_CONFIG_FILE} ({str(integrity.get(INTEGRITY_WEIGHTS))[:16]}...): the "
                    "file is damaged or comes from another save",
                )
        else:
            logger.warning(
                "%s records no checksum of %s (saved by madspatial %s, before checksums): the "
                "weights cannot be verified; re-save the model to add one.",
                cfg_path,
                MODEL_WEIGHTS_FILE,
                d.get("version", "unknown"),
            )
        config = MADConfig.from_dict(d)
        model = cls(config)
        try:
            sd = load_file(str(w_path), device="cpu")
        except Exception as err:  # SafetensorError, OSError: the path is what the user needs
            raise ModelFileError(
                w_path, f"it cannot be read ({type(err).__name__}: {err})"
            ) from err
        if isinstance(integrity, dict):
            saved_cfg = _weights_metadata(w_path).get(INTEGRITY_CONFIG)
            if saved_cfg is not None and saved_cfg != integrity.get(INTEGRITY_CONFIG):
                raise ModelFileError(
                    w_path,
                    f"it was saved with another {MODEL_CONFIG_FILE} (config sha256 in its "
                    "metadata differs)",
                )
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as err:
            raise ValueError(f"weights in {w_path} do not match config.json: {err}") from err
        hist = directory / MODEL_HISTORY_FILE
        if hist.is_file():
            try:
                model.history = json.loads(hist.read_text())
            except (OSError, ValueError) as err:
                from .._warnings import warn_user

                warn_user(
                    f"{hist} is damaged ({type(err).__name__}: {err}); the model's weights are "
                    "intact and load without their training history (model.history is None). "
                    "Re-train with the same options in the same folder to get it back.",
                    RuntimeWarning,
                )
        return model.to(map_location).eval()


#: ``config.json`` key of the checksum record written by :meth:`MADModel.save`.
INTEGRITY_KEY = "integrity"
INTEGRITY_WEIGHTS = "weights_sha256"
INTEGRITY_CONFIG = "config_sha256"

_FIX = (
    "Re-save the model (model.save(folder)) if you still have it in memory, re-train it "
    "(mad.tl.pretrain with the same options resumes from checkpoint.pt when the folder has "
    "one), or copy / download the folder again."
)


class ModelFileError(ValueError):
    """A file of a saved model is damaged, truncated or does not belong to the others."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}. {_FIX}")


def _read_config(path: Path) -> dict[str, Any]:
    """``config.json`` as a dict; clear errors for damaged files and non-MAD folders."""
    try:
        d = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(path, f"it is not valid JSON (truncated or damaged: {err})") from err
    if not isinstance(d, dict):
        raise ModelFileError(path, f"it holds a JSON {type(d).__name__}, not a model config")
    kind = d.get("type")
    # A MAD config has no "type"; other madspatial folders (decoders) name theirs and may
    # carry a format_version of their own.
    if "format_version" not in d or kind is not None:
        what = f"a {kind!r}" if kind is not None else "something else"
        hint = (
            " (a decoder: load it with mad.tl.Decoder.load, or pass it as decoder=)"
            if isinstance(kind, str) and "decoder" in kind.lower()
            else ""
        )
        keys = sorted(d)[:8]
        raise ValueError(
            f"{path.parent} is not a MAD model folder: its {path.name} describes {what}{hint}, "
            f"with keys {keys}, not a MADModel (format_version, backbone, ...). Pass the "
            "folder written by mad.tl.pretrain (or MADModel.save)."
        )
    return d


def _canonical(d: Any) -> Any:
    return json.loads(json.dumps(d, default=_jsonable))


def _config_sha256(d: Mapping[str, Any]) -> str:
    body = {k: v for k, v in d.items() if k != INTEGRITY_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def _weights_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception:  # already read once: a failure here is not the weights' fault
        return {}
