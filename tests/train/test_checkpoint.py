from __future__ import annotations

import pytest
import torch

from madspatial.train._checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    save_checkpoint,
)


def test_save_load_round_trip_weights_only(tmp_path):
    state = {"step": 3, "w": torch.arange(4.0), "nested": {"h": [1.0, 2.0], "s": "x"}}
    save_checkpoint(state, tmp_path)
    out = load_checkpoint(tmp_path)
    assert out["step"] == 3 and out["nested"] == {"h": [1.0, 2.0], "s": "x"}
    torch.testing.assert_close(out["w"], torch.arange(4.0))
    # readable without pickle
    torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert load_checkpoint(tmp_path / "none") is None


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint({"step": 1}, tmp_path)

    def crash(obj, fh):
        fh.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, tmp_path)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temp files left


def test_corrupt_checkpoint_error_says_what_to_do(tmp_path):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="resume=False"):
        load_checkpoint(tmp_path)


def test_identity_mismatch_lists_fields():
    from madspatial.train._identity import IDENTITY_VERSION, identity_mismatch

    a = {"identity_version": IDENTITY_VERSION, "config": {"mode": "mad", "seed": 0}}
    b = {"identity_version": IDENTITY_VERSION, "config": {"mode": "morphology", "seed": 0}}
    assert identity_mismatch(a, b) == ["config.mode: checkpoint 'mad' vs now 'morphology'"]
    a["data"], b["data"] = {"pixels": "ab"}, {"pixels": "cd"}
    assert identity_mismatch(a, b)[0] == (
        "config.mode: checkpoint 'mad' vs now 'morphology'"
    ) and identity_mismatch(a, b)[1].startswith("data.pixels (data fingerprint): checkpoint 'ab'")
