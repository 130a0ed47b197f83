"""mad.tl.pretrain on the tiny synthetic tissue (pico model, small views, a few steps)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import UNS_MAD, UNS_MODEL, UNS_VIEWS

from ..conftest import TINY_TRAIN

SMALL = {**TINY_TRAIN, "model": "vit_pico"}

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # short runs: weak signal


def test_pretrain_records_model_and_saves_it(tissue_views, tmp_path):
    from madspatial.nn import MADModel

    out = tmp_path / "m"
    model = mad.tl.pretrain(tissue_views, max_steps=3, checkpoint_dir=out, **SMALL)
    table = tissue_views.tables["table"]
    assert table.uns[UNS_MAD][UNS_MODEL] == str(out.resolve())
    assert {"config.json", "model.safetensors", "history.json", "checkpoint.pt"} <= {
        p.name for p in out.iterdir()
    }
    assert isinstance(model, MADModel) and model.config.in_chans == 4
    assert model.config.channel_names == list(tissue_views.images["morphology"].c.values)
    assert model.config.morphology_size == 28 and model.config.microenvironment_size == 56
    h = model.history
    assert len(h["loss"]) == 3 and np.isfinite(h["loss"]).all()
    assert {"recall@1", "recall@5", "recall@10", "teacher_entropy", "ln_k"} <= set(h)
    # the returned model is the teacher that was saved
    loaded = MADModel.load(out)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)


def test_pretrain_default_dir_is_reused(tissue_views, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = tissue_views.tables["table"].copy()
    first = mad.tl.pretrain(table, max_steps=2, mode="morphology", **SMALL)
    path = table.uns[UNS_MAD][UNS_MODEL]
    assert path.startswith(str(tmp_path / "mad_models" / "morphology_vit_pico_"))
    # the same call again resumes the finished run: same model, no new training
    again = mad.tl.pretrain(table, max_steps=2, mode="morphology", **SMALL)
    assert again.history["loss"] == first.history["loss"]
    # other options -> another folder
    mad.tl.pretrain(table, max_steps=1, mode="morphology", **SMALL)
    assert table.uns[UNS_MAD][UNS_MODEL] != path


def test_pretrain_from_zarr_store_path(tissue_views, tmp_path):
    store = mad.io.read_views(tissue_views).save(tmp_path / "views.zarr")
    model = mad.tl.pretrain(
        str(store.path), max_steps=2, checkpoint_dir=tmp_path / "m", num_workers=0, **SMALL
    )
    assert len(model.history["loss"]) == 2


def test_pretrain_computes_missing_views(copy_tissue, tmp_path):
    table = copy_tissue.tables["table"]
    assert UNS_VIEWS not in table.uns
    opts = dict(SMALL, batch_size=8, n_local=0, n_holdout=8)
    mad.tl.pretrain(copy_tissue, max_steps=1, checkpoint_dir=tmp_path / "m", **opts)
    table = copy_tissue.tables["table"]
    assert UNS_VIEWS in table.uns and "morphology_normalized" in copy_tissue.images
    assert mad.io.read_views(copy_tissue).microenvironment_size == 224


def test_an_unknown_option_is_refused_before_any_view_is_cut(copy_tissue, tmp_path):
    with pytest.raises(TypeError, match=r"unknown option\(s\) 'out'.*checkpoint_dir"):
        mad.tl.pretrain(copy_tissue, out=tmp_path, **SMALL)
    with pytest.raises(TypeError, match=r"'view_head' \(did you mean view_heads"):
        mad.tl.pretrain(copy_tissue, view_head=True, **SMALL)
    table = copy_tissue.tables["table"]
    assert UNS_VIEWS not in table.uns and "morphology_normalized" not in copy_tissue.images


def test_pretrain_bad_input(tmp_path):
    with pytest.raises(KeyError, match="cell_views"):
        mad.tl.pretrain(ad.AnnData(np.zeros((3, 2))), checkpoint_dir=tmp_path, **SMALL)
    with pytest.raises(TypeError, match="SpatialData"):
        mad.tl.pretrain(np.zeros((3, 2)), checkpoint_dir=tmp_path, **SMALL)


def test_the_predictor_heads_recipe_trains_and_reloads_its_heads(tissue_views, tmp_path):
    from madspatial.nn import MADModel

    out = tmp_path / "m"
    model = mad.tl.pretrain(
        tissue_views, recipe="predictor_heads", max_steps=2, checkpoint_dir=out, **SMALL
    )
    assert model.config.view_heads and model.config.predictor_heads
    loaded = MADModel.load(out)
    assert loaded.config.view_heads and loaded.config.predictor_heads
    state, again = model.state_dict(), loaded.state_dict()
    assert state.keys() == again.keys() and any(".predict_" in k for k in state)
    for k in state:
        np.testing.assert_array_equal(state[k].numpy(), again[k].numpy(), err_msg=k)
