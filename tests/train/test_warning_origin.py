"""Warnings raised deep inside training and embedding point at the user's line."""

from __future__ import annotations

import warnings

import madspatial as mad
from madspatial.nn import MADConfig, MADModel
from madspatial.train import TrainConfig, Trainer

from ..conftest import PICO_MODEL, PICO_TRAIN
from .conftest import make_store, planted_views

TINY = PICO_TRAIN


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return caught


def test_training_warnings_point_at_the_caller(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pretrain's default folder goes under the working directory
    store = make_store(*planted_views(48, seed=0)[:2])
    caught = _caught(lambda: Trainer(store, TrainConfig(**TINY)).fit())
    ours = [w for w in caught if "MAD pretraining" in str(w.message)]
    assert ours and all(w.filename == __file__ for w in ours)
    opts = {**TINY, "model": TINY["backbone"]}
    opts.pop("backbone")
    caught = _caught(lambda: mad.tl.pretrain(store, **opts))
    ours = [w for w in caught if "MAD pretraining" in str(w.message)]
    assert ours and all(w.filename == __file__ for w in ours)


def test_channel_name_and_size_warnings_point_at_the_caller():
    store = make_store(*planted_views(48, seed=0)[:2], channel_names=["x", "y"])
    init = MADModel(MADConfig(**PICO_MODEL, in_chans=2))
    caught = _caught(lambda: Trainer(store, TrainConfig(**TINY), model=init).fit())
    (w,) = [w for w in caught if "channel names differ" in str(w.message)]
    assert w.filename == __file__
    big = MADModel(MADConfig(**{**PICO_MODEL, "in_chans": 2, "morphology_size": 42}))
    caught = _caught(lambda: mad.tl.embed(store, model=big))
    (w,) = [w for w in caught if "views are 28px" in str(w.message)]
    assert w.filename == __file__
