"""Reading cell views for training and embedding: batched, lazy, chunk-aware.

The view store may be a chunked zarr array far larger than memory. Reading one
random cell from a compressed chunk decompresses the whole chunk, so a naive
uniform shuffle reads every chunk ``chunk_size`` times per epoch. The sampler
here shuffles *chunks*, then cells inside a small window of chunks: each chunk is
decompressed about once per epoch while batches still mix cells from many parts
of the slide. For in-memory stores (chunk size 1) it is a plain permutation.

Batches are produced as index arrays and read with one ``ViewStore.batch`` call
(sorted indices), so RAM holds one batch of uint8 views at a time, never the
store.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .._constants import VIEW_MICROENVIRONMENT, VIEW_MORPHOLOGY


def derive_seed(*parts: int) -> int:
    """Derive a 63-bit seed from integers (seed, step, rank, ...), stable across platforms."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0]
        >> 1
    )


class _RowsArray:
    """Lazy array-like over rows ``rows`` of a parent view array (nothing is read up front)."""

    def __init__(self, parent, rows: np.ndarray) -> None:
        self._parent = parent
        self._rows = rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._rows), *tuple(self._parent.shape)[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._parent.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            out = np.asarray(self._parent[np.asarray([self._rows[int(key)]])])[0]
            return out[rest] if rest else out
        sub = self._rows[key]
        out = np.asarray(self._parent[sub])
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out.astype(dtype) if dtype is not None else out


class RowSubset:
    """The rows ``rows`` of a view store, read lazily from it (``tl.pretrain(cells=...)``).

    Row ``i`` of the subset is row ``rows[i]`` of ``store``; reads go to the parent store
    (so only the selected cells are ever decoded), and the storage positions are the
    parent's, so the chunk-aware sampler keeps grouping cells of one zarr chunk.
    """

    def __init__(self, store, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self.parent = store
        self.rows = rows
        self.path = getattr(store, "path", None)
        self.attrs = dict(getattr(store, "attrs", {}) or {}, n_cells=len(rows))
        self.instance_id = np.asarray(store.instance_id)[rows]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def morphology(self):
        return _RowsArray(self.parent.morphology, self.rows)

    @property
    def microenvironment(self):
        return _RowsArray(self.parent.microenvironment, self.rows)

    def batch(self, idx) -> tuple[np.ndarray, np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        return self.parent.batch(self.rows[idx])

    def storage_positions(self) -> np.ndarray:
        """Storage position (in the parent store) of every subset row."""
        return storage_positions(self.parent)[self.rows]

    @property
    def channel_names(self) -> list[str]:
        return list(self.parent.channel_names)

    @property
    def n_channels(self) -> int:
        return int(self.parent.n_channels)

    @property
    def morphology_size(self) -> int:
        return int(self.parent.morphology_size)

    @property
    def microenvironment_size(self) -> int:
        return int(self.parent.microenvironment_size)

    def __repr__(self) -> str:
        return f"RowSubset({len(self)} of {len(self.parent)} cells of {self.parent!r})"


def store_chunk_size(store) -> int:
    """Rows per compressed chunk of the store (1 when in memory).

    A store cut on the fly names its own (``chunk_rows``): neighbours along its storage
    order share image chunks, so the sampler keeps them together.
    """
    if isinstance(store, RowSubset):
        return store_chunk_size(store.parent)
    rows = getattr(store, "chunk_rows", None)
    if rows:
        return int(rows)
    if getattr(store, "path", None) is None:
        return 1
    size = (getattr(store, "attrs", None) or {}).get("chunk_size")
    if size:
        return int(size)
    for name in (VIEW_MICROENVIRONMENT, VIEW_MORPHOLOGY):
        chunks = getattr(getattr(store, name, None), "chunks", None)
        if chunks:  # zarr.Array; numpy has no .chunks
            first = chunks[0]
            return int(first if np.isscalar(first) else first[0])
    return 1


def storage_positions(store) -> np.ndarray:
    """Storage position of every table row (rows of one zarr chunk share ``pos // chunk``)."""
    if isinstance(store, RowSubset):
        return store.storage_positions()
    order = getattr(store, "storage_order", None)
    n = len(store)
    if order is None:
        return np.arange(n, dtype=np.int64)
    order = np.asarray(order, dtype=np.int64)
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64)
    return pos


def read_batch(store, idx: np.ndarray, views: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the given rows of ``views`` as uint8 arrays, in the order of ``idx``.

    Both views come from one ``store.batch`` call; a single view is read alone from the
    store's lazy array (so single-view training never decompresses the other view).
    """
    idx = np.asarray(idx, dtype=np.int64)
    views = tuple(views)
    if len(views) == 1:
        arrays = {views[0]: getattr(store, views[0])[idx]}
    else:
        morph, micro = store.batch(idx)
        arrays = {VIEW_MORPHOLOGY: morph, VIEW_MICROENVIRONMENT: micro}
    result = {}
    for v in views:
        a = arrays[v]
        if a is None:
            raise ValueError(
                f"the view store returned no {v!r} views; recompute the views with "
                "mad.pp.cell_views or train in a mode that does not need them."
            )
        a = np.asarray(a)
        if a.dtype != np.uint8:
            raise TypeError(
                f"view store array {v!r} has dtype {a.dtype}; views must be uint8 (0..255). "
                "Recompute them with mad.pp.cell_views."
            )
        result[v] = a
    return result


class ChunkBatchSampler(torch.utils.data.Sampler):
    """Batches of store rows for one rank, grouped into chunk-friendly reads.

    Works like :class:`torch.utils.data.DistributedSampler` followed by a batch
    sampler: the order is a function of ``(seed, epoch)`` only, every rank computes
    the same global order and takes its own disjoint share, and every rank gets the
    same number of batches when ``drop_last`` (so collective operations never wait
    on a rank that ran out of data).

    For a chunked on-disk store the shuffle is two-level: chunks are shuffled, grouped
    into windows of ``window_chunks`` chunks, windows are dealt round-robin to the
    ranks, and cells are shuffled within each window. Iterating yields *reads*: lists
    of consecutive batches that together cover about one window, which the dataset
    fetches with one sorted read (each compressed chunk is decoded once per epoch).

    Parameters
    ----------
    indices
        Store rows to sample from (e.g. all rows minus a held-out set).
    batch_size
        Cells per batch on this rank.
    seed
        Base seed; epoch ``e`` uses a generator derived from ``(seed, e)``.
    chunk_size
        Store rows per compressed chunk (1: in memory, uniform shuffle).
    positions
        Storage position of every store row (default: row == position).
    window_chunks
        Chunks whose cells are mixed together and read at once.
    rank, world_size
        This process and the number of processes.
    shuffle
        ``False``: storage order, each rank a contiguous shard (for embedding).
    drop_last
        Drop incomplete batches and equalise the batch count across ranks (training).
        Without it the last batch of a rank may be short (embedding).
    """

    def __init__(
        self,
        indices: np.ndarray,
        batch_size: int,
        *,
        seed: int = 0,
        chunk_size: int = 1,
        positions: np.ndarray | None = None,
        window_chunks: int = 8,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.chunk_size = max(1, int(chunk_size))
        pos = self.indices if positions is None else np.asarray(positions)[self.indices]
        self._pos = np.asarray(pos, dtype=np.int64)
        self._chunk_of = self._pos // self.chunk_size
        self.window_chunks = max(1, int(window_chunks))
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0
        self.start_batch = 0
        if drop_last and self.batches_per_rank() == 0:
            raise ValueError(
                f"{len(self.indices)} cells are too few for batch_size={batch_size} on "
                f"{world_size} process(es): lower batch_size (at most "
                f"{max(1, len(self.indices) // world_size)})."
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; ``start_batch`` skips batches already done (resume)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    @property
    def batches_per_read(self) -> int:
        if not self.shuffle or self.chunk_size == 1:
            return 1
        return max(1, (self.chunk_size * self.window_chunks) // self.batch_size)

    def _streams(self) -> list[np.ndarray]:
        """Every rank's cells for this epoch, in order (same result on every rank)."""
        idx, w = self.indices, self.world_size
        if not self.shuffle:
            return np.array_split(idx[np.argsort(self._pos, kind="stable")], w)
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, 0x5A3))
        if self.chunk_size == 1:
            perm = idx[rng.permutation(len(idx))]
            return [perm[r::w] for r in range(w)]
        chunks = np.unique(self._chunk_of)
        chunks = chunks[rng.permutation(len(chunks))]
        rank_of_chunk = np.empty(int(chunks.max()) + 1, dtype=np.int64)
        rank_of_chunk[chunks] = np.arange(len(chunks))
        window_of = rank_of_chunk[self._chunk_of] // self.window_chunks
        noise = rng.random(len(idx))
        order = np.lexsort((noise, window_of))  # by window, shuffled within
        cells, wins = idx[order], window_of[order]
        return [cells[wins % w == r] for r in range(w)]

    def batches_per_rank(self) -> int:
        """Batches per epoch on each rank; with ``drop_last`` the same on every rank and epoch."""
        if self.drop_last:
            return (len(self.indices) // self.world_size) // self.batch_size
        return math.ceil(len(self._streams()[self.rank]) / self.batch_size)

    def rank_batches(self) -> list[np.ndarray]:
        """Return this rank's batches of the current epoch (all, ignoring ``start_batch``)."""
        mine = self._streams()[self.rank]
        bs = self.batch_size
        if not self.drop_last:
            return [mine[i : i + bs] for i in range(0, len(mine), bs)]
        need = self.batches_per_rank() * bs
        if len(mine) < need:  # windows are dealt whole, so a rank may fall short: wrap around
            mine = np.resize(mine, need)
        return [mine[i * bs : (i + 1) * bs] for i in range(need // bs)]

    def __len__(self) -> int:
        n = max(0, self.batches_per_rank() - self.start_batch)
        return math.ceil(n / self.batches_per_read)

    def __iter__(self) -> Iterator[list[np.ndarray]]:
        batches = self.rank_batches()[self.start_batch :]
        k = self.batches_per_read
        for i in range(0, len(batches), k):
            yield batches[i : i + k]


class ViewDataset(torch.utils.data.Dataset):
    """A map-style dataset over a view store whose items are *reads* of whole batches.

    ``dataset[[idx_a, idx_b, ...]]`` reads the union of the rows with one sorted read
    and returns one dict per batch, ``{"index": (B,), view: uint8 tensor (B, C, H, W)}``,
    for the requested ``views`` only (single-view modes never read the other view).
    Use with :func:`make_loader`, so that worker processes read and decompress the next
    batches while the model computes.
    """

    def __init__(self, store, views: Sequence[str]) -> None:
        self.store = store
        self.views = tuple(views)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, read) -> list[dict[str, torch.Tensor]]:
        if isinstance(read, np.ndarray) and read.ndim == 1:
            read = [read]
        parts = [np.asarray(b, dtype=np.int64) for b in read]
        idx = np.concatenate(parts)
        arrays = read_batch(self.store, idx, self.views)
        out, start = [], 0
        for b in parts:
            sl = slice(start, start + len(b))
            item = {"index": torch.from_numpy(b)}
            for v, a in arrays.items():
                item[v] = torch.from_numpy(np.ascontiguousarray(a[sl]))
            out.append(item)
            start += len(b)
        return out


def pixel_statistics(
    store, views: Sequence[str], *, n_cells: int = 1024, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the views, on the model's ``[0, 1]`` scale.

    Read from the microenvironment views when the run uses them (they sample the tissue
    around every cell), else from the morphology views, on a seeded random subset of at
    most ``n_cells`` cells. A channel that is constant in the sample gets std 1, so that
    standardising it is a shift only.
    """
    view = VIEW_MICROENVIRONMENT if VIEW_MICROENVIRONMENT in views else VIEW_MORPHOLOGY
    n = len(store)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, n_cells), replace=False))
    x = read_batch(store, idx, [view])[view]  # (n, C, H, W) uint8
    total = np.zeros(x.shape[1])
    sq = np.zeros(x.shape[1])
    for start in range(0, len(x), 256):  # float64 sums in slices: bounded memory
        part = x[start : start + 256].astype(np.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        sq += np.square(part).sum(axis=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    std = np.where(std > 1e-3, std, 1.0)
    return [float(v) for v in mean], [float(v) for v in std]


def iterate_batches(loader) -> Iterator[dict[str, torch.Tensor]]:
    """Flatten a loader of reads into batches."""
    for read in loader:
        yield from read


def make_loader(
    store,
    views: Sequence[str],
    sampler: ChunkBatchSampler,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> torch.utils.data.DataLoader:
    """Build a DataLoader yielding reads (lists of batch dicts) in the sampler's order."""
    kwargs = {}
    if num_workers > 0:
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": False}
    return torch.utils.data.DataLoader(
        ViewDataset(store, views),
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        **kwargs,
    )


def prefetch_iter(iterable, depth: int = 2):
    """Iterate ``iterable`` in a background thread, ``depth`` items ahead.

    zarr decompression and numpy copies release the GIL, so reading the next batch
    overlaps with the model's forward pass without worker processes.
    """
    import queue
    import threading

    if depth <= 0:
        yield from iterable
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as err:  # re-raised in the consumer
            q.put(err)
        q.put(done)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(timeout=0.05)


def resolve_cells(cells, n: int, obs=None) -> np.ndarray | None:
    """Sorted table rows selected by ``cells`` (``tl.pretrain(cells=...)``); ``None``: all.

    ``cells`` is a boolean mask of length ``n``, an array of integer row indices, the
    name of a boolean ``obs`` column, or ``(obs_column, value)`` / ``(obs_column,
    [values])`` (rows whose column equals the value or one of the values).
    """
    if cells is None:
        return None
    if isinstance(cells, str) or (
        isinstance(cells, tuple) and len(cells) == 2 and isinstance(cells[0], str)
    ):
        mask, what = _cells_from_obs(cells, obs)
    else:
        mask, what = _cells_from_array(cells, n)
    if not mask.any():
        raise ValueError(f"cells selects no cells ({what} selects 0 of {n} rows).")
    return np.flatnonzero(mask).astype(np.int64)


def _cells_from_obs(cells, obs) -> tuple[np.ndarray, str]:
    """``(mask, what)`` of ``cells`` naming a boolean obs column or ``(column, values)``."""
    column, values = (cells, None) if isinstance(cells, str) else cells
    if obs is None:
        raise ValueError(
            f"cells={cells!r} names an obs column, but the data has no table (a view store "
            "or its path was given); pass a boolean mask or row indices instead, or pass "
            "the AnnData / SpatialData."
        )
    if column not in obs.columns:
        cols = list(obs.columns)
        raise KeyError(
            f"cells: no obs column {column!r}; the table's obs columns are "
            f"{cols[:20]}{' ...' if len(cols) > 20 else ''}."
        )
    col = obs[column]
    if values is None:
        if col.dtype != bool:
            raise TypeError(
                f"cells={column!r}: obs column {column!r} has dtype {col.dtype}, not bool; "
                f"pass ({column!r}, value) to select the rows where it equals a value."
            )
        return col.to_numpy(dtype=bool), f"obs[{column!r}] is True"
    wanted = list(values) if isinstance(values, list | tuple | set | np.ndarray) else [values]
    mask = col.isin(wanted).to_numpy(dtype=bool)
    what = f"obs[{column!r}] in {wanted!r}"
    if not mask.any():
        present = list(col.astype("category").cat.categories[:20])
        raise ValueError(
            f"cells={cells!r} selects no cells: no row has {what}; the column's values "
            f"include {present}."
        )
    return mask, what


def _cells_from_array(cells, n: int) -> tuple[np.ndarray, str]:
    """``(mask, what)`` of ``cells`` given as a boolean mask or integer row indices."""
    hint = (
        "cells= takes a boolean mask of the table's rows, integer row indices, the name of a "
        "boolean obs column, or (obs_column, value_or_values)"
    )
    arr = np.asarray(cells)
    if hasattr(cells, "to_numpy"):  # pandas Series / Index: use the values, not the index
        arr = np.asarray(cells.to_numpy())
    if arr.ndim != 1:
        raise ValueError(f"{hint}; got an array of shape {arr.shape}.")
    if arr.dtype == bool:
        if len(arr) != n:
            raise ValueError(
                f"cells is a boolean mask of length {len(arr)}, but the table has {n} rows; "
                "the mask needs one entry per row, in the table's row order."
            )
        return arr, "the mask"
    if not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{hint}; got an array of dtype {arr.dtype}.")
    rows = arr.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        bad = rows[(rows < 0) | (rows >= n)][:5].tolist()
        raise IndexError(
            f"cells: row indices must be in 0..{n - 1} (the table has {n} rows); got {bad}."
        )
    uniq = np.unique(rows)
    if len(uniq) != len(rows):
        raise ValueError(
            f"cells: {len(rows) - len(uniq)} row indices are repeated; every cell can "
            "be selected once (pass np.unique(cells))."
        )
    mask = np.zeros(n, dtype=bool)
    mask[uniq] = True
    return mask, "the row indices"


def rows_digest(rows: np.ndarray | None) -> str | None:
    """Return a short stable hash of selected rows (``None``: every row)."""
    if rows is None:
        return None
    import hashlib

    return hashlib.sha256(np.asarray(rows, dtype="<i8").tobytes()).hexdigest()[:16]
