"""``tl.embed`` on views cut on the fly under ``torchrun --nproc_per_node 2`` (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import madspatial as mad
from madspatial._constants import OBSM_MAD

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning"),
]

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import spatialdata
    import torch.distributed as dist
    import madspatial as mad

    dist.init_process_group("gloo")
    sdata = spatialdata.read_zarr(sys.argv[1])  # the record says "on_the_fly": rebuilt here
    mad.tl.embed(sdata, model=sys.argv[2], batch_size=32, precision="fp32")
    if dist.get_rank() == 0:
        np.save(sys.argv[3], sdata.tables["table"].obsm["X_mad"])
    dist.destroy_process_group()
    """
)


def test_embed_on_the_fly_under_torchrun_equals_one_process(tmp_path):
    from .test_on_the_fly_embed import pico_model

    sdata = mad.datasets.synthetic_slide(
        tmp_path / "slide.zarr", n_cells=200, tile_px=256, chunk_px=128, expression=False
    )
    mad.pp.normalize(sdata, image_key="morphology")
    mad.pp.cell_views(
        sdata,
        image_key="morphology_normalized",
        labels_key="cell_labels",
        morphology_size=28,
        microenvironment_size=56,
        store="on_the_fly",
    )
    sdata.write(tmp_path / "w.zarr")
    model = pico_model()
    model.save(tmp_path / "model")
    ref = mad.tl.embed(
        sdata, model=tmp_path / "model", batch_size=32, precision="fp32", copy=True
    ).obsm[OBSM_MAD]
    script = tmp_path / "embed.py"
    script.write_text(SCRIPT)
    out = tmp_path / "x.npy"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path / "w.zarr"),
        str(tmp_path / "model"),
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MADSPATIAL_NO_PROGRESS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = np.load(out)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
