"""weights= spellings: timm names / hub repos from an offline huggingface_hub cache, the
reference MAD training folder, a saved MADModel folder. Nothing here touches the network."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from madspatial.nn import build_backbone
from madspatial.nn._pretrained import (
    IMAGENET_MEAN,
    WeightsNotCachedError,
    resolve_weights,
)

from ..conftest import PICO_MODEL

NAME = "vit_small_patch14_dinov2.lvd142m"
REPO = "timm/" + NAME
REV = "0123456789abcdef0123456789abcdef01234567"
#: vit_pico's shape (48-d, 2 blocks, 3 heads, MLP ratio 2) under the DINOv2 ViT-S/14 name
TINY_ARGS = {"embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0}


def _tiny_timm_model(seed: int = 0):
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(
        "vit_small_patch14_dinov2",
        pretrained=False,
        num_classes=0,
        dynamic_img_size=True,
        **TINY_ARGS,
    )
    with torch.no_grad():  # non-trivial LayerScale so that folding it matters
        for blk in model.blocks:
            blk.ls1.gamma.uniform_(0.5, 1.5)
            blk.ls2.gamma.uniform_(0.5, 1.5)
    return model.eval()


def write_hub_cache(cache, model, repo=REPO, rev=REV):
    """Lay ``model`` out in ``cache`` as huggingface_hub does: blobs named by hash, snapshot
    symlinks to them, ``refs/main`` holding the commit. Files come from timm's save_for_hf
    (what ``push_to_hub`` uploads: ``config.json`` with ``model_args`` + safetensors)."""
    from timm.models import save_for_hf

    staging = cache.parent / ("staging_" + repo.replace("/", "_"))
    save_for_hf(model, str(staging), model_args=TINY_ARGS, safe_serialization=True)
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        data = (staging / name).read_bytes()
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snap), snap / name)
    return snap


@pytest.fixture
def cached(offline_hub):
    model = _tiny_timm_model()
    snap = write_hub_cache(offline_hub, model)
    return model, snap


# ------------------------------------------------------------------ hub names
@pytest.mark.parametrize("spec", [NAME, REPO, "hf-hub:" + REPO, "vit_small_patch14_dinov2"])
def test_timm_names_resolve_from_the_offline_cache(cached, spec):
    _, snap = cached
    res = resolve_weights(spec)
    assert res.kind == "hub"
    assert res.path == snap / "model.safetensors"  # the snapshot path, as huggingface_hub gives
    assert res.notes["repo_id"] == REPO
    assert res.backbone == {**TINY_ARGS, "img_size": 518, "init_values": 1e-5}
    assert res.pixel_mean == IMAGENET_MEAN


def test_cache_layout_is_huggingface_hubs(cached, offline_hub):
    from huggingface_hub import scan_cache_dir, try_to_load_from_cache

    _, snap = cached
    info = scan_cache_dir(offline_hub)
    (repo,) = info.repos
    assert repo.repo_id == REPO and {r.commit_hash for r in repo.revisions} == {REV}
    assert try_to_load_from_cache(REPO, "model.safetensors", cache_dir=offline_hub) == str(
        snap / "model.safetensors"
    )


def test_hub_weights_land_in_the_backbone_after_channel_adaptation(cached):
    model, _ = cached
    res = resolve_weights(NAME)
    bb = build_backbone(res.backbone, in_chans=4, weights=res.path).eval()
    src = model.state_dict()
    w = src["patch_embed.proj.weight"]  # (48, 3, 14, 14) RGB filters
    expected = (w.mean(dim=1, keepdim=True) * 3 / 4).expand(-1, 4, -1, -1)
    torch.testing.assert_close(bb.patch_embed.proj.weight, expected)
    torch.testing.assert_close(bb.blocks[1].attn.qkv.weight, src["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(bb.pos_embed, src["pos_embed"])  # 37x37 grid kept (518 px)
    # same function as timm's model on an image whose 4 channels are one grey plane
    plane = torch.rand(2, 1, 70, 70)
    ref = model.forward_head(model.forward_features(plane.expand(-1, 3, -1, -1)), pre_logits=True)
    torch.testing.assert_close(bb(plane.expand(-1, 4, -1, -1)), ref)


def test_register_tokens_architecture_loads_exactly():
    import timm

    from madspatial.nn._pretrained import timm_architecture

    arch = "vit_small_patch14_reg4_dinov2"
    src = timm.create_model(
        arch, pretrained=False, num_classes=0, dynamic_img_size=True, **TINY_ARGS
    ).eval()
    kw = timm_architecture(arch, TINY_ARGS)
    assert kw["reg_tokens"] == 4 and kw["no_embed_class"] is True
    x = torch.rand(2, 3, 70, 70)
    ref = src.forward_head(src.forward_features(x), pre_logits=True)
    for size in (518, 224):  # the 37x37 grid kept, or resampled without a class position
        bb = build_backbone({**kw, "img_size": size}, in_chans=3, weights=src.state_dict())
        torch.testing.assert_close(bb.eval()(x), ref, atol=1e-5, rtol=1e-4)


def test_build_backbone_takes_a_hub_name(cached, tmp_path):
    model, _ = cached
    # vit_pico's shape; the 518-px grid keeps the position embedding as saved
    bb = build_backbone({"preset": "vit_pico", "img_size": 518}, in_chans=3, weights=NAME).eval()
    x = torch.rand(1, 3, 70, 70)
    torch.testing.assert_close(bb(x), model.forward_head(model.forward_features(x), True))


def test_offline_and_not_cached_says_how_to_get_it(offline_hub):
    with pytest.raises(
        WeightsNotCachedError,
        match=r"timm/vit_large_patch14_dinov2\.lvd142m is not in the Hugging Face cache .*"
        r"HF_HUB_OFFLINE=1 forbids downloading it.*hf download "
        r"timm/vit_large_patch14_dinov2\.lvd142m config\.json model\.safetensors",
    ):
        resolve_weights("vit_large_patch14_dinov2.lvd142m")
    assert not offline_hub.exists() or not any(offline_hub.iterdir())  # nothing was written


def test_online_cached_model_makes_no_call_uncached_one_downloads(tmp_path, monkeypatch):
    import huggingface_hub

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    staged = write_hub_cache(tmp_path / "elsewhere", _tiny_timm_model(1))
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(staged / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    res = resolve_weights(REPO)  # not in `cache`: downloaded (through huggingface_hub)
    assert calls == [(REPO, "config.json"), (REPO, "model.safetensors")]
    assert res.path == staged / "model.safetensors"
    calls.clear()
    write_hub_cache(cache, _tiny_timm_model(1))
    assert resolve_weights(REPO).path.parent.parent.parent.parent == cache
    assert calls == []  # in the cache: no call at all, even online


def test_unknown_names_and_tags():
    with pytest.raises(ValueError, match="neither a local file or folder nor a timm pretrained"):
        resolve_weights("not_a_model.foo")
    with pytest.raises(ValueError, match=r"Invalid pretrained tag \(nosuchtag\)"):
        resolve_weights("vit_small_patch14_dinov2.nosuchtag")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        resolve_weights("./absent/weights.pt")


# ------------------------------------------------------------------ local folders
def _dinov2_teacher(seed: int, *, dim: int = 64):
    """A DINOv2-layout ViT (1 head of 64, LayerScale, 224-px grid) and its teacher dict."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    vit = VisionTransformer(
        img_size=224,
        patch_size=14,
        embed_dim=dim,
        depth=1,
        num_heads=1,
        mlp_ratio=2.0,
        init_values=1e-5,
        num_classes=0,
        dynamic_img_size=True,
    )
    sd = {f"backbone.{k}": v.clone() for k, v in vit.state_dict().items()}
    sd["backbone.mask_token"] = torch.zeros(1, dim)
    sd["dino_head.mlp.0.weight"] = torch.zeros(8, dim)
    return vit.eval(), {"teacher": sd}


