"""tl.pretrain(preset=...): option sets defined once with TrainConfig; explicit options win."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest

import madspatial as mad
import madspatial.train
from madspatial.train._config import (
    AUTO_RECIPE_MIN_STEPS,
    PRESETS,
    RECIPES,
    TrainConfig,
    recipe_options,
    resolve_preset,
    resolve_recipe,
)
from madspatial.train._trainer import LONG_CPU_RUN_S, WallClock

from ..conftest import PICO_MODEL
from ..train.conftest import make_store, planted_views


class _Captured(Exception):
    pass


class FakeTrainer:
    """Records the TrainConfig tl.pretrain builds, and trains nothing."""

    def __init__(self, store, cfg, *, model=None, cells=None):
        raise _Captured(cfg)


@pytest.fixture
def captured_config(monkeypatch):
    monkeypatch.setattr(madspatial.train, "Trainer", FakeTrainer)

    def run(**kwargs) -> TrainConfig:
        store = make_store(*planted_views(8, seed=0)[:2])
        with pytest.raises(_Captured) as e:
            mad.tl.pretrain(store, **kwargs)
        return e.value.args[0]

    return run


def test_paper_preset_is_the_trainconfig_defaults():
    defaults = TrainConfig()
    for name, value in PRESETS["paper"].items():
        if name in ("morphology_size", "microenvironment_size"):
            assert value == getattr(mad.nn.MADConfig(), name)
        else:
            assert getattr(defaults, name) == value, name
    assert PRESETS["paper"]["n_prototypes"] == 65536 == mad.nn.MADConfig().n_prototypes


def test_pretrain_signature_defaults_come_from_trainconfig():
    params = inspect.signature(mad.tl.pretrain).parameters
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    shared = [n for n in params if n in fields and n not in ("seed", "weights")]
    assert len(shared) >= 20
    for name in shared:
        assert params[name].default == fields[name], name
    assert params["model"].default == fields["backbone"] == "vit_small"
    assert params["preset"].default == "paper"


def test_default_is_paper(captured_config):
    cfg = captured_config(max_steps=1)
    assert (cfg.backbone, cfg.n_prototypes, cfg.head_hidden_dim, cfg.n_local) == (
        "vit_small",
        65536,
        2048,
        4,
    )
    assert cfg.base_lr == 5e-4


def test_cpu_preset_and_explicit_options_win(captured_config):
    cfg = captured_config(preset="cpu", max_steps=1)
    assert cfg.backbone == PRESETS["cpu"]["backbone"]
    assert (cfg.n_prototypes, cfg.head_hidden_dim, cfg.head_bottleneck_dim) == (1024, 512, 128)
    assert (cfg.n_local, cfg.base_lr) == (2, 8e-3)
    cfg = captured_config(preset="cpu", n_prototypes=64, model="vit_pico", base_lr=1e-3)
    assert (cfg.n_prototypes, cfg.backbone, cfg.base_lr) == (64, "vit_pico", 1e-3)
    assert cfg.head_hidden_dim == 512  # not given: still the preset's


def test_auto_picks_by_device():
    assert resolve_preset("auto", "cpu")[0] == "cpu"
    assert resolve_preset("auto", "cuda")[0] == "paper"
    assert resolve_preset("cpu")[1]["microenvironment_size"] == 112


def test_bad_preset_names_the_choices(captured_config):
    with pytest.raises(
        ValueError, match=r"preset must be one of \['paper', 'cpu', 'auto'\]; got 'gpu' \(str\)"
    ):
        captured_config(preset="gpu")


def test_recipe_fills_the_loss_options_and_explicit_ones_win(captured_config):
    paper = captured_config(max_steps=1)
    assert (paper.view_heads, paper.predictor_heads, paper.augment) == (False, False, {})
    cfg = captured_config(recipe="predictor_heads", max_steps=1)
    assert (cfg.view_heads, cfg.predictor_heads, cfg.cross_terms) == (True, True, "both")
    assert cfg.augment == {"microenvironment_center_jitter": 0.1}
    # augment keys merge (yours win); other explicit options win over the recipe
    cfg = captured_config(
        recipe="predictor_heads",
        max_steps=1,
        augment={"jitter": 0.3, "microenvironment_center_jitter": 0.2},
        cross_terms="to_microenvironment",
    )
    assert cfg.augment == {"microenvironment_center_jitter": 0.2, "jitter": 0.3}
    assert (cfg.view_heads, cfg.cross_terms) == (True, "to_microenvironment")
    # the recipe refuses nothing it set itself: a single view takes its crops only
    one = captured_config(recipe="predictor_heads", mode="microenvironment", max_steps=1)
    assert (one.view_heads, one.predictor_heads) == (False, False)
    assert one.augment == {"microenvironment_center_jitter": 0.1}
    # turning the heads off explicitly reaches TrainConfig's own rule
    with pytest.raises(ValueError, match="predictor_heads=True needs view_heads=True"):
        captured_config(recipe="predictor_heads", view_heads=False, max_steps=1)


def test_bad_recipe_names_the_choices(captured_config):
    with pytest.raises(
        ValueError,
        match=r"recipe must be one of \['auto', 'paper', 'predictor_heads'\]; got 'dino'",
    ):
        captured_config(recipe="dino")
    assert set(RECIPES) == {"paper", "predictor_heads"} and RECIPES["paper"] == {}
    with pytest.raises(ValueError, match="resolve it first"):
        recipe_options("auto", "mad", {})


def test_auto_recipe_picks_by_the_planned_steps(captured_config, caplog):
    assert inspect.signature(mad.tl.pretrain).parameters["recipe"].default == "auto"
    n = AUTO_RECIPE_MIN_STEPS
    heads = lambda c: (c.view_heads, c.predictor_heads, c.augment)  # noqa: E731
    paper, recipe = (False, False, {}), (True, True, {"microenvironment_center_jitter": 0.1})
    assert heads(captured_config(max_steps=n - 1)) == paper
    with caplog.at_level(logging.INFO, logger="madspatial"):
        assert heads(captured_config(max_steps=n)) == recipe
    assert f"recipe 'auto' -> 'predictor_heads' ({n} planned steps" in caplog.text
    # from epochs: 8 cells, none held out, batches of 2 -> 4 steps an epoch
    by_epochs = dict(batch_size=2, n_holdout=0)
    assert heads(captured_config(epochs=n // 4, **by_epochs)) == recipe
    assert heads(captured_config(epochs=n // 4 - 1, **by_epochs)) == paper
    # a single view of a long run takes the recipe's crops: the fair control for it
    one = captured_config(max_steps=n, mode="microenvironment")
    assert heads(one) == (False, False, {"microenvironment_center_jitter": 0.1})
    # a named recipe is trained at any length
    assert heads(captured_config(max_steps=10 * n, recipe="paper")) == paper
    assert heads(captured_config(max_steps=1, recipe="predictor_heads")) == recipe
    assert resolve_recipe("auto", n) == "predictor_heads" and resolve_recipe("auto", 1) == "paper"
    # the public rule is the one pretrain follows, exceptions included
    assert resolve_recipe("auto", n, start_heads=False) == "paper"
    assert resolve_recipe("auto", 1, start_heads=True) == "predictor_heads"
    assert resolve_recipe("auto", n, pretrained=True) == "paper"
    assert resolve_recipe("predictor_heads", 1, pretrained=True) == "predictor_heads"


@pytest.mark.parametrize("heads", [False, True])
def test_auto_recipe_keeps_the_heads_of_a_model_trained_further(captured_config, heads):
    # a long run from a paper-loss model must not switch heads (its weights would not fit)
    start = mad.nn.MADModel(
        mad.nn.MADConfig(**PICO_MODEL, in_chans=2, view_heads=heads, predictor_heads=heads)
    )
    cfg = captured_config(model=start, max_steps=1 if heads else AUTO_RECIPE_MIN_STEPS)
    assert (cfg.view_heads, cfg.predictor_heads) == (heads, heads)


def test_auto_recipe_gives_pretrained_weights_the_papers_loss(captured_config, offline_hub):
    # the recipe was measured from random weights; from pretrained ones the paper's loss
    from ..nn import test_hub_weights as hub

    hub.write_hub_cache(offline_hub, hub._tiny_timm_model())
    cfg = captured_config(weights=hub.NAME, max_steps=AUTO_RECIPE_MIN_STEPS)
    assert (cfg.view_heads, cfg.predictor_heads, cfg.augment) == (False, False, {})
    cfg = captured_config(weights=hub.NAME, max_steps=1, recipe="predictor_heads")
    assert (cfg.view_heads, cfg.predictor_heads) == (True, True)


def test_cpu_preset_cuts_the_views_it_computes(monkeypatch):
    import madspatial.tl._pretrain as P

    seen = {}

    def fake_compute(sdata, key, views_key, view_sizes=None):
        seen.update(view_sizes or {})
        raise _Captured

    monkeypatch.setattr(P, "_compute_views", fake_compute)

    class Table:
        uns: dict = {}  # noqa: RUF012 - no views yet

    class SData:  # what resolve_views needs of a SpatialData without views
        tables: dict = {"table": Table()}  # noqa: RUF012
        images: dict = {}  # noqa: RUF012

    with pytest.raises(_Captured):
        mad.tl.pretrain(SData(), preset="cpu", max_steps=1)
    assert seen == {"morphology_size": 56, "microenvironment_size": 112}
    seen.clear()
    with pytest.raises(_Captured):
        mad.tl.pretrain(SData(), max_steps=1)  # paper: cell_views' own defaults
    assert seen == {}


def _tick(clock, times):
    for done, t in enumerate(times, start=clock.start + 1):
        clock.step_done(done, t)


def test_wall_clock_projects_the_run(mad_log):
    clock = WallClock(0, 100, "cuda")
    _tick(clock, [10.0, 12.0, 14.0, 16.0, 18.0])  # 2 s a step after the first
    assert clock.projected_s == pytest.approx(200.0)
    info = [r for r in mad_log.records if "projected wall time" in r.getMessage()]
    assert len(info) == 1 and info[0].levelno == logging.INFO
    assert "~3 min (100 steps; ~3 min left)" in info[0].getMessage()
    assert not [r for r in mad_log.records if r.levelno >= logging.WARNING]


def test_wall_clock_warns_on_a_long_cpu_run(mad_log):
    clock = WallClock(10, 2010, "cpu")  # resumed at step 10
    _tick(clock, [0.0, 2.0, 4.0, 6.0])
    assert clock.projected_s == pytest.approx(4000.0) and clock.projected_s > LONG_CPU_RUN_S
    warn = [r for r in mad_log.records if r.levelno == logging.WARNING]
    assert len(warn) == 1
    assert 'preset="cpu"' in warn[0].getMessage() and "~67 min" in warn[0].getMessage()


def test_wall_clock_short_run_projects_at_its_end(mad_log):
    clock = WallClock(0, 2, "cpu")
    _tick(clock, [5.0, 6.5])
    assert clock.projected_s == pytest.approx(3.0)
