from __future__ import annotations

import numpy as np
import pytest
import torch

from madspatial.train._data import (
    ChunkBatchSampler,
    ViewDataset,
    iterate_batches,
    make_loader,
    pixel_statistics,
    prefetch_iter,
    read_batch,
    storage_positions,
)


def _all(sampler):
    return [b for read in sampler for b in read]


def test_sampler_deterministic_per_epoch_and_seed():
    idx = np.arange(100)
    a = ChunkBatchSampler(idx, 10, seed=3)
    b = ChunkBatchSampler(idx, 10, seed=3)
    first = [x.tolist() for x in _all(a)]
    assert first == [x.tolist() for x in _all(b)]
    a.set_epoch(1)
    assert first != [x.tolist() for x in _all(a)]
    c = ChunkBatchSampler(idx, 10, seed=4)
    assert first != [x.tolist() for x in _all(c)]
    # one epoch: every cell at most once, full batches only
    flat = np.concatenate(first)
    assert len(flat) == 100 and len(np.unique(flat)) == 100


def test_sampler_ranks_disjoint_equal_and_resume_skips():
    idx = np.arange(3, 103)  # 100 rows, not starting at 0
    samplers = [ChunkBatchSampler(idx, 8, seed=1, rank=r, world_size=3) for r in range(3)]
    batches = [_all(s) for s in samplers]
    assert {len(b) for b in batches} == {100 // 3 // 8}
    cells = [np.concatenate(b) for b in batches]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not set(cells[i]) & set(cells[j])
    assert set(np.concatenate(cells)) <= set(idx)
    s = samplers[1]
    s.set_epoch(0, start_batch=2)
    assert [x.tolist() for x in _all(s)] == [x.tolist() for x in batches[1][2:]]
    assert len(s) == len(batches[1]) - 2


def test_sampler_chunk_aware_reads_touch_few_chunks():
    n, chunk = 640, 16
    # storage order differs from row order: row r is stored at position pos[r]
    pos = np.random.default_rng(0).permutation(n)
    s = ChunkBatchSampler(
        np.arange(n), 32, seed=0, chunk_size=chunk, positions=pos, window_chunks=4
    )
    assert s.batches_per_read == 2
    seen = set()
    for read in s:
        rows = np.concatenate(read)
        chunks = set((pos[rows] // chunk).tolist())
        assert len(chunks) <= 4 + 1  # one window (plus a boundary straddle)
        seen |= chunks
    assert len(seen) == n // chunk
    # batches still mix cells of several chunks
    first = next(iter(s))[0]
    assert len(set((pos[first] // chunk).tolist())) > 1


def test_sampler_two_ranks_chunked_equal_batches_padded():
    # uneven windows: rank streams differ in length, yet batch counts are equal
    idx = np.arange(0, 200)
    counts = set()
    for r in range(2):
        s = ChunkBatchSampler(idx, 16, seed=0, chunk_size=10, window_chunks=3, rank=r, world_size=2)
        counts.add(len(_all(s)))
        assert all(len(b) == 16 for b in _all(s))
    assert counts == {200 // 2 // 16}


def test_sampler_sequential_for_embedding_covers_every_row_once():
    pos = np.array([3, 0, 4, 1, 2])
    parts = []
    for r in range(2):
        s = ChunkBatchSampler(
            np.arange(5), 2, positions=pos, shuffle=False, drop_last=False, rank=r, world_size=2
        )
        parts.extend(_all(s))
    flat = np.concatenate(parts)
    assert sorted(flat.tolist()) == [0, 1, 2, 3, 4]
    # storage order: rows sorted by their storage position
    assert flat.tolist() == np.argsort(pos).tolist()


def test_sampler_too_few_cells():
    with pytest.raises(ValueError, match="batch_size"):
        ChunkBatchSampler(np.arange(10), 8, world_size=2)


def test_read_batch_order_and_single_view(planted_store):
    idx = np.array([5, 1, 9, 1])
    out = read_batch(planted_store, idx, ("morphology", "microenvironment"))
    np.testing.assert_array_equal(out["morphology"], planted_store.morphology[idx])
    np.testing.assert_array_equal(out["microenvironment"], planted_store.microenvironment[idx])

    class OnlyMorph:
        morphology = planted_store.morphology

        def batch(self, idx):  # pragma: no cover - must not be called
            raise AssertionError("single-view reads must not load both views")

    one = read_batch(OnlyMorph(), idx, ("morphology",))
    assert list(one) == ["morphology"]
    np.testing.assert_array_equal(one["morphology"], planted_store.morphology[idx])


def test_loader_yields_uint8_batches(planted_store):
    sampler = ChunkBatchSampler(np.arange(len(planted_store)), 16, seed=0)
    loader = make_loader(planted_store, ("morphology", "microenvironment"), sampler)
    batches = list(iterate_batches(loader))
    assert len(batches) == len(planted_store) // 16
    b = batches[0]
    assert b["morphology"].dtype == torch.uint8 and b["morphology"].shape == (16, 2, 28, 28)
    np.testing.assert_array_equal(
        b["microenvironment"].numpy(), planted_store.microenvironment[b["index"].numpy()]
    )
    ds = ViewDataset(planted_store, ("microenvironment",))
    assert set(ds[np.array([0, 1])][0]) == {"index", "microenvironment"}


def test_storage_positions_follow_store_order(planted_store):
    np.testing.assert_array_equal(storage_positions(planted_store), np.arange(len(planted_store)))


def test_prefetch_iter_yields_all_and_raises():
    assert list(prefetch_iter(iter(range(10)), depth=2)) == list(range(10))

    def bad():
        yield 1
        raise OSError("disk gone")

    it = prefetch_iter(bad(), depth=2)
    assert next(it) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(it)


def test_pixel_statistics_match_numpy_on_the_run_view(planted_store):
    n = len(planted_store)
    mean, std = pixel_statistics(planted_store, ("morphology", "microenvironment"), n_cells=n)
    micro = planted_store.microenvironment[np.arange(n)].astype(np.float64) / 255
    np.testing.assert_allclose(mean, micro.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, micro.std(axis=(0, 2, 3)), rtol=1e-6)
    # a morphology-only run reads the morphology views
    m_mean, _ = pixel_statistics(planted_store, ("morphology",), n_cells=n)
    morph = planted_store.morphology[np.arange(n)].astype(np.float64) / 255
    np.testing.assert_allclose(m_mean, morph.mean(axis=(0, 2, 3)), rtol=1e-9)
    # a subset is seeded: same seed, same numbers
    a = pixel_statistics(planted_store, ("morphology",), n_cells=20, seed=1)
    assert a == pixel_statistics(planted_store, ("morphology",), n_cells=20, seed=1)
    assert a != pixel_statistics(planted_store, ("morphology",), n_cells=20, seed=2)


def test_pixel_statistics_constant_channel_gets_unit_std():
    class Flat:
        morphology = np.full((6, 2, 28, 28), 51, np.uint8)
        microenvironment = np.full((6, 2, 56, 56), 51, np.uint8)

        def __len__(self):
            return 6

        def batch(self, idx):
            return self.morphology[idx], self.microenvironment[idx]

    mean, std = pixel_statistics(Flat(), ("microenvironment",))
    assert mean == pytest.approx([0.2, 0.2]) and std == [1.0, 1.0]
