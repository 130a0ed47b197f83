"""Batched multi-crop augmentation on tensors, for any number of channels (no PIL).

Every cell of a batch gets its own random crop boxes, flips and photometric draws, but each
step is one batched tensor op per crop set: crops via ``torchvision.ops.roi_align`` (a
bilinear resample of each sample's box, averaging several samples per output pixel when
zooming out), the dihedral flips via ``torch.where``, a per-sample Gaussian blur via one
grouped separable convolution. All randomness comes from the ``torch.Generator`` passed in,
so the same seed gives the same crops on CPU.

Output scale: float32 in ``[0, 1]`` (uint8 / 255, clamped after the photometric steps),
the same scale :meth:`madspatial.nn.MADModel.preprocess` produces for embedding; the model
standardises internally.

Choices for microscopy:

- Orientation carries no meaning, so flips cover the whole dihedral group (h/v flips and
  90-degree rotations, ``rotate90=True``).
- Intensity jitter is per channel and keeps zero at zero: a gain (brightness,
  ``1 +- jitter``) and a gamma-like contrast curve ``x (1 + c (1 - x))``, ``|c| <= jitter``
  (fixes 0 and 1, bends the mid-tones, needs no ``pow``). The zeros outside the cell in the
  morphology view therefore stay zeros, and so does the background.
- Morphology crops stay cell-centred: the box centre is the view centre (the cell centroid)
  moved by at most ``morphology_center_jitter`` x the box side, so even the zoomed-in local
  crops show the cell rather than masked background. Microenvironment crops are placed
  uniformly at random (DINO's random resized crop), so local crops show parts of the niche.
- Gaussian noise (on a ``noise_p`` fraction of crops) is added only on the cell's pixels in
  the morphology view (the masked outside stays exactly zero) and everywhere in the
  microenvironment view.
- Blur sigma is drawn in pixels of a 224-pixel crop (``blur_sigma``) and scaled with the
  crop side, so a 70-pixel morphology crop is blurred by the same fraction of its field.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from .._constants import PATCH_SIZE, VIEW_MICROENVIRONMENT, VIEW_MORPHOLOGY


class MultiCropAugment:
    """Global and local crops of the morphology and microenvironment views of a batch.

    Parameters
    ----------
    morphology_size, microenvironment_size
        Side of the global crops of each view (the view size; multiples of 14).
    n_global
        Global crops per view (seen by teacher and student).
    n_local
        Local crops per view (student only).
    local_morphology_size, local_microenvironment_size
        Side of the local crops (multiples of 14).
    global_scale, local_scale
        Range of the crop area as a fraction of the view area.
    flip
        Random horizontal and vertical flips.
    jitter
        Strength of the per-channel intensity jitter in ``[0, 1)``: gain ``1 +- jitter``
        (brightness) and contrast curve ``x (1 + c (1 - x))`` with ``c`` in ``+-jitter``;
        ``0`` disables it.
    blur_p
        Probability of a Gaussian blur per crop.
    noise_std
        Standard deviation of the additive Gaussian noise (in ``[0, 1]`` units); ``0``
        disables it.
    rotate90
        Also rotate by multiples of 90 degrees (with ``flip``: the full dihedral group).
    ratio
        Range of the crop aspect ratio (sampled log-uniformly).
    blur_sigma
        Range of the blur sigma in pixels of a 224-pixel crop (scaled with the crop side).
    morphology_center_jitter
        Maximum offset of a morphology crop's centre from the view centre, as a fraction of
        the crop side (``None``: uniform placement like the microenvironment).
    microenvironment_center_jitter
        Same for microenvironment crops; ``None`` (default) places them uniformly.
    noise_p
        Probability that a crop gets the Gaussian noise.
    """

    def __init__(
        self,
        *,
        morphology_size: int = 70,
        microenvironment_size: int = 224,
        n_global: int = 2,
        n_local: int = 4,
        local_morphology_size: int = 28,
        local_microenvironment_size: int = 98,
        global_scale: tuple[float, float] = (0.5, 1.0),
        local_scale: tuple[float, float] = (0.1, 0.5),
        flip: bool = True,
        jitter: float = 0.2,
        blur_p: float = 0.5,
        noise_std: float = 0.02,
        rotate90: bool = True,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        morphology_center_jitter: float | None = 0.25,
        microenvironment_center_jitter: float | None = None,
        noise_p: float = 0.5,
    ) -> None:
        sizes = {
            "morphology_size": morphology_size,
            "microenvironment_size": microenvironment_size,
            "local_morphology_size": local_morphology_size,
            "local_microenvironment_size": local_microenvironment_size,
        }
        for name, size in sizes.items():
            if size <= 0 or size % PATCH_SIZE:
                raise ValueError(
                    f"{name}={size} must be a positive multiple of the patch size {PATCH_SIZE}."
                )
        if n_global < 1 or n_local < 0:
            raise ValueError(f"need n_global >= 1 and n_local >= 0, got {n_global}, {n_local}.")
        for name, (lo, hi) in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}.")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {ratio}.")
        self.sizes = {
            VIEW_MORPHOLOGY: (morphology_size, local_morphology_size),
            VIEW_MICROENVIRONMENT: (microenvironment_size, local_microenvironment_size),
        }
        self.center_jitter = {
            VIEW_MORPHOLOGY: morphology_center_jitter,
            VIEW_MICROENVIRONMENT: microenvironment_center_jitter,
        }
        self.n_global, self.n_local = n_global, n_local
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        self.flip, self.rotate90 = flip, rotate90
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}.")
        self.jitter, self.blur_p, self.noise_std = float(jitter), float(blur_p), float(noise_std)
        self.noise_p = float(noise_p)
        self.ratio, self.blur_sigma = tuple(ratio), tuple(blur_sigma)

    def __repr__(self) -> str:
        keys = ("sizes", "n_global", "n_local", "global_scale", "local_scale", "flip", "jitter")
        return f"MultiCropAugment({', '.join(f'{k}={getattr(self, k)!r}' for k in keys)})"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _rand(n: int | tuple[int, ...], g: torch.Generator, device: torch.device) -> torch.Tensor:
        shape = (n,) if isinstance(n, int) else n
        return torch.rand(shape, generator=g, device=g.device).to(device)

    def _boxes(
        self,
        b: int,
        h: int,
        w: int,
        scale: tuple[float, float],
        center_jitter: float | None,
        g: torch.Generator,
        device: torch.device,
    ) -> torch.Tensor:
        u = self._rand((b, 4), g, device)
        area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
        # clamp instead of torchvision's re-draw loop: a box never exceeds the view
        bw = (w * torch.sqrt(area * aspect)).clamp(max=w)
        bh = (h * torch.sqrt(area / aspect)).clamp(max=h)
        if center_jitter is None:
            x0 = (w - bw) * u[:, 2]
            y0 = (h - bh) * u[:, 3]
        else:
            x0 = w / 2 + (2 * u[:, 2] - 1) * center_jitter * bw - bw / 2
            y0 = h / 2 + (2 * u[:, 3] - 1) * center_jitter * bh - bh / 2
            x0 = torch.minimum(x0.clamp(min=0), w - bw)
            y0 = torch.minimum(y0.clamp(min=0), h - bh)
        idx = torch.arange(b, device=device, dtype=x0.dtype)
        return torch.stack([idx, x0, y0, x0 + bw, y0 + bh], dim=1)

    def _flip(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        bits = (self._rand((b, 3), g, x.device) < 0.5).long()
        if not (self.rotate90 and x.shape[-1] == x.shape[-2]):
            bits[:, 0] = 0
        if not self.flip:
            bits[:, 1:] = 0
        code = bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]  # transpose, h-flip, v-flip
        if not code.any():
            return x
        # Group the samples by transform: each sample is read and written once, instead of
        # blending whole flipped copies of the batch with torch.where.
        out = x  # a fresh crop owned by the caller: transform in place
        for c in code.unique().tolist():
            if c == 0:
                continue
            idx = (code == c).nonzero().squeeze(1)
            y = x.index_select(0, idx)
            if c & 4:  # transpose + flips = all 8 elements of the dihedral group
                y = y.transpose(-1, -2)
            dims = [d for d, bit in ((-1, 2), (-2, 1)) if c & bit]
            if dims:
                y = y.flip(dims)
            out.index_copy_(0, idx, y)
        return out

    def _jitter(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c = x.shape[:2]
        u = 2 * self._rand((2, b, c, 1, 1), g, x.device) - 1
        gain = 1 + self.jitter * u[0]
        contrast = self.jitter * u[1]
        # gain * x * (1 + c (1 - x)): keeps 0 at 0, monotonic for |c| < 1, a cheap stand-in
        # for a gamma curve (no pow)
        curve = (1 - x).mul_(contrast).add_(1).mul_(gain)
        return x.mul_(curve)

    def _blur(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        u = self._rand((2, b), g, x.device)
        chosen = (u[0] < self.blur_p).nonzero().squeeze(1)
        if chosen.numel() == 0:
            return x
        factor = h / 224.0
        lo, hi = self.blur_sigma[0] * factor, self.blur_sigma[1] * factor
        sigma = (lo + (hi - lo) * u[1]).index_select(0, chosen)
        radius = max(1, min(math.ceil(3 * hi), h // 2 - 1, w // 2 - 1))
        offs = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        kern = torch.exp(-(offs[None] ** 2) / (2 * sigma[:, None] ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # per (cell, ch)
        n, k = chosen.numel() * c, kern.shape[1]
        # one grouped separable convolution blurs every chosen cell with its own sigma
        y = x.index_select(0, chosen).reshape(1, n, h, w)
        y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
        y = F.conv2d(y, kern.view(n, 1, k, 1), groups=n)
        y = F.conv2d(y, kern.view(n, 1, 1, k), groups=n)
        return x.index_copy_(0, chosen, y.reshape(-1, c, h, w))

    def _noise(
        self, x: torch.Tensor, foreground: torch.Tensor | None, g: torch.Generator
    ) -> torch.Tensor:
        b = x.shape[0]
        chosen = (self._rand(b, g, x.device) < self.noise_p).nonzero().squeeze(1)
        if chosen.numel() == 0:
            return x
        shape = (chosen.numel(), *x.shape[1:])
        noise = torch.randn(shape, generator=g, device=g.device).to(x.device)
        noise.mul_(self.noise_std)
        if foreground is not None:  # morphology: the masked outside stays exactly zero
            noise.mul_(foreground.index_select(0, chosen))
        return x.index_add_(0, chosen, noise)

    def _crops(
        self,
        x: torch.Tensor,
        view: str,
        n: int,
        size: int,
        scale: tuple[float, float],
        g: torch.Generator,
    ) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        out = []
        for _ in range(n):
            boxes = self._boxes(b, h, w, scale, self.center_jitter[view], g, x.device)
            # aligned=True: pixel i covers [i, i+1), so the box (0, 0, w, h) is the identity
            crop = roi_align(
                x,
                boxes,
                output_size=(size, size),
                spatial_scale=1.0,
                sampling_ratio=-1,
                aligned=True,
            )
            crop = self._flip(crop, g)
            foreground = crop.amax(dim=1, keepdim=True) > 0 if view == VIEW_MORPHOLOGY else None
            if self.jitter > 0:
                crop = self._jitter(crop, g)
            if self.blur_p > 0:
                crop = self._blur(crop, g)
            if self.noise_std > 0 and self.noise_p > 0:
                crop = self._noise(crop, foreground, g)
            out.append(crop.clamp_(0.0, 1.0))
        return out

    # ------------------------------------------------------------------ call
    def __call__(
        self,
        morph: torch.Tensor | None,
        micro: torch.Tensor | None,
        *,
        generator: torch.Generator,
    ) -> dict[str, dict[str, list[torch.Tensor]]]:
        """Crop and augment a batch of views.

        Parameters
        ----------
        morph
            Morphology views ``(B, C, H, W)``, uint8 (or float in ``[0, 1]``), or ``None``.
        micro
            Microenvironment views ``(B, C, H, W)``, same convention, or ``None``.
        generator
            Source of all randomness. On GPU pass a generator on the inputs' device: with a
            CPU generator the noise is drawn on the CPU and copied over.

        Returns
        -------
        ``{view: {"global": [n_global x (B, C, S, S)], "local": [n_local x (B, C, s, s)]}}``
        float32 in ``[0, 1]``, for the views that were given, on the inputs' device.
        """
        out: dict[str, dict[str, list[torch.Tensor]]] = {}
        for view, x in ((VIEW_MORPHOLOGY, morph), (VIEW_MICROENVIRONMENT, micro)):
            if x is None:
                continue
            if x.ndim != 4:
                raise ValueError(f"{view} views must be (B, C, H, W), got {tuple(x.shape)}.")
            if x.dtype == torch.uint8:
                x = x.float().div_(255.0)
            elif torch.is_floating_point(x):
                x = x.float()
            else:
                raise TypeError(f"{view} views must be uint8 or float, got {x.dtype}.")
            g_size, l_size = self.sizes[view]
            out[view] = {
                "global": self._crops(x, view, self.n_global, g_size, self.global_scale, generator),
                "local": self._crops(x, view, self.n_local, l_size, self.local_scale, generator),
            }
        if not out:
            raise ValueError("MultiCropAugment needs at least one of morph and micro.")
        return out
