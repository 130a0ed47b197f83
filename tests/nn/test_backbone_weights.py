from __future__ import annotations

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from madspatial.nn import BACKBONE_PRESETS, build_backbone, load_backbone_weights, read_state_dict

PICO = {k: v for k, v in BACKBONE_PRESETS["vit_pico"].items()}


def _timm_vit(in_chans: int, img_size: int, seed: int, **kw) -> VisionTransformer:
    torch.manual_seed(seed)
    kw = {**PICO, **kw}
    return VisionTransformer(
        img_size=img_size, patch_size=14, in_chans=in_chans, dynamic_img_size=True, **kw
    ).eval()


def _cls(model: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


# ------------------------------------------------------------------ backbone
@pytest.mark.parametrize("side", [28, 70, 112, 224])
def test_backbone_takes_any_multiple_of_14(side):
    bb = build_backbone("vit_pico", in_chans=5).eval()
    out = bb(torch.rand(2, 5, side, side))
    assert out.shape == (2, bb.embed_dim) == (2, PICO["embed_dim"])
    assert torch.isfinite(out).all()


def test_backbone_output_is_normed_class_token():
    bb = build_backbone("vit_pico", in_chans=2).eval()
    x = torch.rand(2, 2, 70, 70)
    torch.testing.assert_close(bb(x), bb.forward_features(x)[:, 0])


def test_backbone_errors():
    bb = build_backbone("vit_pico", in_chans=3)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        bb(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="expects 3 channels"):
        bb(torch.rand(1, 4, 70, 70))
    with pytest.raises(ValueError, match="unknown backbone preset"):
        build_backbone("vit_huge", in_chans=3)
    with pytest.raises(ValueError, match="fixed by madspatial"):
        build_backbone({"preset": "vit_pico", "patch_size": 16}, in_chans=3)


def test_presets_and_dict_kwargs():
    assert BACKBONE_PRESETS["vit_large"]["embed_dim"] == 1024
    assert BACKBONE_PRESETS["vit_large"]["depth"] == 24
    assert BACKBONE_PRESETS["vit_large"]["num_heads"] == 16
    assert [BACKBONE_PRESETS[n]["embed_dim"] for n in ("vit_tiny", "vit_small", "vit_base")] == [
        192,
        384,
        768,
    ]
    bb = build_backbone({"preset": "vit_pico", "depth": 1, "init_values": 1e-5}, in_chans=1)
    assert len(bb.blocks) == 1 and hasattr(bb.blocks[0].ls1, "gamma")


def test_grad_checkpointing_gives_same_output_and_grads():
    torch.manual_seed(0)
    a = build_backbone("vit_pico", in_chans=2)
    b = build_backbone("vit_pico", in_chans=2, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    assert b.grad_checkpointing and not a.grad_checkpointing
    x = torch.rand(2, 2, 70, 70)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(a.pos_embed.grad, b.pos_embed.grad)


def test_bf16_autocast_forward_on_cpu():
    bb = build_backbone("vit_pico", in_chans=3).eval()
    x = torch.rand(2, 3, 70, 70)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = bb(x)
    ref = bb(x)
    assert torch.isfinite(y).all()
    assert not torch.equal(y.float(), ref)  # the matmuls really ran in bf16
    torch.testing.assert_close(y.float(), ref, atol=0.1, rtol=0.05)


# ------------------------------------------------------------------ weights
def _dinov2_state_dict(seed: int = 1):
    """A DINOv2-layout state dict: RGB, 518-px grid (37x37), LayerScale, mask_token."""
    src = _timm_vit(3, 518, seed, init_values=1e-5, num_classes=0)
    with torch.no_grad():
        for blk in src.blocks:  # non-trivial gammas so that folding them matters
            blk.ls1.gamma.uniform_(0.5, 1.5)
            blk.ls2.gamma.uniform_(0.5, 1.5)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    sd["mask_token"] = torch.zeros(1, PICO["embed_dim"])
    return src, sd


def test_dinov2_layout_adapts_channels_pos_embed_and_layerscale():
    src, sd = _dinov2_state_dict()
    bb = build_backbone("vit_pico", in_chans=4).eval()  # no LayerScale, 16x16 grid, 4 channels
    report = load_backbone_weights(bb, sd)
    assert report.unexpected == ["mask_token"]
    assert report.missing == []
    notes = " ".join(report.adapted)
    assert "3 -> 4 channels" in notes and "37x37 -> 16x16" in notes and "LayerScale" in notes
    # A 4-channel image whose channels are equal gives what the RGB model gives on the
    # 3-channel copy (the source resamples its 37x37 grid to 16x16 on the fly, same way).
    plane = torch.rand(2, 1, 224, 224)
    torch.testing.assert_close(
        bb(plane.expand(-1, 4, -1, -1)), _cls(src, plane.expand(-1, 3, -1, -1))
    )


def test_dinov2_into_layerscale_backbone_and_chunked_blocks():
    src, sd = _dinov2_state_dict(seed=2)
    chunked = {
        k.replace("blocks.1.", "blocks.0.1.").replace("blocks.0.norm", "blocks.0.0.norm"): v
        for k, v in sd.items()
    }
    assert any(k.startswith("blocks.0.1.") for k in chunked)
    bb = build_backbone({"preset": "vit_pico", "init_values": 1e-5}, in_chans=3).eval()
    report = load_backbone_weights(bb, chunked)
    assert not any("LayerScale" in a for a in report.adapted)
    assert "blocks.1.ls2.gamma" in report.loaded
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(bb(x), _cls(src, x))


def test_layerscale_backbone_gets_identity_gamma_from_plain_weights():
    src = _timm_vit(3, 224, 3, num_classes=0)
    bb = build_backbone({"preset": "vit_pico", "init_values": 1e-5}, in_chans=3).eval()
    report = load_backbone_weights(bb, src.state_dict(), strict=True)
    assert any("gamma = 1" in a for a in report.adapted)
    x = torch.rand(1, 3, 70, 70)
    torch.testing.assert_close(bb(x), _cls(src, x))


def test_timm_layout_file_roundtrip_and_head_reported(tmp_path):
    from safetensors.torch import save_file

    src = _timm_vit(4, 224, 4, num_classes=10)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    bb = build_backbone("vit_pico", in_chans=4, weights=path).eval()
    x = torch.rand(2, 4, 70, 70)
    torch.testing.assert_close(bb(x), _cls(src, x))
    report = load_backbone_weights(bb, path)
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    with pytest.raises(ValueError, match="strict loading failed"):
        load_backbone_weights(bb, path, strict=True)


def test_reference_mad_layout_prefixes(tmp_path):
    morph, micro = _timm_vit(4, 224, 5, num_classes=0), _timm_vit(4, 224, 6, num_classes=0)
    inner = {f"backbones.morphology.{k}": v for k, v in morph.state_dict().items()}
    inner |= {f"backbones.neighborhood.{k}": v for k, v in micro.state_dict().items()}
    inner["heads.morphology.mlp.0.weight"] = torch.zeros(3, 3)
    path = tmp_path / "mad_checkpoint.pth"
    torch.save({"model": inner, "epoch": 12}, path)
    x = torch.rand(2, 4, 70, 70)

    bb = build_backbone("vit_pico", in_chans=4).eval()
    with pytest.raises(ValueError, match=r"backbones\.neighborhood"):
        load_backbone_weights(bb, path)  # two backbones: ambiguous
    rep = load_backbone_weights(bb, path, prefix="backbones.neighborhood")
    assert rep.prefix == "model.backbones.neighborhood." and rep.missing == []
    torch.testing.assert_close(bb(x), _cls(micro, x))
    load_backbone_weights(bb, path, prefix="morphology")  # an unambiguous tail is enough
    torch.testing.assert_close(bb(x), _cls(morph, x))
    with pytest.raises(ValueError, match="available prefixes"):
        load_backbone_weights(bb, path, prefix="nucleus")


def test_teacher_copy_preferred_and_ddp_prefix():
    a, b = _timm_vit(2, 224, 7, num_classes=0), _timm_vit(2, 224, 8, num_classes=0)
    sd = {"student": {f"backbone.{k}": v for k, v in a.state_dict().items()}}
    sd["teacher"] = {f"module.backbone.{k}": v for k, v in b.state_dict().items()}
    bb = build_backbone("vit_pico", in_chans=2).eval()
    assert load_backbone_weights(bb, sd).prefix == "teacher.module.backbone."
    x = torch.rand(1, 2, 70, 70)
    torch.testing.assert_close(bb(x), _cls(b, x))


def test_unadaptable_shapes_raise_clearly():
    wide = _timm_vit(3, 224, 9, num_classes=0, embed_dim=60, num_heads=3)
    bb = build_backbone("vit_pico", in_chans=3)
    with pytest.raises(ValueError, match=r"embed_dim=60|60-d"):
        load_backbone_weights(bb, wide.state_dict())
    with pytest.raises(ValueError, match=r"no .patch_embed\.proj\.weight."):
        load_backbone_weights(bb, {"foo": torch.zeros(2)})


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"cfg": _Opaque()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "absent.pt")


class _Opaque:
    pass
