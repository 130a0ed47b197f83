"""Which dask scheduler runs the tile passes of ``normalize`` and ``cell_views``."""

from __future__ import annotations

from typing import Any


def active_client():
    """Return the active ``dask.distributed`` client, or ``None`` (none running or installed)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:  # no client
        return None


def scheduler(n_jobs: int, *, distributed: bool = True) -> dict[str, Any]:
    """``dask.compute`` keywords: the active distributed client, else ``n_jobs`` threads.

    ``distributed=False`` keeps the work in this process (tasks whose results are
    written into this process's memory).
    """
    client = active_client() if distributed else None
    if client is not None:
        return {"scheduler": client}
    if n_jobs <= 1:
        return {"scheduler": "sync"}
    return {"scheduler": "threads", "num_workers": n_jobs}


def scheduler_threads(sched: dict[str, Any], n_jobs: int) -> int:
    """Tasks the scheduler runs at once (the cluster's threads for a client)."""
    client = sched.get("scheduler")
    if hasattr(client, "nthreads"):
        try:
            return max(1, int(sum(client.nthreads().values())))
        except Exception:  # pragma: no cover - a client that cannot answer
            return max(1, n_jobs)
    return max(1, n_jobs)
