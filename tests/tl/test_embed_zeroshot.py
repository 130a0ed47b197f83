"""Real weights in: mad.tl.embed(weights=...) zero-shot and mad.tl.pretrain(weights=...) from
a tiny model in an offline huggingface_hub cache, a reference-MAD folder, a MADModel folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import madspatial as mad
from madspatial._constants import (
    OBSM_MAD,
    OBSM_ZEROSHOT,
    UNS_MAD,
    UNS_ZEROSHOT,
)
from madspatial.nn._pretrained import IMAGENET_MEAN, IMAGENET_STD, WeightsNotCachedError

from ..conftest import PICO_MODEL, TINY_TRAIN
from ..nn import test_hub_weights as hub  # its cache writer and tiny models (one definition)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


SMALL = {**TINY_TRAIN, "lr": 1e-12, "max_steps": 1}


@pytest.fixture
def cached(offline_hub):
    """The tiny ViT under the DINOv2 ViT-S/14 name in an offline cache; no network."""
    model = hub._tiny_timm_model()
    hub.write_hub_cache(offline_hub, model)
    return model


def _cls(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


# ------------------------------------------------------------------ zero-shot embed
def test_zeroshot_embed_is_the_pretrained_vit_on_standardised_views(tissue_views, cached):
    table = tissue_views.tables["table"]
    mad_record = dict(table.uns.get(UNS_MAD, {}))
    assert mad.tl.embed(tissue_views, weights=hub.NAME, precision="fp32") is None
    n = table.n_obs
    x = table.obsm[OBSM_ZEROSHOT]
    assert x.shape == (n, 96) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x[:, :48], table.obsm[OBSM_ZEROSHOT + "_morphology"])
    np.testing.assert_array_equal(x[:, 48:], table.obsm[OBSM_ZEROSHOT + "_microenvironment"])
    # by hand: ImageNet's mean/std averaged over RGB on each of the 4 channels; the mean RGB
    # filter on every channel (x 3/4) is the RGB model on the channel-mean image as grey
    store = mad.io.read_views(tissue_views)
    rows = np.array([0, 7, n - 1])
    morph, micro = store.batch(rows)
    mean, std = np.mean(IMAGENET_MEAN), np.mean(IMAGENET_STD)
    for view, pixels, cols in (
        ("morphology", morph, slice(0, 48)),
        ("microenvironment", micro, slice(48, 96)),
    ):
        z = (torch.from_numpy(np.asarray(pixels)).float() / 255 - mean) / std
        grey = z.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        with torch.no_grad():
            ref = _cls(cached, grey).numpy()
        np.testing.assert_allclose(x[rows, cols], ref, rtol=1e-4, atol=1e-4, err_msg=view)
    rec = table.uns[UNS_ZEROSHOT][OBSM_ZEROSHOT]
    assert rec["weights"] == hub.NAME and rec["kind"] == "hub" and rec["embed_dim"] == 48
    assert rec["file"].endswith(f"models--timm--{hub.NAME}/snapshots/{hub.REV}/model.safetensors")
    assert rec["pixel_mean"] == pytest.approx([mean] * 4)
    assert any("3 -> 4 channels" in a for a in rec["adapted"])
    assert dict(table.uns.get(UNS_MAD, {})) == mad_record  # the MAD record is not touched
    assert OBSM_MAD not in table.obsm or not np.array_equal(table.obsm[OBSM_MAD], x)


@pytest.mark.filterwarnings("ignore:the cell views this table refers to:UserWarning")
def test_zeroshot_is_deterministic_and_not_a_random_model(tissue_views, cached, tmp_path):
    from madspatial.nn import MADModel

    a = mad.tl.embed(
        tissue_views, weights=hub.REPO, precision="fp32", copy=True, key_added="X_dino"
    )
    b = mad.tl.embed(
        tissue_views,
        weights="hf-hub:" + hub.REPO,
        precision="fp32",
        copy=True,
        key_added="X_dino",
        batch_size=100,
    )
    np.testing.assert_allclose(a.obsm["X_dino"], b.obsm["X_dino"], rtol=1e-5, atol=1e-6)
    assert a.uns[UNS_ZEROSHOT]["X_dino"]["weights"] == hub.REPO
    a.write_h5ad(tmp_path / "a.h5ad")  # the record is storable
    assert b.uns[UNS_ZEROSHOT]["X_dino"]["weights"] == "hf-hub:" + hub.REPO
    cfg = mad.nn.MADConfig.from_dict(
        {**_zeroshot_config(tissue_views), "format_version": mad.nn.MODEL_FORMAT_VERSION}
    )
    torch.manual_seed(0)
    random = mad.tl.embed(tissue_views, model=MADModel(cfg), precision="fp32", copy=True)
    diff = np.abs(random.obsm[OBSM_MAD] - a.obsm["X_dino"]).mean()
    assert diff > 0.1 * np.abs(a.obsm["X_dino"]).mean()


def _zeroshot_config(sdata):
    from madspatial.nn._pretrained import resolve_weights, zeroshot_model

    store = mad.io.read_views(sdata)
    model, _ = zeroshot_model(
        resolve_weights(hub.NAME),
        in_chans=store.n_channels,
        morphology_size=28,
        microenvironment_size=56,
    )
    return model.config.to_dict()


def test_zeroshot_errors(tissue_views, cached, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"pass model= .* or weights= .*not both"):
        mad.tl.embed(tissue_views, model=tmp_path, weights=hub.NAME, copy=True)
    with pytest.raises(WeightsNotCachedError, match="not in the Hugging Face cache"):
        mad.tl.embed(tissue_views, weights="vit_base_patch14_dinov2.lvd142m", copy=True)
    from madspatial.nn import MADConfig, MADModel

    cfg = MADConfig(**{**PICO_MODEL, "in_chans": 4, "n_prototypes": 8, "head_hidden_dim": 8})
    MADModel(cfg).save(tmp_path / "m")
    with pytest.raises(ValueError, match=r"is a trained MAD model.*as model="):
        mad.tl.embed(tissue_views, weights=tmp_path / "m", copy=True)


# ------------------------------------------------------------------ pretrain(weights=)
def test_pretrain_from_a_hub_name_picks_its_architecture(tissue_views, cached, tmp_path):
    # model= left at its default ("vit_small"): the 48-d 2-block weights pick vit_pico
    model = mad.tl.pretrain(tissue_views, weights=hub.NAME, checkpoint_dir=tmp_path / "m", **SMALL)
    assert model.config.backbone == "vit_pico"
    src = cached.state_dict()
    w = src["patch_embed.proj.weight"]
    expected = (w.mean(dim=1, keepdim=True) * 3 / 4).expand(-1, 4, -1, -1)
    got = model.backbone.state_dict()
    torch.testing.assert_close(got["patch_embed.proj.weight"], expected, atol=1e-6, rtol=1e-5)
    # vit_pico has no LayerScale: the gammas were folded into the projections
    folded = src["blocks.0.attn.proj.weight"] * src["blocks.0.ls1.gamma"][:, None]
    torch.testing.assert_close(got["blocks.0.attn.proj.weight"], folded, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"embed_dim=48.*model='vit_tiny'.*pass model='vit_pico'"):
        mad.tl.pretrain(
            tissue_views, weights=hub.NAME, model="vit_tiny", checkpoint_dir=tmp_path / "x", **SMALL
        )


def test_pretrain_from_reference_folder_and_mad_folder(tissue_views, tmp_path):
    ref = tmp_path / "ref"
    (ref / "eval" / "training_5").mkdir(parents=True)
    (ref / "config.yaml").write_text(hub.REFERENCE_YAML)
    vit, sd = hub._dinov2_teacher(7)
    torch.save(sd, ref / "eval" / "training_5" / "teacher_checkpoint.pth")
    first = mad.tl.pretrain(tissue_views, weights=ref, checkpoint_dir=tmp_path / "a", **SMALL)
    assert first.config.backbone["embed_dim"] == 64 and first.config.backbone["num_heads"] == 1
    w = vit.state_dict()["patch_embed.proj.weight"]
    torch.testing.assert_close(
        first.backbone.patch_embed.proj.weight,
        (w.mean(dim=1, keepdim=True) * 3 / 4).expand(-1, 4, -1, -1),
        atol=1e-6,
        rtol=1e-5,
    )
    # a MADModel folder: training continues from it
    again = mad.tl.pretrain(
        tissue_views, weights=tmp_path / "a", checkpoint_dir=tmp_path / "b", **SMALL
    )
    assert again.config.backbone == first.config.backbone
    torch.testing.assert_close(
        again.backbone.blocks[0].attn.qkv.weight,
        first.backbone.blocks[0].attn.qkv.weight,
        atol=1e-6,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="drop model= to continue training that model"):
        mad.tl.pretrain(
            tissue_views,
            weights=tmp_path / "a",
            model="vit_tiny",
            checkpoint_dir=tmp_path / "c",
            **SMALL,
        )
