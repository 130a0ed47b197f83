from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

import madspatial as mad
from madspatial.pl._training import load_histories


class _Model:
    def __init__(self, history):
        self.history = history


def test_training_curves_single_model(history):
    axes = mad.pl.training_curves(_Model(history), show=False)
    assert [a.get_title() for a in axes] == [
        "loss",
        "learning rate",
        "teacher temperature",
        "Recall@K (held out)",
    ]
    loss_ax = axes[0]
    lines = loss_ax.get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), history["loss"])
    # ln K reference line
    assert any(np.allclose(ln.get_ydata(), history["ln_k"]) for ln in lines[1:])
    rec = axes[3]
    curves = [ln for ln in rec.get_lines() if len(ln.get_xdata()) == 4]
    np.testing.assert_allclose(curves[0].get_xdata(), history["eval_step"])
    np.testing.assert_allclose(curves[0].get_ydata(), history["recall@1"])
    assert any(np.allclose(ln.get_ydata(), 5 / 64) for ln in rec.get_lines())  # chance


def test_training_curves_overlay_paths_and_missing_series(history, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "history.json").write_text(json.dumps(history))
    partial = {"step": [0, 1, 2], "loss": [5.0, 4.0, 3.0]}  # no lr, temperature or recall
    hists = load_histories({"mad": tmp_path / "m", "morph": partial})
    assert hists["mad"]["loss"] == history["loss"] and hists["morph"] == partial
    axes = mad.pl.training_curves(
        {"mad": str(tmp_path / "m"), "morph": partial}, smooth=5, show=False
    )
    assert len(axes) == 4  # panels with data from any model stay
    assert len(axes[0].get_lines()) >= 4  # raw + smoothed for both models, ln K for one
    fig = mad.pl.training_curves(partial, return_fig=True)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 1
    ax = mad.pl.training_curves(history, panels=["entropy"], show=False)
    assert ax.get_title() == "teacher entropy"


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no training history"):
        mad.pl.training_curves(_Model(None), show=False)
    with pytest.raises(FileNotFoundError, match=r"history\.json"):
        mad.pl.training_curves(tmp_path, show=False)
    with pytest.raises(ValueError, match="unknown panels"):
        mad.pl.training_curves({"loss": [1.0]}, panels=["accuracy"], show=False)
    with pytest.raises(ValueError, match="none of the series"):
        mad.pl.training_curves({"step": [0, 1]}, show=False)
    with pytest.raises(TypeError, match="cannot read"):
        mad.pl.training_curves(3.0, show=False)


def test_training_curves_reads_the_trainers_history():
    hist_mod = pytest.importorskip("madspatial.train._history")
    h = hist_mod.History(n_prototypes=64, n_holdout=32, recall_views="morphology->microenvironment")
    for step in range(8):
        h.log_step(
            step=step,
            epoch=0,
            loss=4.0 - 0.1 * step,
            lr=1e-4,
            weight_decay=0.04,
            momentum=0.99,
            teacher_temp=0.04,
            teacher_entropy=3.0,
            teacher_batch_entropy=4.0,
            cells_per_s=100.0,
        )
    h.log_eval(0, {1: 0.1, 5: 0.3, 10: 0.5})
    h.log_eval(7, {1: 0.2, 5: 0.5, 10: 0.7})
    for obj in (h, h.to_dict(), _Model(h.to_dict())):
        axes = mad.pl.training_curves(obj, show=False)
        assert len(axes) == 4
        assert any(np.allclose(ln.get_ydata(), np.log(64)) for ln in axes[0].get_lines())
        recall_lines = [ln for ln in axes[3].get_lines() if ln.get_marker() == "o"]
        assert len(recall_lines) == 3  # Recall@1, @5, @10
        plt.close("all")
