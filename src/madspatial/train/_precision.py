"""Which autocast dtype to use: bf16 only where the hardware computes it natively.

torch is imported inside the functions: ``tl.embed`` (and so ``madspatial embed --help``)
imports this module, and help must answer without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from .._constants import PRECISIONS

__all__ = ["PRECISIONS", "autocast_dtype", "bf16_native", "resolve_precision"]


def bf16_native(device: str | torch.device) -> bool:
    """Whether bf16 matmuls run natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX).

    On CPUs without them (e.g. AVX2-only) oneDNN emulates bf16 and autocast is several
    times *slower* than fp32.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # pragma: no cover - old or odd builds
            return False
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
    """The autocast dtype of a resolved precision (None: no autocast, fp32)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
