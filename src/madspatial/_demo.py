"""``madspatial demo``: the whole pipeline on the synthetic tissue (or the user's data),
ending in ``OUT/report.html``."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ._constants import (
    CELL_LABELS_KEY,
    IMAGE_KEY,
    OBS_CELL_TYPE,
    OBS_MORPH_CLASS,
    OBS_NICHE,
    TABLE_KEY,
)
from ._logging import logger
from ._report import Report


class _Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str):
        logger.info("» %s", name)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.rows.append((name, dt))
        logger.info("  done in %.1f s", dt)

    def table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=["step", "seconds"]).set_index("step")
        df.loc["total"] = df["seconds"].sum()
        return df


def _load_data(*, n_cells, seed, quick, sdata_path, image_key, labels_key, table_key):
    if sdata_path is not None:
        import spatialdata

        sdata = spatialdata.read_zarr(sdata_path)
        image_key = image_key or next(iter(sdata.images))
        labels_key = labels_key or next(iter(sdata.labels))
        table_key = table_key or next(iter(sdata.tables))
        return sdata, image_key, labels_key, table_key, False
    from .datasets import synthetic_tissue

    n = n_cells or (600 if quick else 5000)
    sdata = synthetic_tissue(n_cells=n, seed=seed)
    return sdata, IMAGE_KEY, CELL_LABELS_KEY, TABLE_KEY, True


def summary_table(adata) -> pd.DataFrame:
    """Cells per subtype, with their morphological class and niche (synthetic ground truth)."""
    obs = adata.obs
    cols = [c for c in (OBS_CELL_TYPE, OBS_MORPH_CLASS, OBS_NICHE) if c in obs]
    if not cols:
        return pd.DataFrame({"cells": [adata.n_obs]}, index=["all"])
    g = obs.groupby(cols, observed=True).size().rename("cells").reset_index()
    g["share"] = g["cells"] / g["cells"].sum()
    return g


def run_demo(
    *,
    out: str | Path = "demo_output",
    n_cells: int | None = None,
    seed: int = 0,
    quick: bool = False,
    sdata_path: str | None = None,
    image_key: str | None = None,
    labels_key: str | None = None,
    table_key: str | None = None,
) -> Path:
    """Run the demo pipeline and write ``out/report.html``; returns the report path."""
    import matplotlib

    matplotlib.use("Agg")
    from . import pl

    out = Path(out)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    report = Report("madspatial demo report")

    with timer.step("load data"):
        sdata, image_key, labels_key, table_key, synthetic = _load_data(
            n_cells=n_cells,
            seed=seed,
            quick=quick,
            sdata_path=sdata_path,
            image_key=image_key,
            labels_key=labels_key,
            table_key=table_key,
        )
        adata = sdata.tables[table_key]
    report.text(
        f"{'Synthetic tissue' if synthetic else 'User data'}: {adata.n_obs:,} cells, "
        f"{adata.n_vars} genes, image <code>{image_key}</code> of shape "
        f"{tuple(sdata.images[image_key].shape)}; seed {seed}."
    )

    with timer.step("tissue overview"):
        report.section("Tissue")
        color = OBS_CELL_TYPE if OBS_CELL_TYPE in adata.obs else None
        fig = pl.tissue_overview(
            sdata,
            image_key=image_key,
            labels_key=labels_key,
            table_key=table_key,
            color=color,
            return_fig=True,
        )
        report.figure(
            fig,
            "Image channels as a composite; segmentation outlines coloured by "
            + (color or "nothing"),
            save_to=figdir / "tissue_overview.png",
        )
        summary = summary_table(adata)
        summary.to_csv(out / "summary.csv", index=False)
        report.table(summary, "Cells per ground-truth subtype")

    report.section("Timings")
    timings = timer.table()
    report.table(timings, "Wall-clock seconds per step", float_format="{:.1f}")
    path = report.write(out / "report.html")
    logger.info("report written to %s (total %.0f s)", path, timings.loc["total", "seconds"])
    return path
