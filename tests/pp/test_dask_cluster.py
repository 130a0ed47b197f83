"""normalize and cell_views(store=path) spread their tiles over a dask.distributed cluster."""

from __future__ import annotations

import numpy as np
import pytest

import madspatial as mad

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

KW = {"image_key": "morphology_normalized", "labels_key": "cell_labels",
      "morphology_size": 28, "microenvironment_size": 56, "chunk_size": 16,
      "cells_per_tile": 32}  # fmt: skip


def test_two_process_cluster_gives_the_single_process_store(tmp_path):
    import dask

    sdata = mad.datasets.synthetic_slide(
        tmp_path / "slide.zarr", n_cells=200, tile_px=256, chunk_px=128, expression=False
    )
    mad.pp.normalize(sdata, image_key="morphology", n_jobs=1)
    ref_norm = mad.pp.normalization_params(sdata, image_key="morphology_normalized")
    ref = mad.pp.cell_views(sdata, **KW, store=tmp_path / "one.zarr", n_jobs=1, inplace=False)

    with (
        dask.config.set({"distributed.worker.daemon": False}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with distributed.get_task_stream(client) as ts:
            mad.pp.normalize(sdata, image_key="morphology", key_added="again")
            store = mad.pp.cell_views(
                sdata, **{**KW, "image_key": "again"}, store=tmp_path / "two.zarr", inplace=False
            )
        workers = {t["worker"] for t in ts.data}
        scans = sum("_scan_block" in t["key"] for t in ts.data)
        tiles = sum("_run_task" in t["key"] for t in ts.data)
    assert len(workers) == 2  # both processes ran tiles
    assert scans >= 1  # the scan blocks of normalize ran on the cluster
    assert tiles == -(-len(ref) // 32)  # every tile a task on the cluster
    again = mad.pp.normalization_params(sdata, image_key="again")
    assert again["lo"] == ref_norm["lo"] and again["hi"] == ref_norm["hi"]
    np.testing.assert_array_equal(store.storage_order, ref.storage_order)
    np.testing.assert_array_equal(store.morphology[:], ref.morphology[:])
    np.testing.assert_array_equal(store.microenvironment[:], ref.microenvironment[:])
