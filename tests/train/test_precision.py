"""precision="auto": bf16 autocast only where it is faster than fp32."""

from __future__ import annotations

import pytest
import torch

from madspatial.train import _precision


@pytest.mark.parametrize(("amx", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cpu_follows_amx_not_avx512_bf16(monkeypatch, amx, expected):
    # AVX512-BF16 present either way: it alone does not make bf16 faster (bench_precision)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert _precision.resolve_precision("auto", "cpu") == expected


def test_cpu_without_the_amx_probe_is_fp32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert _precision.cpu_has_amx() is False
    assert _precision.resolve_precision("auto", "cpu") == "fp32"


def test_explicit_precisions_are_kept_and_checked():
    assert _precision.resolve_precision("bf16", "cpu") == "bf16"
    assert _precision.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match=r"fp16.*needs a CUDA device"):
        _precision.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        _precision.resolve_precision("half", "cpu")
