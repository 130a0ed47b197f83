"""The demo's bookkeeping: step timer, the run's state, failure and skip handling."""

from __future__ import annotations

import html
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._constants import OBS_CELL_TYPE, OBS_TRAJECTORY
from .._logging import logger
from .._report import Report
from ._presets import MODELS, DemoModel

REPORT_TITLE = "madspatial demo report"


class Timer:
    """Wall-clock and CPU seconds (this process, all threads) per step.

    On a shared machine the wall time grows with the load while the CPU time stays close
    to the work done.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    @contextmanager
    def step(self, name: str):
        """Time the block as step ``name`` (logged, and a row of :meth:`table`)."""
        logger.info("» %s", name)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            self.rows.append((name, dt, dc))
            logger.info("  %s: %.1f s (cpu %.1f s)", name, dt, dc)

    def table(self) -> pd.DataFrame:
        """Seconds and CPU seconds per step, with a ``total`` row."""
        df = pd.DataFrame(self.rows, columns=["step", "seconds", "cpu_seconds"]).set_index("step")
        df.loc["total"] = df.sum()
        return df


@dataclass
class Run:
    """Everything one demo run knows: settings, data, models, scores and the report."""

    out: Path
    preset: dict[str, Any]
    seed: int
    quick: bool
    synthetic: bool
    strict: bool
    report: Report = field(default_factory=lambda: Report(REPORT_TITLE))
    timer: Timer = field(default_factory=Timer)
    adata: Any = None
    sdata: Any = None
    models: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)  # tidy: model, metric, value
    decoder: Any = None  # MAD's expression decoder (its predictions fill the maps)
    per_gene: pd.DataFrame | None = None
    knn_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def figdir(self) -> Path:
        """Where the figures are saved as PNG files."""
        return self.out / "figures"

    @property
    def has_types(self) -> bool:
        obs = self.adata.obs
        return OBS_CELL_TYPE in obs and obs[OBS_CELL_TYPE].nunique(dropna=True) >= 2

    @property
    def has_genes(self) -> bool:
        return self.adata.n_vars > 0

    @property
    def has_trajectory(self) -> bool:
        obs = self.adata.obs
        return OBS_TRAJECTORY in obs and int(np.isfinite(obs[OBS_TRAJECTORY]).sum()) >= 20

    def available(self) -> list[DemoModel]:
        """List the models whose embedding exists."""
        return [m for m in MODELS if m.rep in self.adata.obsm]

    @contextmanager
    def stage(self, name: str):
        """Time a step; a failure is logged and reported, and the demo goes on."""
        with self.timer.step(name):
            try:
                yield
            except Exception as err:
                if self.strict:
                    raise
                logger.warning("demo step %r failed:\n%s", name, traceback.format_exc())
                self.failed.append(f"{name}: {type(err).__name__}: {err}")
                self.report.text(
                    f"Step <b>{html.escape(name)}</b> failed: "
                    f"<code>{html.escape(type(err).__name__)}: {html.escape(str(err))}</code> "
                    "(traceback in the log).",
                    kind="fail",
                )

    def skip(self, what: str, why: str) -> None:
        """Report a step left out for lack of the data it needs."""
        logger.info("  skipped %s: %s", what, why)
        self.skipped.append(f"{what}: {why}")
        self.report.text(f"Skipped <b>{html.escape(what)}</b>: {html.escape(why)}.", kind="skip")

    def metric(self, model: str, metric: str, value: float) -> None:
        """Record one score of one model."""
        self.metrics.append({"model": model, "metric": metric, "value": float(value)})

    def figure(self, fig, name: str, caption: str) -> None:
        """Embed ``fig`` in the report and save it as ``figures/<name>.png``."""
        self.report.figure(fig, caption, save_to=self.figdir / f"{name}.png")

    def csv(self, df: pd.DataFrame, name: str, *, index: bool = False) -> None:
        """Write ``<out>/<name>.csv``."""
        df.to_csv(self.out / f"{name}.csv", index=index)

    def metrics_wide(self) -> pd.DataFrame:
        """Scores as a model x metric table, models in :data:`MODELS` order."""
        if not self.metrics:
            return pd.DataFrame()
        tidy = pd.DataFrame(self.metrics).drop_duplicates(["model", "metric"], keep="last")
        wide = tidy.pivot(index="model", columns="metric", values="value")
        order = [m.name for m in MODELS if m.name in wide.index]
        cols = list(dict.fromkeys(tidy["metric"]))
        return wide.loc[order, cols]
