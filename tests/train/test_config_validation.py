"""TrainConfig refuses impossible options; a shrunk or empty hold-out is never silent."""

from __future__ import annotations

import logging

import pytest

from madspatial.train import TrainConfig, Trainer
from madspatial.train._trainer import holdout_size

from ..conftest import PICO_TRAIN
from .conftest import make_store, planted_views


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0.0}, r"lr must be a number > 0 .*got 0\.0 \(float\)"),
        ({"lr": -1e-3}, r"lr must be a number > 0"),
        ({"lr": float("nan")}, r"lr must be a number > 0 .*got nan"),
        ({"lr": "1e-3"}, r"lr must be a number > 0 .*got '1e-3' \(str\)"),
        ({"base_lr": 0}, r"base_lr must be a number > 0"),
        ({"batch_size": 0}, r"batch_size must be an int >= 2 .*got 0 \(int\)"),
        ({"batch_size": 1}, r"batch_size must be an int >= 2"),
        ({"batch_size": 16.0}, r"batch_size must be an int >= 2 .*got 16\.0 \(float\)"),
        ({"epochs": 0}, r"epochs must be an int >= 1"),
        ({"max_steps": 0}, r"max_steps must be an int >= 1"),
        ({"n_global": 0}, r"n_global must be an int >= 1"),
        ({"n_local": -1}, r"n_local must be an int >= 0"),
        ({"alpha": -0.1}, r"alpha must be a number >= 0"),
        ({"momentum": (0.9, 1.1)}, r"momentum must be a pair .* in \[0, 1\].*got \(0\.9, 1\.1\)"),
        ({"momentum": (-0.1, 1.0)}, r"momentum must be a pair"),
        ({"momentum": 0.99}, r"momentum must be a pair \(start, end\)"),
        ({"teacher_temp": (0.0, 0.07)}, r"teacher_temp must be a pair .* > 0"),
        ({"teacher_temp": (0.04, -1)}, r"teacher_temp must be a pair"),
        ({"student_temp": 0}, r"student_temp must be a number > 0"),
        ({"n_prototypes": 0}, r"n_prototypes must be an int >= 1"),
        ({"clip_grad": -1.0}, r"clip_grad must be a number >= 0"),
        ({"center_momentum": 1.0}, r"center_momentum must be a number in \[0, 1\)"),
        ({"weight_decay": (0.04, -0.4)}, r"weight_decay must be a pair .* >= 0"),
        ({"drop_path_rate": 1.0}, r"drop_path_rate must be a number in \[0, 1\)"),
        ({"koleo_weight": -0.1}, r"koleo_weight must be a number >= 0"),
        ({"head_layers": 0}, r"head_layers must be an int >= 1"),
        ({"head_hidden_dim": 0}, r"head_hidden_dim must be an int >= 1"),
        ({"warmup_steps": -1}, r"warmup_steps must be an int >= 0"),
        ({"checkpoint_every": 0}, r"checkpoint_every must be an int >= 1"),
        ({"eval_every": 0}, r"eval_every must be an int >= 1"),
        ({"n_holdout": -1}, r"n_holdout must be an int >= 0"),
        ({"num_workers": -1}, r"num_workers must be an int >= 0"),
        ({"local_morphology_size": 20}, r"local_morphology_size must be a positive int multiple"),
        ({"local_microenvironment_size": 0}, r"local_microenvironment_size must be a positive"),
        ({"strategy": "horovod"}, r"strategy must be one of \['auto', 'none', 'ddp', 'fsdp'\]"),
        ({"mode": "both"}, r"mode must be one of"),
        ({"augment": "strong"}, r"augment must be a dict"),
    ],
)
def test_impossible_options_are_refused(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        TrainConfig(**options)


def test_possible_edge_options_are_accepted():
    TrainConfig(clip_grad=0.0, alpha=0.0, n_local=0, n_holdout=0, momentum=(0.0, 1.0))
    TrainConfig(epochs=0, max_steps=5)  # max_steps decides the length
    TrainConfig(clip_grad=None, lr=None, warmup_steps=0)


def test_holdout_size_logs_when_lowered_or_empty(caplog):
    with caplog.at_level(logging.WARNING, logger="madspatial"):
        assert holdout_size(400, None, 64, 1) == 40
        assert not caplog.records
        assert holdout_size(40, 16, 32, 1) == 8
        assert "holding out 8 cells for Recall@K instead of 16 (n_holdout=16)" in caplog.text
        caplog.clear()
        assert holdout_size(32, None, 32, 1) == 0
        assert "no held-out cells, so no Recall@K will be computed" in caplog.text
        assert "batch_size=32" in caplog.text and "at most 16" in caplog.text
        caplog.clear()
        assert holdout_size(100, 0, 32, 1) == 0  # asked for none: nothing to say
        assert not caplog.records


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_training_with_no_room_for_a_holdout_says_so(caplog):
    store = make_store(*planted_views(32, seed=0)[:2])
    cfg = TrainConfig(**{**PICO_TRAIN, "batch_size": 32, "n_holdout": None})
    with caplog.at_level(logging.WARNING, logger="madspatial"):
        model = Trainer(store, cfg).fit()
    assert "no Recall@K will be computed" in caplog.text
    assert model.history["n_holdout"] == 0 and model.history["recall@5"] == []


def test_empty_store_is_refused_before_any_read():
    import numpy as np

    store = make_store(np.zeros((0, 2, 28, 28), np.uint8), np.zeros((0, 2, 56, 56), np.uint8))
    cfg = TrainConfig(backbone="vit_pico", batch_size=16, max_steps=1, precision="fp32")
    with pytest.raises(ValueError, match="the view store holds no cells"):
        Trainer(store, cfg).identity()


def test_cross_terms_is_checked():
    assert TrainConfig(cross_terms="to_microenvironment").cross_terms == "to_microenvironment"
    with pytest.raises(ValueError, match="cross_terms must be one of"):
        TrainConfig(cross_terms="morphology")
