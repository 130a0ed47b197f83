"""View stores are never stale, never half-created, never written by two processes (issue 10)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from spatialdata.models import Image2DModel, Labels2DModel

import madspatial as mad
from madspatial.io._lock import StoreLock, StoreLockedError, lock_path
from madspatial.io._views import open_zarr_views

from .conftest import disk_tissue

KW = dict(image_key="morphology", labels_key="cell_labels", chunk_size=16, cells_per_tile=32)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def caplog_mad(caplog):
    log = logging.getLogger("madspatial")
    log.propagate = True
    with caplog.at_level(logging.INFO, logger="madspatial"):
        yield caplog
    log.propagate = False


def _tissue():
    return disk_tissue(shape=(140, 140), shuffle_table=False)


def _same(a, b):
    np.testing.assert_array_equal(a.morphology[:], b.morphology[:])
    np.testing.assert_array_equal(a.microenvironment[:], b.microenvironment[:])


def test_changed_image_pixels_are_never_reused(tmp_path, caplog_mad):
    """Before: 'reusing the complete view store' (INFO) with the old image's views."""
    sdata, truth = _tissue()
    path = tmp_path / "v.zarr"
    mad.pp.cell_views(sdata, **KW, store=path, inplace=False)
    caplog_mad.clear()
    again = mad.pp.cell_views(sdata, **KW, store=path, inplace=False).subset(slice(None))
    rec = [r for r in caplog_mad.records if "reusing the complete view store" in r.message]
    assert len(rec) == 1 and rec[0].levelno == logging.WARNING and str(path) in rec[0].message
    img = truth["image"].copy()
    img[0] = np.clip(img[0] * 0.5, 0, 1)  # another image of the same shape and cells
    sdata.images["morphology"] = Image2DModel.parse(
        img, dims=("c", "y", "x"), c_coords=["value", "ramp"]
    )
    with pytest.raises(
        FileExistsError,
        match=r"view store at .*v\.zarr was made from different image pixels, so its views "
        r"may be stale and it is not reused\. Pass overwrite=True",
    ):
        mad.pp.cell_views(sdata, **KW, store=path)
    _same(open_zarr_views(path), again)  # nothing was touched
    fresh = mad.pp.cell_views(sdata, **KW, store=path, overwrite=True, inplace=False)
    _same(fresh, mad.pp.cell_views(sdata, **KW, inplace=False))
    assert not np.array_equal(fresh.morphology[:], again.morphology)


def test_changed_labels_are_never_reused(tmp_path):
    sdata, truth = _tissue()
    path = tmp_path / "v.zarr"
    mad.pp.cell_views(sdata, **KW, store=path)
    lab = truth["labels"].copy()
    a, b = lab == 1, lab == 2
    lab[a], lab[b] = 2, 1  # two cells swap their ids: same pixels, other labels
    sdata.labels["cell_labels"] = Labels2DModel.parse(lab, dims=("y", "x"))
    with pytest.raises(FileExistsError, match=r"different cells .*label pixels.*not reused"):
        mad.pp.cell_views(sdata, **KW, store=path)


def test_other_parameters_name_what_changed(tmp_path):
    sdata, _ = _tissue()
    path = tmp_path / "v.zarr"
    mad.pp.cell_views(sdata, **KW, store=path)
    with pytest.raises(
        FileExistsError, match=r"different parameters \(morphology_margin 1\.1 -> 1\.3"
    ):
        mad.pp.cell_views(sdata, **KW, store=path, morphology_margin=1.3)


