"""Saved models: checksums, damaged / truncated / foreign files, permissions under a umask."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings

import numpy as np
import pytest
import torch

from madspatial.nn import MADConfig, MADModel
from madspatial.nn._model import INTEGRITY_KEY, ModelFileError

from ..conftest import PICO_MODEL


def _model(seed: int = 0) -> MADModel:
    torch.manual_seed(seed)
    cfg = MADConfig(**PICO_MODEL, in_chans=2)
    return MADModel(cfg)


@pytest.fixture
def saved(tmp_path):
    model = _model()
    model.history = {"loss": [1.0, 0.5]}
    model.save(tmp_path / "m")
    return model, tmp_path / "m"


def _flip(path, offset_from_end: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_save_records_checksums(saved):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert cfg[INTEGRITY_KEY]["weights_sha256"] == sha
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata()["config_sha256"] == cfg[INTEGRITY_KEY]["config_sha256"]


def test_flipped_weight_bytes_are_detected(saved):
    from safetensors.torch import load_file

    model, folder = saved
    w = folder / "model.safetensors"
    _flip(w)
    # what happened before: the file still parses, with a silently different weight
    sd = load_file(str(w))
    assert any(not torch.equal(sd[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ModelFileError, match=r"model\.safetensors: its sha256 .* differs") as e:
        MADModel.load(folder)
    assert str(w) in str(e.value) and "re-train" in str(e.value) and "download" in str(e.value)


def test_truncated_weights(saved):
    _, folder = saved
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match=r"model\.safetensors: its sha256"):
        MADModel.load(folder)
    # a model saved before checksums: the parse error still names the file
    cfg = json.loads((folder / "config.json").read_text())
    del cfg[INTEGRITY_KEY]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=r"model\.safetensors: it cannot be read") as e:
        MADModel.load(folder)
    assert str(w) in str(e.value)


def test_damaged_config(saved):
    _, folder = saved
    c = folder / "config.json"
    text = c.read_text()
    c.write_text(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match=r"config\.json: it is not valid JSON") as e:
        MADModel.load(folder)
    assert str(c) in str(e.value) and "Re-save" in str(e.value)
    c.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        MADModel.load(folder)
    c.write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="holds a JSON list"):
        MADModel.load(folder)


def test_config_fields_are_tied_to_the_weights(saved):
    _, folder = saved
    c = folder / "config.json"
    cfg = json.loads(c.read_text())
    cfg["pixel_mean"] = [0.1, 0.1]
    c.write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=r"pixel_mean.* changed after the model was saved"):
        MADModel.load(folder)


def test_weights_of_another_save_are_detected(saved, tmp_path):
    _, folder = saved
    other = _model(seed=1)
    other.config.pixel_std = [0.3, 0.3]
    other.save(tmp_path / "o")
    # a consistent config.json but the weights (and their metadata) of another model
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "model.safetensors").write_bytes((tmp_path / "o" / "model.safetensors").read_bytes())
    sha = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    cfg[INTEGRITY_KEY]["weights_sha256"] = sha
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFileError, match=r"saved with another config\.json"):
        MADModel.load(folder)


def test_damaged_history_warns_and_weights_load(saved):
    model, folder = saved
    (folder / "history.json").write_text('{"loss": [1.0, ')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = MADModel.load(folder)
    (w,) = [c for c in caught if "history.json" in str(c.message)]
    assert "is damaged" in str(w.message) and "weights are intact" in str(w.message)
    assert w.filename == __file__  # points at the user's call
    assert loaded.history is None
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_not_a_mad_model_folder(tmp_path, decoder_folder):
    with pytest.raises(ValueError, match=r"is not a MAD model folder.*decoder") as e:
        MADModel.load(decoder_folder)
    assert "format_version=None" not in str(e.value) and "unknown" not in str(e.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"hidden_size": 3}))
    with pytest.raises(ValueError, match=r"is not a MAD model folder.*\['hidden_size'\]"):
        MADModel.load(tmp_path / "other")


def test_files_respect_the_umask(tmp_path):
    from madspatial.train._checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        m = _model()
        m.history = {"loss": [1.0]}
        m.save(tmp_path / "m")
        save_checkpoint({"step": 1, "w": torch.zeros(2)}, tmp_path / "m")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").iterdir()}
        os.umask(0o077)
        save_checkpoint({"step": 2}, tmp_path / "private")
        private = stat.S_IMODE((tmp_path / "private" / "checkpoint.pt").stat().st_mode)
    finally:
        os.umask(old)
    assert modes == {
        "config.json": 0o644,
        "model.safetensors": 0o644,
        "history.json": 0o644,
        "checkpoint.pt": 0o644,
    }
    assert private == 0o600


def test_flipped_and_truncated_checkpoint(tmp_path):
    from madspatial.train._checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

    w = torch.arange(50_000, dtype=torch.float32)
    save_checkpoint({"step": 3, "w": w}, tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    i = data.find(np.float32(25_000).tobytes())  # inside the tensor's bytes
    data[i + 2] ^= 0x40
    path.write_bytes(bytes(data))
    # torch itself reads the damaged file without complaint
    raw = torch.load(path, weights_only=True)
    assert not torch.equal(raw["w"], w)
    with pytest.raises(RuntimeError, match="is damaged: its contents no longer match the sha256"):
        load_checkpoint(tmp_path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(RuntimeError, match=r"truncated or damaged.*resume=False") as e:
        load_checkpoint(tmp_path)
    assert str(path) in str(e.value)
