"""The run identity: every option and a data fingerprint decide whether a checkpoint is resumed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import madspatial as mad
from madspatial.train import TrainConfig, Trainer
from madspatial.train._identity import (
    IDENTITY_VERSION,
    NOT_IDENTITY,
    RunMismatchError,
    config_identity,
    identity_mismatch,
)

from ..conftest import TINY_TRAIN
from .conftest import make_store, planted_views

TINY = {
    **TINY_TRAIN,
    "backbone": "vit_pico",
    "n_prototypes": 32,
    "head_hidden_dim": 16,
    "precision": "fp32",
    "max_steps": 1,
}

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 1-step runs: weak signal


def _trainer(store, ckpt=None, **kw):
    opts = {**TINY, **kw}
    if ckpt is not None:
        opts["checkpoint_dir"] = str(ckpt)
    return Trainer(store, TrainConfig(**opts))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 1-step run in a folder, on the planted store."""
    morph, micro, _ = planted_views(160, seed=0)
    store = make_store(morph, micro)
    folder = tmp_path_factory.mktemp("run")
    _trainer(store, folder).fit()
    return store, folder


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    from safetensors.torch import save_file

    from madspatial.nn import build_backbone

    torch.manual_seed(5)
    bb = build_backbone("vit_pico", in_chans=2)
    path = tmp_path_factory.mktemp("w") / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in bb.state_dict().items()}, str(path))
    return path


def test_identity_covers_every_config_field_automatically():
    cfg = TrainConfig(**TINY)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(config_identity(cfg)) == names - NOT_IDENTITY
    # a field added later is part of the identity without editing any list

    @dataclasses.dataclass
    class Extended(TrainConfig):
        new_option: float = 0.5

    assert config_identity(Extended(**TINY))["new_option"] == 0.5


def test_same_options_same_identity_and_resume(finished):
    store, folder = finished
    again = _trainer(store, folder)
    model = again.fit()  # the finished run is returned, not trained again
    assert len(model.history["loss"]) == 1
    assert again.identity_digest() == _trainer(store).identity_digest()


def test_same_cell_count_other_data_is_another_run(finished):
    store, folder = finished
    morph, micro, _ = planted_views(160, seed=1)
    other = make_store(morph, micro)  # same cells count, ids, channels, sizes
    assert _trainer(other).identity_digest() != _trainer(store).identity_digest()
    with pytest.raises(RunMismatchError, match=r"data\.pixels \(data fingerprint\)") as err:
        _trainer(other, folder).fit()
    assert "resume=False" in str(err.value) and "new checkpoint_dir" in str(err.value)
    # other cell ids, same pixels
    relabelled = make_store(*planted_views(160, seed=0)[:2])
    relabelled.instance_id = relabelled.instance_id + 1000
    with pytest.raises(RunMismatchError, match=r"data\.cell_ids"):
        _trainer(relabelled, folder).fit()
    # other channel names
    renamed = make_store(*planted_views(160, seed=0)[:2], channel_names=["a", "b"])
    with pytest.raises(RunMismatchError, match=r"data\.channel_names"):
        _trainer(renamed, folder).fit()


@pytest.mark.parametrize(
    "change",
    [
        {"augment": {"jitter": 0.1}},
        {"drop_path_rate": 0.1},
        {"precision": "bf16"},
        {"clip_grad": 1.0},
        {"center_momentum": 0.8},
        {"local_morphology_size": 14},
        {"local_microenvironment_size": 42},
        {"teacher_temp": (0.04, 0.06)},
        {"weights": "FILE"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_changed_option_is_never_resumed(finished, weights_file, change):
    store, folder = finished
    change = {k: (str(weights_file) if v == "FILE" else v) for k, v in change.items()}
    (name,) = change
    # a new default folder ...
    assert _trainer(store, **change).identity_digest() != _trainer(store).identity_digest()
    # ... and an explicit folder of the other run is refused, naming the field
    with pytest.raises(RunMismatchError, match=rf"config\.{name}: checkpoint"):
        _trainer(store, folder, **change).fit()


def test_weights_file_contents_count(finished, weights_file, tmp_path):
    store, _ = finished
    copy = tmp_path / "backbone.safetensors"
    copy.write_bytes(weights_file.read_bytes())
    a = _trainer(store, weights=str(copy)).identity()
    from safetensors.torch import load_file, save_file

    sd = load_file(str(copy))
    first = next(iter(sd))
    sd[first] = sd[first] + 1
    save_file(sd, str(copy))
    b = _trainer(store, weights=str(copy)).identity()
    assert [d.split(":")[0] for d in identity_mismatch(a, b)] == ["weights_file"]


def test_cells_selection_is_part_of_the_identity(finished):
    store, folder = finished
    mask = np.arange(len(store)) % 2 == 0
    t = Trainer(store, TrainConfig(**TINY, checkpoint_dir=str(folder)), cells=mask)
    assert t.identity()["data"]["cells"] is not None
    with pytest.raises(RunMismatchError, match=r"data\.cells"):
        t.fit()


def test_model_folder_of_another_run_is_never_returned(finished, tmp_path):
    store, _ = finished
    target = tmp_path / "m"
    model = _trainer(store, target).fit()
    (target / "checkpoint.pt").unlink()  # only the finished model is left
    with pytest.raises(RunMismatchError, match=r"config\.clip_grad"):
        _trainer(store, target, clip_grad=1.0).fit()
    # a folder with a model saved by hand (no training identity)
    hand = tmp_path / "hand"
    model.save(hand)
    cfg = json.loads((hand / "config.json").read_text())
    del cfg["metadata"]["training"]
    (hand / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunMismatchError, match="without a recorded training identity"):
        _trainer(store, hand).fit()
    # resume=False: the user asked to start over in that folder
    _trainer(store, hand, resume=False).fit()


def test_checkpoint_of_an_older_identity_layout(finished, tmp_path):
    from madspatial.train._checkpoint import load_checkpoint, save_checkpoint

    store, folder = finished
    state = load_checkpoint(folder)
    state["run"] = {"mode": "mad", "n_cells": 160}  # what madspatial <= 0.x recorded
    state.pop("format")
    save_checkpoint(state, tmp_path)
    with pytest.raises(
        RunMismatchError, match=f"identity_version: checkpoint None vs now {IDENTITY_VERSION}"
    ):
        _trainer(store, tmp_path).fit()


def test_pretrain_default_folder_differs_for_other_data_of_same_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opts = dict(TINY, model=TINY["backbone"])
    opts.pop("backbone")
    a = make_store(*planted_views(64, seed=0)[:2])
    b = make_store(*planted_views(64, seed=3)[:2])
    ma = mad.tl.pretrain(a, **opts)
    mb = mad.tl.pretrain(b, **opts)
    folders = sorted(p.name for p in (tmp_path / "mad_models").iterdir())
    assert len(folders) == 2
    assert ma.history["loss"] != mb.history["loss"]