REFERENCE_YAML = """\
student:
  arch: vit_small
  patch_size: 14
  layerscale: 1.0e-05
  ffn_layer: mlp
  num_register_tokens: 0
crops:
  normalize_mean: null
  normalize_std: null
  global_crops_size: 224
"""


def test_reference_mad_training_folder(tmp_path):
    _, old_sd = _dinov2_teacher(1)
    new, new_sd = _dinov2_teacher(2)
    (tmp_path / "config.yaml").write_text(REFERENCE_YAML)
    for it, sd in ((9, old_sd), (99, new_sd)):
        d = tmp_path / "eval" / f"training_{it}"
        d.mkdir(parents=True)
        torch.save(sd, d / "teacher_checkpoint.pth")
    res = resolve_weights(tmp_path)
    assert res.kind == "reference_mad"
    assert res.path == tmp_path / "eval" / "training_99" / "teacher_checkpoint.pth"  # latest
    assert res.backbone == {
        "embed_dim": 64,
        "depth": 1,
        "num_heads": 1,
        "mlp_ratio": 2.0,
        "init_values": 1e-5,
        "img_size": 224,
    }
    assert res.pixel_mean == IMAGENET_MEAN
    bb = build_backbone(res.backbone, in_chans=3, weights=res.path).eval()
    x = torch.rand(2, 3, 70, 70)
    torch.testing.assert_close(bb(x), new.forward_head(new.forward_features(x), pre_logits=True))