def test_overwrite_never_deletes_what_is_not_a_view_store(tmp_path):
    sdata, _ = _tissue()
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"is not a madspatial view store.*never deleted"):
        mad.pp.cell_views(sdata, **KW, store=folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    sdata.write(tmp_path / "data.zarr")
    with pytest.raises(FileExistsError, match=r"SpatialData zarr"):
        mad.pp.cell_views(sdata, **KW, store=tmp_path / "data.zarr", overwrite=True)
    assert (tmp_path / "data.zarr" / "images").is_dir()


def test_overwrite_killed_while_creating_keeps_the_old_store(tmp_path, monkeypatch):
    """Before: KeyError 'chunk_done' / 'morphology', or a store without its arrays."""
    import zarr

    sdata, _ = _tissue()
    path = tmp_path / "v.zarr"
    old = mad.pp.cell_views(sdata, **KW, store=path, inplace=False)
    real = zarr.Group.create_array
    calls = []

    def dying(self, name, **kw):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed while creating the store")
        return real(self, name, **kw)

    monkeypatch.setattr(zarr.Group, "create_array", dying)
    with pytest.raises(KeyboardInterrupt):
        mad.pp.cell_views(sdata, **KW, store=path, overwrite=True, n_neighbors=10)
    monkeypatch.setattr(zarr.Group, "create_array", real)
    _same(open_zarr_views(path), old)  # the old store is whole, still complete
    assert not lock_path(path).exists()
    assert [p.name for p in tmp_path.glob(".v.zarr.creating-*")]  # the half-built one, aside
    new = mad.pp.cell_views(sdata, **KW, store=path, overwrite=True, n_neighbors=10, inplace=False)
    assert not list(tmp_path.glob(".v.zarr.*"))  # leftovers cleaned
    _same(new, mad.pp.cell_views(sdata, **KW, n_neighbors=10, inplace=False))


def test_a_store_being_written_is_locked(tmp_path):
    sdata, _ = _tissue()
    path = tmp_path / "v.zarr"
    with StoreLock(path):
        info = json.loads(lock_path(path).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(
            StoreLockedError,
            match=rf"view store .*v\.zarr is being written by pid {os.getpid()} on host "
            rf"'{socket.gethostname()}' .*lock file .*v\.zarr\.lock",
        ):
            mad.pp.cell_views(sdata, **KW, store=path)
    assert not lock_path(path).exists()
    mad.pp.cell_views(sdata, **KW, store=path)


def test_stale_and_foreign_locks(tmp_path):
    sdata, _ = _tissue()
    path = tmp_path / "v.zarr"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(path).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": time.time()})
    )
    with pytest.warns(
        UserWarning,
        match=rf"taking over the stale lock .*pid {dead.pid} on this host is not running",
    ) as rec:
        mad.pp.cell_views(sdata, **KW, store=path)
    assert rec[0].filename == __file__  # stacklevel: the warning points at the user's call
    assert not lock_path(path).exists()
    lock_path(path).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": time.time()}))
    with pytest.raises(StoreLockedError, match=r"pid 1 on host 'elsewhere'.*another host.*delete"):
        mad.pp.cell_views(sdata, **KW, store=path, overwrite=True)


_WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
import madspatial as mad
from madspatial.pp import _cell_views
from pp.conftest import disk_tissue

original = _cell_views._run_task

def slow(*args, **kwargs):
    out = original(*args, **kwargs)
    time.sleep(0.6)
    return out

_cell_views._run_task = slow
sdata, _ = disk_tissue(shape=(200, 200), shuffle_table=False)
mad.pp.cell_views(sdata, image_key="morphology", labels_key="cell_labels", store={path!r},
                  chunk_size=8, cells_per_tile=8, n_jobs=1, inplace=False)
print("finished")
"""


def test_kill_9_then_resume_is_bit_identical(tmp_path):
    """A real kill -9 mid-run; the second writer meanwhile gets a clear error; resuming gives
    exactly the bytes of an uninterrupted run."""
    sdata, _ = disk_tissue(shape=(200, 200), shuffle_table=False)
    kw = dict(image_key="morphology", labels_key="cell_labels", chunk_size=8, cells_per_tile=8)
    path = tmp_path / "killed.zarr"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(tests=str(ROOT / "tests"), path=str(path)))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    child = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    chunks = path / "morphology" / "c"
    deadline = time.time() + 60
    while time.time() < deadline and child.poll() is None:
        if chunks.is_dir() and sum(1 for _ in chunks.iterdir()) >= 2:
            break
        time.sleep(0.05)
    assert child.poll() is None, "the writer ended before it could be killed"
    with pytest.raises(StoreLockedError, match=rf"being written by pid {child.pid} on host"):
        mad.pp.cell_views(sdata, **kw, store=path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with pytest.raises(ValueError, match="incomplete"):
        mad.io.read_views(path)
    assert json.loads(lock_path(path).read_text())["pid"] == child.pid
    with pytest.warns(UserWarning, match=rf"stale lock .*pid {child.pid}"):
        resumed = mad.pp.cell_views(sdata, **kw, store=path, inplace=False)
    whole = mad.pp.cell_views(sdata, **kw, store=tmp_path / "whole.zarr", inplace=False)
    _same(resumed, whole)
    for name in ("instance_id", "centroid", "window_px"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))
    np.testing.assert_array_equal(resumed.storage_order, whole.storage_order)
    for arr in ("morphology", "microenvironment"):
        a = sorted(p.relative_to(path) for p in (path / arr).rglob("*") if p.is_file())
        b = sorted(
            p.relative_to(tmp_path / "whole.zarr")
            for p in (tmp_path / "whole.zarr" / arr).rglob("*")
            if p.is_file()
        )
        assert a == b
        for rel in a:
            assert (path / rel).read_bytes() == (tmp_path / "whole.zarr" / rel).read_bytes()
