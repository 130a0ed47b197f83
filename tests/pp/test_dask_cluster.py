"""normalize and cell_views(store=path) spread their tiles over a dask.distributed cluster.

One 2-process ``LocalCluster`` serves the module. Its worker processes are forked
(``multiprocessing-method: fork``): they start with this process's modules already
imported, instead of spending ~10 s importing madspatial each, and are still separate
processes that get every task pickled over TCP and read the zarr slide themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

import madspatial as mad

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TILE = 16
KW = {
    "image_key": "morphology_normalized",
    "labels_key": "cell_labels",
    "morphology_size": 28,
    "microenvironment_size": 56,
    "chunk_size": 16,
    "cells_per_tile": TILE,
}


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A small zarr slide, normalized and cut by one process: the reference."""
    root = tmp_path_factory.mktemp("dask_cluster")
    sdata = mad.datasets.synthetic_slide(
        root / "slide.zarr", n_cells=80, tile_px=256, chunk_px=128, expression=False
    )
    mad.pp.normalize(sdata, image_key="morphology", n_jobs=1)
    ref = mad.pp.cell_views(sdata, **KW, store=root / "one.zarr", n_jobs=1, inplace=False)
    return sdata, ref, root


@pytest.fixture(scope="module")
def client():
    import dask

    with (
        dask.config.set(
            {
                "distributed.worker.daemon": False,
                "distributed.worker.multiprocessing-method": "fork",
            }
        ),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_normalize_scans_on_the_cluster_with_the_single_process_result(slide, client):
    sdata, _, _ = slide
    ref = mad.pp.normalization_params(sdata, image_key="morphology_normalized")
    with distributed.get_task_stream(client) as ts:
        mad.pp.normalize(sdata, image_key="morphology", key_added="again")
    assert sum("_scan_block" in t["key"] for t in ts.data) >= 1  # the scan ran on the cluster
    again = mad.pp.normalization_params(sdata, image_key="again")
    assert again["lo"] == ref["lo"] and again["hi"] == ref["hi"]
    np.testing.assert_array_equal(
        np.asarray(sdata.images["again"].data), np.asarray(sdata.images[KW["image_key"]].data)
    )


def test_two_process_cluster_gives_the_single_process_store(slide, client):
    sdata, ref, root = slide
    assert len(client.scheduler_info()["workers"]) == 2
    with distributed.get_task_stream(client) as ts:
        store = mad.pp.cell_views(sdata, **KW, store=root / "two.zarr", inplace=False)
    tiles = [t for t in ts.data if "_run_task" in t["key"]]
    assert len({t["worker"] for t in tiles}) == 2  # both processes cut tiles
    assert len(tiles) == -(-len(ref) // TILE)  # every tile a task on the cluster
    np.testing.assert_array_equal(store.storage_order, ref.storage_order)
    np.testing.assert_array_equal(store.morphology[:], ref.morphology[:])
    np.testing.assert_array_equal(store.microenvironment[:], ref.microenvironment[:])
