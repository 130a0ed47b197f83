"""The training loop on a tiny planted store: determinism, resume, errors, history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from madspatial.train import TrainConfig, Trainer, TrainingDivergedError, load_checkpoint
from madspatial.train._data import derive_seed

from ..conftest import TINY_TRAIN

TINY = {
    **TINY_TRAIN,
    "backbone": "vit_pico",
    "precision": "fp32",  # bf16 is emulated (slow) on AVX2-only CPUs
}


def _fit(store, **kw):
    opts = dict(TINY)
    opts.update(kw)
    callback = opts.pop("callback", None)
    model = opts.pop("model", None)
    return Trainer(store, TrainConfig(**opts), model=model, callback=callback).fit()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_same_seed_same_numbers_and_history(planted_store):
    a = _fit(planted_store, max_steps=3, seed=1)
    b = _fit(planted_store, max_steps=3, seed=1)
    c = _fit(planted_store, max_steps=1, seed=2)
    assert a.history["loss"] == b.history["loss"]
    assert a.history["loss"][0] != c.history["loss"][0]
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    h = a.history
    assert h["step"] == [0, 1, 2] and len(h["lr"]) == 3 and np.isfinite(h["loss"]).all()
    assert h["eval_step"][0] == 0 and h["eval_step"][-1] == 3
    assert h["ln_k"] == pytest.approx(np.log(64))
    assert h["teacher_temp"][0] == pytest.approx(0.04)
    # lr warms up linearly from 0, teacher temperature rises, EMA momentum rises
    assert h["lr"][0] == 0.0 and h["lr"][1] > 0
    assert h["teacher_temp"][-1] > h["teacher_temp"][0]
    assert h["momentum"][-1] > h["momentum"][0]


class _Stop(Exception):
    pass


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_interrupted_and_resumed_run_matches_uninterrupted(planted_store, tmp_path):
    # 160 cells - 16 held out = 144 -> 4 steps of 32 per epoch: the run crosses an epoch
    kw = dict(max_steps=6, batch_size=32, checkpoint_every=2, freeze_last_layer_steps=3)
    full = _fit(planted_store, checkpoint_dir=str(tmp_path / "full"), **kw)

    def stop_at_3(step, trainer):
        if step == 3:
            raise _Stop

    part_dir = str(tmp_path / "part")
    with pytest.raises(_Stop):
        _fit(planted_store, checkpoint_dir=part_dir, callback=stop_at_3, **kw)
    assert load_checkpoint(part_dir)["step"] == 2  # the last checkpoint before the stop
    resumed = _fit(planted_store, checkpoint_dir=part_dir, **kw)
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-6, atol=0)
    assert resumed.history["step"] == list(range(6))
    for (k, va), vb in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-6, atol=1e-7, msg=k)

    # a finished run is not trained again
    again = _fit(planted_store, checkpoint_dir=part_dir, callback=stop_at_3, **kw)
    assert again.history["loss"] == resumed.history["loss"]

    # a different run refuses the checkpoint, naming what differs
    with pytest.raises(ValueError, match="alpha"):
        _fit(planted_store, checkpoint_dir=part_dir, alpha=0.5, **kw)


def test_nan_loss_stops_with_step_and_causes(planted_store):
    from madspatial.nn import MADConfig, MADModel

    cfg = MADConfig(
        backbone="vit_pico",
        in_chans=2,
        channel_names=["c0", "c1"],
        morphology_size=28,
        microenvironment_size=56,
        n_prototypes=64,
        head_hidden_dim=32,
        head_bottleneck_dim=16,
    )
    broken = MADModel(cfg)
    with torch.no_grad():
        broken.backbone.patch_embed.proj.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"step 0 .*learning rate.*empty views"):
        _fit(planted_store, max_steps=2, model=broken)


def test_bad_inputs(planted_store, planted):
    from madspatial.nn import MADConfig, MADModel

    three = MADModel(
        MADConfig(
            backbone="vit_pico",
            in_chans=3,
            n_prototypes=64,
            head_hidden_dim=32,
            head_bottleneck_dim=16,
        )
    )
    with pytest.raises(ValueError, match="3 channels"):
        _fit(planted_store, max_steps=1, model=three)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match=r"too few|batch_size"):
        _fit(planted_store, max_steps=1, batch_size=200)
    from madspatial.io import ViewStore

    morph, micro, _ = planted
    s = planted_store
    odd = ViewStore(
        morph[:, :, :27, :27].copy(),
        micro,
        s.instance_id,
        s.centroid,
        s.window_px,
        {"channel_names": s.channel_names},
    )
    with pytest.raises(ValueError, match="multiple of the patch"):
        _fit(odd, max_steps=1)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_single_view_mode_reads_only_its_view(planted_store):
    class Counting:
        """Forwards to the store, counting which arrays are read."""

        def __init__(self, store):
            self._s, self.reads = store, []

        def __getattr__(self, name):
            if name in ("morphology", "microenvironment"):
                self.reads.append(name)
            return getattr(self._s, name)

        def __len__(self):
            return len(self._s)

        def batch(self, idx):
            self.reads.append("batch")
            return self._s.batch(idx)

    store = Counting(planted_store)
    model = _fit(store, max_steps=2, mode="morphology")
    assert set(store.reads) == {"morphology"}
    assert model.views == ("morphology",)
    assert "two augmented global crops" in model.history["recall_views"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pixel_stats_data_or_fixed(planted_store):
    from madspatial.train._data import pixel_statistics

    data = _fit(planted_store, max_steps=1, seed=0)
    want_mean, want_std = pixel_statistics(
        planted_store, ("morphology", "microenvironment"), seed=derive_seed(0, 0, 0, 3)
    )
    assert data.config.pixel_mean == pytest.approx(want_mean)
    assert data.config.pixel_std == pytest.approx(want_std)
    fixed = _fit(planted_store, max_steps=1, seed=0, pixel_stats="fixed")
    assert fixed.config.pixel_mean == [0.5, 0.5] and fixed.config.pixel_std == [0.25, 0.25]
    with pytest.raises(ValueError, match="pixel_stats"):
        TrainConfig(**dict(TINY, pixel_stats="imagenet"))
    with pytest.raises(ValueError, match="centering"):
        TrainConfig(**dict(TINY, centering="batch"))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_view_heads_train_both_heads_and_log_agreement_within_heads(planted_store):
    model = _fit(planted_store, max_steps=3, view_heads=True, freeze_last_layer_steps=0)
    assert model.config.view_heads and set(model.head.heads) == {"morphology", "microenvironment"}
    h = model.history
    assert np.isfinite(h["loss"]).all() and len(h["view_agreement"]) == 3
    assert all(0.0 <= a <= 1.0 for a in h["view_agreement"])
    with pytest.raises(ValueError, match="starting model has view_heads=True"):
        _fit(planted_store, max_steps=1, model=model)
    with pytest.raises(ValueError, match="view_heads=True needs both views"):
        TrainConfig(**{**TINY, "mode": "morphology", "view_heads": True})


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("n_holdout", [None, 0])
def test_planned_steps_is_the_plan_the_trainer_runs(planted_store, n_holdout):
    # tl.pretrain(recipe="auto") decides from planned_steps before the Trainer exists
    from madspatial.train._trainer import planned_steps

    kw = dict(epochs=1, max_steps=None, batch_size=32, n_holdout=n_holdout)
    model = _fit(planted_store, **kw)
    done = model.config.metadata["training"]["total_steps"]
    # 160 cells, 16 held out by default: 144 // 32 = 4 steps; none held out: 160 // 32 = 5
    assert done == (4 if n_holdout is None else 5) == len(model.history["loss"])
    assert planned_steps(len(planted_store), **kw) == done
    assert planned_steps(len(planted_store), **{**kw, "epochs": 3}) == 3 * done
    assert planned_steps(len(planted_store), **{**kw, "max_steps": 7}) == 7
