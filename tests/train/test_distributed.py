"""``torchrun --nproc_per_node=2 -m madspatial pretrain`` with DDP and FSDP2 on CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory, planted):
    from madspatial.io import ViewStore

    morph, micro, _ = planted
    n = len(morph)
    store = ViewStore(
        morph,
        micro,
        np.arange(1, n + 1),
        np.zeros((n, 2)),
        np.full(n, 100.0),
        {"channel_names": ["c0", "c1"]},
    )
    path = tmp_path_factory.mktemp("dist") / "views.zarr"
    store.save(path, chunk_size=16)
    return path


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_torchrun_two_processes(zarr_store, tmp_path, strategy):
    from madspatial.nn import MADModel
    from madspatial.train import load_checkpoint

    out = tmp_path / "model"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "madspatial",
        "pretrain",
        str(zarr_store),
        "--out",
        str(out),
        "--strategy",
        strategy,
        *(
            "--model vit_pico --max-steps 4 --batch-size 16 --lr 1e-3 --n-prototypes 64 "
            "--head-hidden-dim 32 --head-bottleneck-dim 16 --n-local 1 --checkpoint-every 2 "
            "--option n_holdout=16 --option freeze_last_layer_steps=1"
        ).split(),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MADSPATIAL_NO_PROGRESS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    history = json.loads((out / "history.json").read_text())
    loss = np.asarray(history["loss"])
    assert len(loss) == 4 and np.isfinite(loss).all()
    assert loss[-1] < loss[0], loss
    # the checkpoint and the model load in this single process
    model = MADModel.load(out)
    state = load_checkpoint(out)
    assert state["step"] == 4 and state["run"]["world_size"] == 2
    teacher = {k.removeprefix("model."): v for k, v in state["teacher"].items()}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(teacher[k], v, msg=k)
    x = torch.randint(0, 255, (3, 2, 28, 28), dtype=torch.uint8)
    assert model.embed(x, None)["morphology"].shape == (3, 48)
