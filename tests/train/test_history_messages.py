"""The weak-signal message labels chance as chance; the progress bar shows slow rates."""

from __future__ import annotations

import itertools

import pytest

from madspatial.train import TrainConfig, Trainer
from madspatial.train._history import History, format_rate

from ..conftest import PICO_TRAIN
from .conftest import make_store, planted_views


def test_weak_signal_message_prints_chance_and_twice_chance():
    h = History(64, 49, "morphology<->microenvironment")
    h.log_step(
        step=0,
        epoch=0,
        loss=2.0,
        lr=0.0,
        weight_decay=0.04,
        momentum=0.99,
        teacher_temp=0.04,
        teacher_entropy=2.0,
        teacher_batch_entropy=4.0,
        cells_per_s=10.0,
    )
    h.log_eval(1, {1: 0.02, 5: 0.051, 10: 0.2})
    (msg,) = h.check_collapse()
    assert msg == (
        "weak signal: held-out Recall@5 0.051 is at most twice chance (chance 5/49 held-out "
        "cells = 0.102, twice chance 0.204); train longer or check the views"
    )


@pytest.mark.parametrize(
    ("rate", "shown"),
    [(0.4213, "0.42"), (0.0071, "0.0071"), (3.14159, "3.1"), (42.4, "42"), (1234.5, "1234")],
)
def test_format_rate(rate, shown):
    assert format_rate(rate) == shown


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_progress_bar_shows_rates_below_one_cell_per_second(monkeypatch):
    import madspatial.train._trainer as T

    posts: list[dict] = []

    class Bar:
        def update(self, n):
            pass

        def set_postfix(self, **kw):
            posts.append(kw)

        def close(self):
            pass

    clock = itertools.count(0.0, 50.0)  # every reading 50 s later: 16 cells / 50 s

    class Clock:
        @staticmethod
        def perf_counter():
            return next(clock)

    monkeypatch.setattr(T, "progress", lambda **kw: Bar())
    monkeypatch.setattr(T, "time", Clock)
    store = make_store(*planted_views(48, seed=0)[:2])
    cfg = TrainConfig(**{**PICO_TRAIN, "max_steps": 2})
    Trainer(store, cfg).fit()
    assert [p["cells_s"] for p in posts] == ["0.32", "0.32"]
