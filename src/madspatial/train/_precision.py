"""Which autocast dtype to use: bf16 only where it is faster than fp32.

torch is imported inside the functions: ``tl.embed`` (and so ``madspatial embed --help``)
imports this module, and help must answer without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .._constants import PRECISIONS

__all__ = ["PRECISIONS", "autocast_dtype", "bf16_native", "cpu_has_amx", "resolve_precision"]


def bf16_native(device: str | torch.device) -> bool:
    """Return whether bf16 autocast is faster than fp32 here (CUDA with bf16, a CPU with AMX).

    On CPUs the test is AMX (Sapphire Rapids and newer), not AVX512-BF16: on an
    AVX512-BF16 Xeon without AMX, bf16 autocast measured 0.2-0.8x the speed of fp32 for
    training and embedding with every ViT size we tried, 1.1x only for vit_small 224 px
    embedding (``benchmarks/bench_precision.py``),
    because only the matmuls gain and every cast in and out of them costs; CPUs with
    neither (AVX2-only) emulate bf16 and are several times slower still.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        return cpu_has_amx()
    return False


def cpu_has_amx() -> bool:
    """Return whether this CPU has AMX tiles (the one CPU where bf16 autocast pays)."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is None:  # pragma: no cover - torch builds without the probe
        return False
    try:
        return bool(probe())
    except RuntimeError:  # pragma: no cover - odd builds
        return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where native, else ``"fp32"``; other values are checked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    import torch

    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU.")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a resolved precision (None: no autocast, fp32)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
