"""mad.tl.embed: keys, shapes, row order, streaming, save/load, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import madspatial as mad
from madspatial._constants import (
    OBSM_MAD,
    OBSM_MAD_MICROENVIRONMENT,
    OBSM_MAD_MORPHOLOGY,
    UNS_MAD,
    UNS_VIEWS,
)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _config(mode="mad", in_chans=4):
    from madspatial.nn import MADConfig

    return MADConfig(
        backbone="vit_pico",
        in_chans=in_chans,
        mode=mode,
        morphology_size=28,
        microenvironment_size=56,
        n_prototypes=64,
        head_hidden_dim=32,
        head_bottleneck_dim=16,
    )


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from madspatial.nn import MADModel

    torch.manual_seed(0)
    model = MADModel(_config())
    path = tmp_path_factory.mktemp("model")
    model.save(path)
    return model, path


def test_embed_keys_shapes_and_row_order(tissue_views, saved_model):
    model, path = saved_model
    table = tissue_views.tables["table"]
    table.uns[UNS_MAD] = {"model": str(path)}  # what pretrain records
    assert mad.tl.embed(tissue_views, precision="fp32", batch_size=64) is None
    n = table.n_obs
    x = table.obsm[OBSM_MAD]
    assert x.shape == (n, 96) and x.dtype == np.float32
    assert table.obsm[OBSM_MAD_MORPHOLOGY].shape == (n, 48)
    np.testing.assert_array_equal(x[:, :48], table.obsm[OBSM_MAD_MORPHOLOGY])
    np.testing.assert_array_equal(x[:, 48:], table.obsm[OBSM_MAD_MICROENVIRONMENT])
    # row i is the embedding of the views of table row i
    store = mad.io.read_views(tissue_views)
    rows = np.array([n - 1, 0, 7])
    morph, micro = store.batch(rows)
    direct = model.embed(morph, micro)
    np.testing.assert_allclose(x[rows, :48], direct["morphology"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        x[rows, 48:], direct["microenvironment"].numpy(), rtol=1e-4, atol=1e-5
    )
    rec = table.uns[UNS_MAD]
    assert rec["model"] == str(path) and rec["mode"] == "mad" and rec["embed_dim"] == 48
    assert rec["version"] == mad.__version__ and rec["view_params"]["morphology_size"] == 28
    assert rec["obsm_keys"] == [OBSM_MAD, OBSM_MAD_MORPHOLOGY, OBSM_MAD_MICROENVIRONMENT]


def test_save_load_identical_and_batch_size_invariant(tissue_views, saved_model):
    from madspatial.nn import MADModel

    model, path = saved_model
    table = tissue_views.tables["table"]
    a = mad.tl.embed(table, model=model, precision="fp32", batch_size=50, copy=True)
    b = mad.tl.embed(table, model=MADModel.load(path), precision="fp32", batch_size=50, copy=True)
    np.testing.assert_array_equal(a.obsm[OBSM_MAD], b.obsm[OBSM_MAD])
    c = mad.tl.embed(table, model=str(path), precision="fp32", batch_size=400, copy=True)
    np.testing.assert_allclose(a.obsm[OBSM_MAD], c.obsm[OBSM_MAD], rtol=1e-4, atol=1e-5)
    assert a.uns[UNS_MAD]["model_id"] == c.uns[UNS_MAD]["model_id"]
    # bf16 is close to fp32
    d = mad.tl.embed(table, model=model, precision="bf16", copy=True)
    cos = np.sum(a.obsm[OBSM_MAD] * d.obsm[OBSM_MAD], 1) / (
        np.linalg.norm(a.obsm[OBSM_MAD], axis=1) * np.linalg.norm(d.obsm[OBSM_MAD], axis=1)
    )
    assert cos.min() > 0.99


def test_streams_one_batch_at_a_time(tissue_views, saved_model):
    """Reads never exceed one batch, so memory does not grow with the number of cells."""
    model, _ = saved_model
    store = mad.io.read_views(tissue_views)
    sizes = []

    class Spy:
        def __init__(self, s):
            self._s = s

        def __getattr__(self, name):
            return getattr(self._s, name)

        def __len__(self):
            return len(self._s)

        def batch(self, idx):
            sizes.append(len(idx))
            return self._s.batch(idx)

    out = mad.tl.embed(Spy(store), model=model, batch_size=32, precision="fp32")
    assert max(sizes) == 32 and sum(sizes) == len(store)
    assert list(out.obs_names[:3]) == [str(i) for i in store.instance_id[:3]]
    assert out.obsm[OBSM_MAD].shape == (len(store), 96)


def test_one_view_model(tissue_views):
    from madspatial.nn import MADModel

    model = MADModel(_config(mode="microenvironment"))
    out = mad.tl.embed(tissue_views.tables["table"], model=model, copy=True)
    np.testing.assert_array_equal(out.obsm[OBSM_MAD], out.obsm[OBSM_MAD_MICROENVIRONMENT])
    assert out.obsm[OBSM_MAD].shape[1] == 48
    assert OBSM_MAD_MORPHOLOGY not in out.obsm
    assert out.uns[UNS_MAD]["views"] == ["microenvironment"]


def test_embed_bad_input(tissue_views, saved_model, tmp_path, copy_tissue):
    from madspatial.nn import MADModel

    table = tissue_views.tables["table"].copy()
    table.uns.pop(UNS_MAD, None)
    with pytest.raises(ValueError, match="pretrain"):
        mad.tl.embed(table)
    with pytest.raises(ValueError, match="3 channels"):
        mad.tl.embed(table, model=MADModel(_config(in_chans=3)))
    # a SpatialData without views: normalized, views cut on the fly at the model's sizes
    mad.tl.embed(copy_tissue, model=saved_model[0], precision="fp32", batch_size=64)
    fresh = copy_tissue.tables["table"]
    assert fresh.uns[UNS_VIEWS]["store"] == "on_the_fly"
    ref = mad.tl.embed(
        tissue_views, model=saved_model[0], precision="fp32", batch_size=64, copy=True
    )
    np.testing.assert_array_equal(fresh.obsm[OBSM_MAD], ref.obsm[OBSM_MAD])
    # a model written by an incompatible version fails clearly
    model = saved_model[0]
    old = tmp_path / "old"
    model.save(old)
    cfg = json.loads((old / "config.json").read_text())
    cfg["format_version"] = 999
    (old / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version"):
        mad.tl.embed(table, model=old)
