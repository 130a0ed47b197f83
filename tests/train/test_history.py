from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from madspatial.train._history import History, cross_view_recall, teacher_entropies


def test_recall_hand_computed():
    a = torch.eye(4)
    assert cross_view_recall(a, a, ks=(1,)) == {1: 1.0}
    # b swaps the partners of rows 0 and 1: those two miss at K=1, hit at K=2
    b = a[[1, 0, 2, 3]]
    r = cross_view_recall(a, b, ks=(1, 2, 4))
    assert r[1] == pytest.approx(0.5)
    assert r[2] == pytest.approx(0.5)  # true partner ties with 2 others at similarity 0
    assert r[4] == pytest.approx(1.0)
    # cosine, not dot product: scaling a row changes nothing
    assert cross_view_recall(a * 7, a, ks=(1,)) == {1: 1.0}


def test_teacher_entropies_uniform_and_peaked():
    k = 16
    center = torch.zeros(1, k)
    flat = [torch.zeros(8, k)]
    per_cell, batch = teacher_entropies(flat, center, 0.04)
    assert per_cell == pytest.approx(math.log(k), abs=1e-5)
    assert batch == pytest.approx(math.log(k), abs=1e-5)
    # every cell sharply on its own prototype: low per-cell, high batch entropy
    peaked = [torch.eye(k)[:8] * 10]
    per_cell, batch = teacher_entropies(peaked, center, 0.04)
    assert per_cell < 1e-3 and batch == pytest.approx(math.log(8), abs=1e-3)
    # the center is subtracted before the softmax: logits equal to it are uniform
    per_cell, _ = teacher_entropies([torch.eye(k)[:1] * 10], torch.eye(k)[:1] * 10, 0.04)
    assert per_cell == pytest.approx(math.log(k), abs=1e-5)


def _history(ent, batch_ent, r5=None, k=64, n_holdout=32):
    h = History(k, n_holdout, "test")
    for i, (e, b) in enumerate(zip(ent, batch_ent)):
        h.log_step(
            step=i,
            epoch=0,
            loss=4.0,
            lr=1e-3,
            weight_decay=0.04,
            momentum=0.99,
            teacher_temp=0.04,
            teacher_entropy=e,
            teacher_batch_entropy=b,
            cells_per_s=1.0,
        )
    if r5 is not None:
        h.log_eval(len(ent), {1: r5 / 2, 5: r5, 10: min(1, 2 * r5)})
    return h


def test_collapse_flags():
    ln_k = math.log(64)
    uniform = _history([ln_k * 0.99] * 12, [ln_k] * 12, r5=0.9)
    msgs = uniform.check_collapse()
    assert uniform.data["collapsed"] and "uniform" in uniform.data["collapse_reason"]
    assert len(msgs) == 1

    onehot = _history([0.01] * 12, [0.05] * 12, r5=0.9)
    onehot.check_collapse()
    assert onehot.data["collapsed"] and "one-hot" in onehot.data["collapse_reason"]

    healthy = _history([2.0] * 12, [4.0] * 12, r5=0.9)
    assert healthy.check_collapse() == []
    assert not healthy.data["collapsed"] and not healthy.data["weak_signal"]

    weak = _history([2.0] * 12, [4.0] * 12, r5=0.2)  # chance 5/32 = 0.156
    msgs = weak.check_collapse()
    assert weak.data["weak_signal"] and not weak.data["collapsed"] and "Recall@5" in msgs[0]


def test_history_round_trip_json():
    import json

    h = _history([2.0, 2.5], [4.0, 4.0], r5=0.5)
    d = json.loads(json.dumps(h.to_dict()))
    h2 = History.from_dict(d)
    assert h2.to_dict() == h.to_dict()
    np.testing.assert_allclose(h2.losses(), [4.0, 4.0])
    assert d["recall_chance"]["recall@5"] == pytest.approx(5 / 32)
