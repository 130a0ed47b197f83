"""tl.embed / tl.pretrain on views cut on the fly: same numbers as from a store, streamed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import madspatial as mad
from madspatial._constants import OBSM_MAD, UNS_VIEWS
from madspatial.pp._on_the_fly import OnTheFlyViews

from ..conftest import TINY_TRAIN

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

SLIDE = {"n_cells": 400, "tile_px": 256, "chunk_px": 128, "expression": False}
KW = {
    "image_key": "morphology_normalized",
    "labels_key": "cell_labels",
    "morphology_size": 28,
    "microenvironment_size": 56,
}
SMALL = {
    **TINY_TRAIN,
    "model": "vit_pico",
    "n_prototypes": 32,
    "head_hidden_dim": 16,
    "n_local": 0,
    "n_holdout": 8,
    "precision": "fp32",
}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    root = tmp_path_factory.mktemp("otf_embed")
    sdata = mad.datasets.synthetic_slide(root / "slide.zarr", **SLIDE)
    mad.pp.normalize(sdata, image_key="morphology")
    store = mad.pp.cell_views(sdata, **KW, store=root / "v.zarr", inplace=False)
    mad.pp.cell_views(sdata, **KW, store="on_the_fly")
    return sdata, store


def pico_model():
    """A seeded pico MAD model for 4-channel 28 / 56 px views (also the torchrun test's)."""
    from madspatial.nn import MADConfig, MADModel

    torch.manual_seed(0)
    return MADModel(
        MADConfig(
            backbone="vit_pico",
            in_chans=4,
            morphology_size=28,
            microenvironment_size=56,
            n_prototypes=32,
            head_hidden_dim=16,
            head_bottleneck_dim=16,
        )
    )


@pytest.fixture(scope="module")
def model():
    return pico_model()


def test_embed_on_the_fly_equals_embed_from_store(slide, model, monkeypatch):
    sdata, store = slide
    ref = mad.tl.embed(store.path, model=model, batch_size=64, precision="fp32")
    sizes: list[int] = []
    orig = OnTheFlyViews.batch

    def spy(self, idx):
        sizes.append(len(idx))
        return orig(self, idx)

    monkeypatch.setattr(OnTheFlyViews, "batch", spy)
    mad.tl.embed(sdata, model=model, batch_size=64, precision="fp32")
    got = sdata.tables["table"].obsm[OBSM_MAD]
    np.testing.assert_array_equal(got, ref.obsm[OBSM_MAD])
    # streamed: one batch of views cut at a time, every cell cut once per pass
    n = len(store)
    assert max(sizes) <= 64 and sum(sizes) == n and len(sizes) == -(-n // 64)


def test_embed_on_the_fly_in_worker_processes(slide, model):
    sdata, store = slide
    ref = mad.tl.embed(store.path, model=model, batch_size=64, precision="fp32")
    out = mad.tl.embed(
        sdata, model=model, batch_size=64, precision="fp32", num_workers=2, copy=True
    )
    np.testing.assert_array_equal(out.obsm[OBSM_MAD], ref.obsm[OBSM_MAD])


def test_pretrain_on_the_fly_follows_the_store_run(slide, tmp_path):
    sdata, store = slide
    a = mad.tl.pretrain(store.path, max_steps=3, checkpoint_dir=tmp_path / "a", seed=0, **SMALL)
    b = mad.tl.pretrain(sdata, max_steps=3, checkpoint_dir=tmp_path / "b", seed=0, **SMALL)
    la, lb = a.history["loss"], b.history["loss"]
    assert len(la) == len(lb) == 3
    np.testing.assert_allclose(lb, la, rtol=1e-6)  # same cells, same pixels, same steps
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6)


def _without_views(sdata):
    """The slide's image and labels with a copy of its table that has no views yet."""
    import spatialdata

    table = sdata.tables["table"].copy()
    table.uns.pop(UNS_VIEWS)
    return spatialdata.SpatialData(
        images=dict(sdata.images), labels=dict(sdata.labels), tables={"table": table}
    )


def test_embed_without_views_cuts_them_on_the_fly_at_the_model_sizes(slide, model):
    sdata, store = slide
    ref = mad.tl.embed(store.path, model=model, batch_size=64, precision="fp32")
    fresh = _without_views(sdata)
    mad.tl.embed(fresh, model=model, batch_size=64, precision="fp32")
    info = fresh.tables["table"].uns[UNS_VIEWS]
    assert info["store"] == "on_the_fly"  # nothing stored
    assert (info["morphology_size"], info["microenvironment_size"]) == (28, 56)  # the model's
    assert isinstance(mad.io.read_views(fresh), OnTheFlyViews)
    np.testing.assert_array_equal(fresh.tables["table"].obsm[OBSM_MAD], ref.obsm[OBSM_MAD])


def test_pretrain_without_views_cuts_them_on_the_fly(slide, monkeypatch):
    import madspatial.train as T

    seen = {}

    class Stop(Exception):
        pass

    def trainer(store, cfg, **kw):
        seen["store"] = store
        raise Stop

    monkeypatch.setattr(T, "Trainer", trainer)
    fresh = _without_views(slide[0])
    with pytest.raises(Stop):
        mad.tl.pretrain(fresh, preset="cpu", max_steps=1)
    assert isinstance(seen["store"], OnTheFlyViews) and len(seen["store"]) == len(slide[1])
    assert fresh.tables["table"].uns[UNS_VIEWS]["store"] == "on_the_fly"
    assert seen["store"].morphology_size == 56  # the cpu preset's view sizes
