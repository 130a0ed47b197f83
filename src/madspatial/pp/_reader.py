"""Read rectangular regions of a (lazy) dask image, computing each chunk once.

Tiles overlap by a window and rarely align with the image's chunks, so slicing
the dask array per tile would decode (or, for a lazily normalized image,
recompute) every chunk several times. A region reader keeps recently used
chunks in a small LRU cache; because tiles follow a Hilbert curve, neighbouring
tiles reuse most chunks. The reader pickles without its cache, so on a
``dask.distributed`` cluster each worker keeps its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class RegionReader:
    """Regions ``[..., y0:y1, x0:x1]`` of a numpy/dask array whose last two axes are y, x.

    Parameters
    ----------
    data
        numpy or dask array ``(..., H, W)``.
    cache_bytes
        Upper bound on the bytes of cached chunks.
    """

    def __init__(self, data, *, cache_bytes: int = 512 * 2**20):
        import dask.array as da

        self.data = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
        self.cache_bytes = int(cache_bytes)
        self._bounds = [np.concatenate([[0], np.cumsum(c)]) for c in self.data.chunks[-2:]]
        self._init_cache()

    def _init_cache(self) -> None:
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self._block_locks: dict[tuple[int, int], threading.Lock] = {}

    def __getstate__(self):
        return {"data": self.data, "cache_bytes": self.cache_bytes, "_bounds": self._bounds}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_cache()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def _block(self, i: int, j: int) -> np.ndarray:
        key = (i, j)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            lock = self._block_locks.setdefault(key, threading.Lock())
        with lock:  # one thread computes a block; others needing it wait for it
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            (ya, yb), (xa, xb) = self._bounds[0][i : i + 2], self._bounds[1][j : j + 2]
            block = np.asarray(self.data[..., ya:yb, xa:xb].compute(scheduler="sync"))
            with self._lock:
                self._cache[key] = block
                self._nbytes += block.nbytes
                while self._nbytes > self.cache_bytes and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._nbytes -= old.nbytes
                self._block_locks.pop(key, None)
            return block

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Read the region (clipped to the array) as a numpy array."""
        h, w = self.shape[-2:]
        y0, y1 = max(0, y0), min(h, y1)
        x0, x1 = max(0, x0), min(w, x1)
        out = np.empty((*self.shape[:-2], max(0, y1 - y0), max(0, x1 - x0)), dtype=self.dtype)
        if out.size == 0:
            return out
        by, bx = self._bounds
        i0, i1 = np.searchsorted(by, y0, "right") - 1, np.searchsorted(by, y1, "left")
        j0, j1 = np.searchsorted(bx, x0, "right") - 1, np.searchsorted(bx, x1, "left")
        for i in range(i0, i1):
            for j in range(j0, j1):
                blk = self._block(i, j)
                ya, yb = max(y0, by[i]), min(y1, by[i + 1])
                xa, xb = max(x0, bx[j]), min(x1, bx[j + 1])
                out[..., ya - y0 : yb - y0, xa - x0 : xb - x0] = blk[
                    ..., ya - by[i] : yb - by[i], xa - bx[j] : xb - bx[j]
                ]
        return out
