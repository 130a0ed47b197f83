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
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._constants import (
    MODE_MAD,
    MODEL_CONFIG_FILE,
    MODEL_HISTORY_FILE,
    MODEL_WEIGHTS_FILE,
    PATCH_SIZE,
    VIEW_MICROENVIRONMENT,
    VIEW_MORPHOLOGY,
)
from .._version import __version__
from ._backbone import build_backbone
from ._head import DINOHead
from ._loss import mode_views

logger = logging.getLogger("madspatial")

#: Version of the on-disk model format (config keys + state-dict layout). Bump it when a
#: saved model can no longer be loaded by the new code; ``MADConfig.from_dict`` refuses
#: other versions with a clear message.
MODEL_FORMAT_VERSION = 1


@dataclass
class MADConfig:
    """Everything needed to rebuild a :class:`MADModel` (saved as ``config.json``).

    Attributes
    ----------
    backbone
        Preset name (see :data:`~madspatial.nn.BACKBONE_PRESETS`) or dict of timm kwargs.
    in_chans
        Number of image channels.
    channel_names
        Channel names, in input order (``len == in_chans``; default ``ch0, ch1, ...``).
    mode
        ``"mad"``, ``"morphology"`` or ``"microenvironment"``.
    morphology_size, microenvironment_size
        View sides in pixels (multiples of 14).
    head_layers, head_hidden_dim, head_bottleneck_dim, n_prototypes
        :class:`~madspatial.nn.DINOHead` shape.
    pixel_mean, pixel_std
        Per-channel standardisation applied inside the model to ``[0, 1]`` input.
    drop_path_rate
        Stochastic depth of the backbone (training only).
    img_size
        Position-embedding grid side in pixels.
    version
        madspatial version that wrote the config.
    format_version
        On-disk format version (:data:`MODEL_FORMAT_VERSION`).
    metadata
        Free-form JSON-able extras (e.g. view-store parameters, training arguments).
    """

    backbone: str | dict[str, Any] = "vit_small"
    in_chans: int = 3
    channel_names: list[str] | None = None
    mode: str = MODE_MAD
    morphology_size: int = 70
    microenvironment_size: int = 224
    head_layers: int = 3
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    n_prototypes: int = 65536
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None
    drop_path_rate: float = 0.0
    img_size: int = 224
    version: str = __version__
    format_version: int = MODEL_FORMAT_VERSION
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mode_views(self.mode)  # validates
        if self.channel_names is None:
            self.channel_names = [f"ch{i}" for i in range(self.in_chans)]
        self.channel_names = [str(c) for c in self.channel_names]
        if len(self.channel_names) != self.in_chans:
            raise ValueError(
                f"channel_names has {len(self.channel_names)} names but in_chans={self.in_chans}."
            )
        # Default standardisation maps [0, 1] to [-2, 2]: roughly ImageNet's scale, which
        # keeps activations of DINOv2-initialised patch embeddings in their usual range.
        if self.pixel_mean is None:
            self.pixel_mean = [0.5] * self.in_chans
        if self.pixel_std is None:
            self.pixel_std = [0.25] * self.in_chans
        for name in ("pixel_mean", "pixel_std"):
            value = [float(x) for x in np.broadcast_to(getattr(self, name), (self.in_chans,))]
            setattr(self, name, value)
        if min(self.pixel_std) <= 0:
            raise ValueError(f"pixel_std must be > 0, got {self.pixel_std}.")
        for name in ("morphology_size", "microenvironment_size", "img_size"):
            if getattr(self, name) % PATCH_SIZE:
                raise ValueError(
                    f"{name}={getattr(self, name)} is not a multiple of the patch size "
                    f"{PATCH_SIZE}."
                )

    @property
    def views(self) -> tuple[str, ...]:
        """Views used by :attr:`mode`."""
        return mode_views(self.mode)

    def view_size(self, view: str) -> int:
        """Side in pixels of ``view``."""
        return {
            VIEW_MORPHOLOGY: self.morphology_size,
            VIEW_MICROENVIRONMENT: self.microenvironment_size,
        }[view]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``version`` and ``format_version`` included)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MADConfig:
        """Rebuild from :meth:`to_dict` output; refuses an incompatible ``format_version``."""
        d = dict(d)
        fmt = d.get("format_version")
        written_by = d.get("version", "unknown")
        if fmt != MODEL_FORMAT_VERSION:
            raise ValueError(
                f"model config has format_version={fmt!r} (written by madspatial {written_by}), "
                f"but madspatial {__version__} reads format_version={MODEL_FORMAT_VERSION}. "
                f"Load it with madspatial=={written_by} or retrain the model."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            logger.warning(
                "model config keys %s (madspatial %s) are unknown to madspatial %s; ignored.",
                unknown,
                written_by,
                __version__,
            )
        return cls(**{k: v for k, v in d.items() if k in known})


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
        :class:`~madspatial.nn.DINOHead`.
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
        self.head = DINOHead(
            self.backbone.embed_dim,
            n_layers=config.head_layers,
            hidden_dim=config.head_hidden_dim,
            bottleneck_dim=config.head_bottleneck_dim,
            n_prototypes=config.n_prototypes,
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
        """Prototype logits ``(B, K)`` = ``head(backbone(x))``."""
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
                from ..train._warn import warn_user

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
    if "format_version" not in d:
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


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray | torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def file_mode() -> int:
    """Permissions of a newly created file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, write) -> None:
    # mkstemp creates 0600 files: chmod to what open() would give, so colleagues sharing
    # the folder can read the model
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_text(path: Path, text: str) -> None:
    _atomic(path, lambda p: Path(p).write_text(text))
