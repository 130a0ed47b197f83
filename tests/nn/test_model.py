from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from madspatial.nn import (
    MODEL_FORMAT_VERSION,
    DINOHead,
    MADConfig,
    MADModel,
    MultiCropAugment,
    parameter_groups,
)

from .conftest import NO_AUGMENT

TINY = dict(backbone="vit_pico", n_prototypes=32, head_hidden_dim=24, head_bottleneck_dim=8)


def _model(**kw) -> MADModel:
    torch.manual_seed(0)
    return MADModel(MADConfig(**{**TINY, "in_chans": 3, **kw}))


# ------------------------------------------------------------------ head
def test_head_shapes_normalised_prototypes_and_frozen_magnitude():
    head = DINOHead(16, n_layers=3, hidden_dim=20, bottleneck_dim=6, n_prototypes=11)
    x = torch.randn(4, 16, requires_grad=True)
    y = head(x)
    assert y.shape == (4, 11)
    # logits are cosines between the unit bottleneck vector and unit prototypes
    assert y.abs().max() <= 1 + 1e-5
    w = head.last_layer.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(11))
    g = head.last_layer.parametrizations.weight.original0
    assert not g.requires_grad
    y.sum().backward()
    assert head.last_layer.parametrizations.weight.original1.grad is not None
    assert g.grad is None
    assert sum(isinstance(m, torch.nn.Linear) for m in head.mlp) == 3
    assert len(DINOHead(16, n_layers=1, bottleneck_dim=6, n_prototypes=5).mlp) == 1
    with pytest.raises(ValueError, match="n_layers"):
        DINOHead(16, n_layers=0)


# ------------------------------------------------------------------ config
def test_config_roundtrip_and_validation():
    cfg = MADConfig(**TINY, in_chans=2, channel_names=["DAPI", "CD45"], metadata={"a": 1})
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["format_version"] == MODEL_FORMAT_VERSION and d["version"]
    assert MADConfig.from_dict(d) == cfg
    assert cfg.views == ("morphology", "microenvironment")
    assert MADConfig(**TINY, mode="morphology").views == ("morphology",)
    with pytest.raises(ValueError, match="channel_names"):
        MADConfig(**TINY, in_chans=2, channel_names=["a"])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        MADConfig(**TINY, morphology_size=64)
    with pytest.raises(ValueError, match="mode"):
        MADConfig(**TINY, mode="nucleus")


def test_incompatible_format_version_fails_clearly(tmp_path):
    model = _model()
    model.save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["format_version"] = MODEL_FORMAT_VERSION + 1
    cfg["version"] = "9.0.0"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"format_version=2 \(written by madspatial 9\.0\.0\)"):
        MADModel.load(tmp_path)
    del cfg["format_version"]
    with pytest.raises(ValueError, match="format_version=None"):
        MADConfig.from_dict(cfg)


# ------------------------------------------------------------------ model
def test_forward_shapes_and_modes():
    model = _model()
    x = torch.rand(2, 3, 70, 70)
    assert model.forward_features(x).shape == (2, model.embed_dim)
    assert model(x).shape == (2, 32)
    assert model.views == ("morphology", "microenvironment")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(2, 4, 70, 70))


def test_save_load_gives_identical_embeddings_and_history(tmp_path):
    model = _model(in_chans=2, channel_names=["DAPI", "PanCK"])
    model.history = {"loss": [np.float32(3.2), 3.1], "lr": np.array([0.1, 0.2])}
    out = model.save(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "history.json",
        "model.safetensors",
    ]
    loaded = MADModel.load(out)
    g = torch.Generator().manual_seed(1)
    morph = torch.randint(0, 256, (3, 2, 70, 70), dtype=torch.uint8, generator=g)
    micro = torch.randint(0, 256, (3, 2, 112, 112), dtype=torch.uint8, generator=g)
    a, b = model.embed(morph, micro), loaded.embed(morph, micro)
    for view in ("morphology", "microenvironment"):
        assert torch.equal(a[view], b[view])
    assert loaded.history == {"loss": [pytest.approx(3.2), 3.1], "lr": [0.1, 0.2]}
    assert loaded.config == model.config
    with pytest.raises(FileNotFoundError, match="not a saved MADModel"):
        MADModel.load(tmp_path / "nothing")


