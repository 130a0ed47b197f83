"""Global settings: ``mad.settings``.

One object, created at import, read by every function that needs a default
device, seed, verbosity or output folder. Change it like scanpy's settings::

    import madspatial as mad
    mad.settings.seed = 1
    mad.settings.verbosity = "warning"
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

_VERBOSITY_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


@dataclass
class MADSettings:
    """Package-wide defaults.

    Attributes
    ----------
    seed
        Default seed for every random operation (views, training, decoders,
        clustering, UMAP). Functions take their own ``seed=`` too.
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:1"``, ...
    verbosity
        ``"error"``, ``"warning"``, ``"info"`` (default) or ``"debug"``.
        Progress bars are shown at ``"info"`` and above.
    n_jobs
        Worker processes/threads for CPU-parallel steps (``-1``: every core this process
        may run on, see :func:`available_cores`).
    n_threads
        Torch CPU threads of the demo (``madspatial demo --threads``); ``None``: every
        core this process may run on.
    """

    seed: int = 0
    device: str = "auto"
    _verbosity: str = field(default="info", repr=False)
    n_jobs: int = 1
    n_threads: int | None = None

    @property
    def verbosity(self) -> str:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: str | int) -> None:
        if isinstance(value, int):
            # scanpy-style integers: 0 error, 1 warning, 2 info, 3+ debug
            names = ["error", "warning", "info", "debug"]
            value = names[max(0, min(value, 3))]
        if value not in _VERBOSITY_LEVELS:
            raise ValueError(
                f"verbosity must be one of {sorted(_VERBOSITY_LEVELS)} or 0-3, got {value!r}."
            )
        self._verbosity = value
        logging.getLogger("madspatial").setLevel(_VERBOSITY_LEVELS[value])

    @property
    def show_progress(self) -> bool:
        """Whether long loops draw a tqdm progress bar."""
        return _VERBOSITY_LEVELS[self._verbosity] <= logging.INFO and not os.environ.get(
            "MADSPATIAL_NO_PROGRESS"
        )

    def resolve_device(self, device: str | None = None) -> str:
        """Turn ``None``/``"auto"`` into a concrete torch device string."""
        device = device or self.device
        if device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return device

    def resolve_n_jobs(self, n_jobs: int | None = None) -> int:
        n = self.n_jobs if n_jobs is None else n_jobs
        return available_cores() if n < 0 else max(1, n)

    def resolve_n_threads(self, n_threads: int | None = None) -> int:
        """Return the torch CPU threads to use.

        ``n_threads``, else :attr:`n_threads`, else every core this process may run on
        (:func:`available_cores`).
        """
        n = self.n_threads if n_threads is None else n_threads
        if n is None:
            return available_cores()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(
                "the torch thread count (threads= / --threads / mad.settings.n_threads) must "
                f"be a positive int, or None for every available core; got {n!r} "
                f"({type(n).__name__})."
            )
        return n


def available_cores() -> int:
    """Return the number of CPU cores this process may run on.

    That is its affinity mask (``taskset``, cgroup cpusets, SLURM's ``--cpus-per-task``), not
    the machine's core count.
    """
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


settings = MADSettings()