def test_reference_folder_with_released_checkpoints(tmp_path):
    (tmp_path / "config.yaml").write_text(
        REFERENCE_YAML.replace("normalize_mean: null", "normalize_mean: [0.5, 0.5, 0.5]")
    )
    _, sd = _dinov2_teacher(3)
    inner = {k.replace("backbone.", "backbones.morphology."): v for k, v in sd["teacher"].items()}
    inner |= {
        k.replace("backbone.", "backbones.neighborhood."): v for k, v in sd["teacher"].items()
    }
    torch.save({"model": inner, "gene_names": ["A", "B"]}, tmp_path / "checkpoint_mad.pt")
    res = resolve_weights(tmp_path, prefix="neighborhood")
    assert res.path == tmp_path / "checkpoint_mad.pt" and res.pixel_mean == (0.5, 0.5, 0.5)
    assert res.backbone["embed_dim"] == 64
    with pytest.raises(ValueError, match=r"backbones\.neighborhood"):
        resolve_weights(tmp_path)  # two backbones: the error lists them
    torch.save({"model": inner}, tmp_path / "checkpoint_morphology.pt")
    with pytest.raises(ValueError, match=r"holds 2 checkpoints .*pass the file itself"):
        resolve_weights(tmp_path, prefix="neighborhood")


def test_reference_folder_refusals(tmp_path):
    (tmp_path / "config.yaml").write_text(REFERENCE_YAML.replace("vit_small", "vit_giant2"))
    torch.save(_dinov2_teacher(4)[1], tmp_path / "teacher_checkpoint.pth")
    with pytest.raises(ValueError, match=r"student\.arch='vit_giant2' is not supported"):
        resolve_weights(tmp_path)
    (tmp_path / "config.yaml").write_text(REFERENCE_YAML)
    (tmp_path / "teacher_checkpoint.pth").unlink()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resolve_weights(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not a model folder madspatial reads"):
        resolve_weights(empty)


def test_mad_model_folder_and_local_file(tmp_path):
    from madspatial.nn import MADConfig, MADModel

    cfg = MADConfig(**{**PICO_MODEL, "in_chans": 2, "n_prototypes": 8, "head_hidden_dim": 8})
    MADModel(cfg).save(tmp_path / "m")
    assert resolve_weights(tmp_path / "m").kind == "mad_model"
    assert resolve_weights(str(tmp_path / "m" / "model.safetensors")).kind == "file"
