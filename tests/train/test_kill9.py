"""A real ``kill -9`` during ``mad.tl.pretrain``, then a re-run: bit-identical to no kill.

The killed run is a subprocess that signals (a marker file) when it reaches the kill point
and then waits; the test sends SIGKILL, so nothing in the process gets to clean up. Two
kill points: right after a checkpoint was written, and half-way through writing the next
one (the temporary file is left behind, the previous checkpoint must be used).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import madspatial as mad

from ..conftest import TINY_TRAIN
from .conftest import make_store, planted_views

OPTS = {
    **TINY_TRAIN,
    "model": "vit_pico",
    "n_prototypes": 32,
    "head_hidden_dim": 16,
    "precision": "fp32",
    "max_steps": 6,
    "checkpoint_every": 2,
    "freeze_last_layer_steps": 3,
    "seed": 3,
}

_SCRIPT = r"""
import io, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import madspatial as mad
import madspatial.train._checkpoint as C

store, out, marker, where, opts = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4], eval(sys.argv[5])

def hang():
    marker.write_text("here")
    while True:
        time.sleep(1)

real_save = C.save_checkpoint
def after_save(state, directory):
    path = real_save(state, directory)
    if where == "after" and state["step"] == 4:
        hang()
    return path
C.save_checkpoint = after_save

real_torch_save = torch.save
def half_save(obj, fh, *a, **k):
    if where == "during" and isinstance(obj, dict) and obj.get("step") == 4:
        buf = io.BytesIO()
        real_torch_save(obj, buf)
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        fh.flush()
        hang()
    return real_torch_save(obj, fh, *a, **k)
torch.save = half_save

mad.tl.pretrain(store, checkpoint_dir=out, **opts)
"""


@pytest.fixture(scope="module")
def zarr_views(tmp_path_factory):
    morph, micro, _ = planted_views(96, seed=4)
    return make_store(morph, micro).save(tmp_path_factory.mktemp("v") / "views.zarr", chunk_size=16)


@pytest.fixture(scope="module")
def full_run(zarr_views, tmp_path_factory):
    """The uninterrupted run."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.warns(RuntimeWarning):  # 6 steps: weak signal
            return mad.tl.pretrain(
                str(zarr_views.path), checkpoint_dir=tmp_path_factory.mktemp("full"), **OPTS
            )
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _kill_at(store_path: str, out: Path, where: str, tmp: Path) -> None:
    marker = tmp / f"marker_{where}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, store_path, str(out), str(marker), where, repr(OPTS)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill point: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError("the run never reached the kill point")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("where", ["after", "during"])
def test_kill9_then_rerun_is_bit_identical(zarr_views, full_run, tmp_path, where):
    from madspatial.train import load_checkpoint

    store_path = str(zarr_views.path)
    killed = tmp_path / "killed"
    _kill_at(store_path, killed, where, tmp_path)
    assert load_checkpoint(killed)["step"] == (4 if where == "after" else 2)
    if where == "during":
        assert any(p.name.endswith(".tmp") for p in killed.iterdir())  # the half-written file
    assert not (killed / "model.safetensors").exists()

    resumed = mad.tl.pretrain(store_path, checkpoint_dir=killed, **OPTS)
    full = full_run
    assert resumed.history["step"] == list(range(6))
    assert resumed.history["loss"] == full.history["loss"]
    assert resumed.history["recall@5"] == full.history["recall@5"]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    loaded = mad.nn.MADModel.load(killed)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k
    np.testing.assert_array_equal(loaded.config.pixel_mean, full.config.pixel_mean)