def test_embed_inference_mode_dtypes_and_training_flag():
    model = _model()
    model.train()
    x8 = torch.randint(0, 256, (2, 3, 70, 70), dtype=torch.uint8)
    out = model.embed(morph=x8)
    assert list(out) == ["morphology"] and out["morphology"].shape == (2, model.embed_dim)
    assert out["morphology"].dtype == torch.float32 and not out["morphology"].requires_grad
    assert torch.is_inference(out["morphology"])
    assert model.training  # restored
    # uint8, the same pixels as float in [0, 1], and numpy all give the same embedding
    torch.testing.assert_close(model.embed(morph=x8.float() / 255)["morphology"], out["morphology"])
    torch.testing.assert_close(model.embed(morph=x8.numpy())["morphology"], out["morphology"])
    bf = model.embed(micro=x8, autocast_dtype=torch.bfloat16)["microenvironment"]
    assert bf.dtype == torch.float32 and torch.isfinite(bf).all()
    with pytest.raises(ValueError, match="at least one"):
        model.embed()


def test_preprocess_and_augmentation_share_the_input_scale():
    """What the trainer feeds (augmentation output) and what embed feeds (preprocess) agree."""
    g = torch.Generator().manual_seed(0)
    morph = torch.randint(0, 256, (4, 3, 70, 70), dtype=torch.uint8, generator=g)
    micro = torch.randint(0, 256, (4, 3, 224, 224), dtype=torch.uint8, generator=g)
    identity = MultiCropAugment(**NO_AUGMENT, blur_p=0.0)
    crops = identity(morph, micro, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(crops["morphology"]["global"][0], MADModel.preprocess(morph))
    torch.testing.assert_close(crops["microenvironment"]["global"][0], MADModel.preprocess(micro))
    model = _model().eval()
    with torch.no_grad():
        feats = model.forward_features(crops["morphology"]["global"][0])
    torch.testing.assert_close(model.embed(morph)["morphology"], feats)
    # the standardisation lives inside the model
    assert model.pixel_mean.flatten().tolist() == [0.5] * 3
    assert "pixel_mean" not in model.state_dict()


def test_bf16_autocast_training_step_on_cpu():
    model = _model()
    x = torch.rand(2, 3, 70, 70)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (2, 32) and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None


def test_parameter_groups_split_decay():
    model = _model()
    decay, no_decay = parameter_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"backbone.pos_embed", "backbone.cls_token"} <= no_decay_names
    assert no_decay["weight_decay"] == 0.0
    n_trainable = sum(p.requires_grad for p in model.parameters())
    assert len(decay["params"]) + len(no_decay["params"]) == n_trainable


def test_teacher_copy_by_deepcopy_is_independent():
    import copy

    student = _model()
    teacher = copy.deepcopy(student)
    x = torch.rand(2, 3, 70, 70)
    torch.testing.assert_close(teacher(x), student(x))
    with torch.no_grad():  # an EMA step touches every parameter, magnitudes included
        for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
            pt.mul_(0.5).add_(ps + 1.0, alpha=0.5)
    assert not torch.allclose(teacher(x), student(x))
    assert student.head.last_layer.parametrizations.weight.original0.eq(1).all()


def test_view_heads_one_head_per_view_saved_and_reloaded(tmp_path):
    model = _model(view_heads=True)
    x = torch.rand(2, 3, 70, 70)
    logits = model(x)
    assert logits.shape == (2, 64)  # morphology head's 32, then the microenvironment head's
    heads = model.head.heads
    f = model.forward_features(x)
    torch.testing.assert_close(logits[:, :32], heads["morphology"](f))
    torch.testing.assert_close(logits[:, 32:], heads["microenvironment"](f))
    assert not torch.allclose(logits[:, :32], logits[:, 32:])  # two heads, two weights
    # both prototype layers are "last_layer" parameters (frozen together early on)
    names = [n for n, _ in model.named_parameters() if "last_layer" in n]
    assert {n.split(".")[2] for n in names} == {"morphology", "microenvironment"}
    loaded = MADModel.load(model.save(tmp_path / "m"))
    assert loaded.config.view_heads
    torch.testing.assert_close(loaded(x), logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="view_heads=True needs both views"):
        MADConfig(**TINY, mode="morphology", view_heads=True)


def test_predictor_heads_add_one_student_head_per_view():
    model = _model(view_heads=True, predictor_heads=True)
    assert model.head.head_names == (
        "morphology",
        "microenvironment",
        "predict_morphology",
        "predict_microenvironment",
    )
    assert model(torch.rand(2, 3, 70, 70)).shape == (2, 4 * 32)
    with pytest.raises(ValueError, match="predictor_heads=True needs view_heads=True"):
        MADConfig(**TINY, predictor_heads=True)
