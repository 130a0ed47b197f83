"""``MADConfig``: everything needed to rebuild a model.

Torch-free, so that option defaults and the command line's help can be read without loading
torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .._constants import (
    MODE_MAD,
    MODES,
    PATCH_SIZE,
    VIEW_MICROENVIRONMENT,
    VIEW_MORPHOLOGY,
    VIEWS,
    Mode,
)
from .._version import __version__

logger = logging.getLogger("madspatial")


def mode_views(mode: str) -> tuple[str, ...]:
    """Return the views a training mode uses: both for ``"mad"``, else the one named."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}.")
    return VIEWS if mode == MODE_MAD else (mode,)


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
    view_heads
        One projection head per view (:class:`~madspatial.nn.ViewHeads`, ``mode="mad"``
        only) instead of one shared head; the embeddings (backbone class tokens) are the
        same kind either way.
    predictor_heads
        With ``view_heads``: also one predictor head per view, which scores a crop of the
        other view in the cross-view terms (the student's only; the teacher's own heads
        are then moved by the same-view terms alone).
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
    mode: Mode = MODE_MAD
    morphology_size: int = 70
    microenvironment_size: int = 224
    head_layers: int = 3
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    n_prototypes: int = 65536
    view_heads: bool = False
    predictor_heads: bool = False
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None
    drop_path_rate: float = 0.0
    img_size: int = 224
    version: str = __version__
    format_version: int = MODEL_FORMAT_VERSION
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mode_views(self.mode)  # validates
        if self.view_heads and len(mode_views(self.mode)) < 2:
            raise ValueError(
                f"view_heads=True needs both views (mode='mad'), got mode={self.mode!r}."
            )
        if self.predictor_heads and not self.view_heads:
            raise ValueError("predictor_heads=True needs view_heads=True (one head per view).")
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
