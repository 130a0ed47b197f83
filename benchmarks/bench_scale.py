"""Whole slides on one machine: time and peak memory of every step as the cell count grows.

At each cell count, every step runs in a fresh subprocess that reports its wall time
and peak RSS (``VmHWM`` of ``/proc/self/status``):

- ``generate``: ``mad.datasets.synthetic_slide`` (zarr SpatialData, tile by tile);
- ``normalize``: ``mad.pp.normalize`` (the scan pass) and writing the normalized image
  into the slide's zarr (so later steps read it lazily instead of recomputing it);
- ``views``: ``cell_views(store="on_the_fly")`` (the plan) and one pass cutting every
  cell's views in storage order (view throughput alone);
- ``embed_otf``: ``tl.embed`` of every cell with views cut on the fly (vit_pico,
  56/112 px, random weights; no view store written);
- ``store``: ``cell_views(store=<zarr>)``, the view store (bytes on disk per cell);
- ``embed_store``: ``tl.embed`` of every cell from that store;
- ``train_otf`` / ``train_store``: ``tl.pretrain`` for a few steps; the steady-state step
  time is the median over steps after the first of ``batch_size / cells_per_s``.

Then the growth exponents (log-log slope of time and peak RSS against cells), the ratios
on the fly / store, and a projection for 100 M cells on 8 GPUs from the measured per-cell
costs and the FLOP model of ``bench_pretrain.py``.

Usage (the issue's run is ``--cells 100000 300000 1000000``)::

    python benchmarks/bench_scale.py                       # 10k, 30k, 100k cells
    python benchmarks/bench_scale.py --cells 100000 300000 1000000 --out scale_1M

Results go to ``benchmarks/results/<out>.md`` and ``.json``, rewritten after every step:
a run stopped early (or a step that failed) leaves what was measured, marked partial.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SM, SE = 56, 112
STEPS = (
    "generate",
    "normalize",
    "views",
    "embed_otf",
    "store",
    "embed_store",
    "train_otf",
    "train_store",
)
VIEW_KW = {
    "image_key": "morphology_normalized",
    "labels_key": "cell_labels",
    "morphology_size": SM,
    "microenvironment_size": SE,
}
TRAIN = dict(
    recipe="paper",  # the same loss at every size
    model="vit_pico",
    batch_size=32,
    lr=1e-3,
    n_prototypes=256,
    head_hidden_dim=64,
    head_bottleneck_dim=32,
    n_local=2,
    n_holdout=0,
)


def peak_rss_gb() -> float:
    """Peak resident memory of this process (VmHWM), GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _model():
    import torch

    from madspatial.nn import MADConfig, MADModel

    torch.manual_seed(0)
    return MADModel(
        MADConfig(backbone="vit_pico", in_chans=4, morphology_size=SM, microenvironment_size=SE)
    )


def _slide(work: Path, n: int):
    import spatialdata

    return spatialdata.read_zarr(work / f"slide_{n}.zarr")


def _train(name: str, n: int, work: Path, args) -> dict:
    """A few pretraining steps on the fly or from the store; the steady-state step time."""
    import madspatial as mad

    out: dict = {}
    if name == "train_otf":
        data = _slide(work, n)
        mad.pp.cell_views(data, **VIEW_KW, store="on_the_fly")
    else:
        data = str(work / f"views_{n}.zarr")
    ckpt = work / f"ckpt_{name}_{n}"
    shutil.rmtree(ckpt, ignore_errors=True)
    model = mad.tl.pretrain(
        data,
        max_steps=args.train_steps,
        checkpoint_dir=ckpt,
        checkpoint_every=10**6,
        seed=0,
        precision=args.precision,
        num_workers=args.num_workers,
        **TRAIN,
    )
    cps = np.asarray(model.history["cells_per_s"], dtype=float)[1:]
    out["step_s"] = float(np.median(TRAIN["batch_size"] / cps))
    shutil.rmtree(ckpt, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- steps
def step(name: str, n: int, work: Path, args) -> dict:
    """One step at ``n`` cells (runs inside its own subprocess)."""
    import torch

    import madspatial as mad

    torch.set_num_threads(args.threads)
    mad.settings.n_jobs = args.threads
    mad.settings.verbosity = "warning"  # no progress bars in the subprocess
    out: dict = {}
    t0 = time.perf_counter()
    if name == "generate":
        sd = mad.datasets.synthetic_slide(
            work / f"slide_{n}.zarr", n_cells=n, seed=0, expression=False, overwrite=True
        )
        table = sd.tables["table"]
        out["n_cells"] = int(table.n_obs)
        out["image_shape"] = list(sd.images["morphology"].shape)
        out["slide_bytes"] = du(work / f"slide_{n}.zarr")
    elif name == "normalize":
        sd = _slide(work, n)
        mad.pp.normalize(sd, image_key="morphology")
        out["scan_s"] = time.perf_counter() - t0
        sd.write_element("morphology_normalized")
        sd.write_attrs()
    elif name == "views":
        sd = _slide(work, n)
        mad.pp.cell_views(sd, **VIEW_KW, store="on_the_fly")
        out["plan_s"] = time.perf_counter() - t0
        views = mad.io.read_views(sd)
        order = views.storage_order
        t1 = time.perf_counter()
        for a in range(0, len(order), 256):
            views.batch(np.sort(order[a : a + 256]))
        out["cut_s"] = time.perf_counter() - t1
        out["views_per_s"] = len(order) / out["cut_s"]
    elif name == "embed_otf":
        sd = _slide(work, n)
        mad.pp.cell_views(sd, **VIEW_KW, store="on_the_fly")
        out["plan_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        mad.tl.embed(
            sd,
            model=_model(),
            batch_size=256,
            precision=args.precision,
            num_workers=args.num_workers,
        )
        out["embed_s"] = time.perf_counter() - t1
        out["cells_per_s"] = sd.tables["table"].n_obs / out["embed_s"]
    elif name == "store":
        sd = _slide(work, n)
        path = work / f"views_{n}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        mad.pp.cell_views(sd, **VIEW_KW, store=path, overwrite=True)
        out["store_bytes"] = du(path)
    elif name == "embed_store":
        t1 = time.perf_counter()
        ad = mad.tl.embed(
            str(work / f"views_{n}.zarr"),
            model=_model(),
            batch_size=256,
            precision=args.precision,
            num_workers=args.num_workers,
        )
        out["embed_s"] = time.perf_counter() - t1
        out["cells_per_s"] = ad.n_obs / out["embed_s"]
    elif name in ("train_otf", "train_store"):
        out.update(_train(name, n, work, args))
    else:
        raise ValueError(f"unknown step {name!r}")
    out["wall_s"] = time.perf_counter() - t0
    out["rss_gb"] = peak_rss_gb()
    from madspatial.train._precision import resolve_precision

    out["precision"] = resolve_precision(args.precision, "cpu")
    return out


def run_step(name: str, n: int, work: Path, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--step",
        name,
        "--n",
        str(n),
        "--workdir",
        str(work),
        "--threads",
        str(args.threads),
        "--num-workers",
        str(args.num_workers),
        "--train-steps",
        str(args.train_steps),
        "--precision",
        args.precision,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"step {name} at {n} cells failed (exit {proc.returncode})")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    print(
        f"  {name:<12} {n:>9,} cells  {res['wall_s']:8.1f} s  {res['rss_gb']:6.2f} GB", flush=True
    )
    return res


# --------------------------------------------------------------------------- analysis
def slope(x, y) -> float:
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if len(x) < 2 or not np.isfinite(y).all():
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def projection(measured: dict, n_target: float = 100e6, n_gpus: int = 8) -> dict:
    """100 M cells on 8 GPUs, from the FLOP model of bench_pretrain and measured view costs."""
    sys.path.insert(0, str(HERE))
    from bench_pretrain import projection as flop_projection

    flops = flop_projection()
    h100 = flops["gpus"]["H100 SXM (bf16 dense 989 TFLOP/s)"]
    # views: measured core-seconds per cell at 56/112 px, scaled by output pixels to 70/224
    core_s = measured["views_core_s_per_cell"]
    px_ratio = (70**2 + 224**2) / (SM**2 + SE**2)
    core_s_paper = core_s * px_ratio
    embed_gpu = h100["embed_cells_per_s"] * n_gpus
    train_gpu = h100["train_cells_per_s"] * n_gpus
    return {
        "assumptions": flops["assumptions"]
        + (
            f" Views: the measured on-the-fly cost here ({core_s * 1e3:.2f} core-ms per cell "
            f"at {SM}/{SE} px), scaled by output pixels ({px_ratio:.2f}x) to 70/224 px."
        ),
        "n_cells": n_target,
        "n_gpus": n_gpus,
        "embed_gflop_per_cell": flops["embed_gflop_per_cell"],
        "train_tflop_per_cell": flops["train_tflop_per_cell"],
        "embed_hours": n_target / embed_gpu / 3600,
        "train_epoch_hours": n_target / train_gpu / 3600,
        "view_core_ms_per_cell_70_224": core_s_paper * 1e3,
        "cores_to_feed_embedding": core_s_paper * embed_gpu,
        "cores_to_feed_training": core_s_paper * train_gpu,
        "store_tb_70_224": n_target * 4 * (70**2 + 224**2) / 1e12,
        "store_tb_measured_compression": n_target
        * measured["store_bytes_per_cell"]
        * px_ratio
        / 1e12,
    }


def _done(runs: dict, n: int, *steps: str) -> bool:
    """Whether every step of ``steps`` finished at ``n`` cells."""
    return all(s in runs[n] and "error" not in runs[n][s] for s in steps)


def write_results(results: dict, args, path: Path) -> None:
    """Write the tables of what was measured so far (``.md``) and every figure (``.json``)."""
    sizes = [int(k) for k in results["runs"] if _done(results["runs"], k, "generate")]
    runs = {n: results["runs"][str(n)] for n in sizes}
    cells = [runs[n]["generate"]["n_cells"] for n in sizes]
    precisions = sorted({r.get("precision") for v in runs.values() for r in v.values()} - {None})
    partial = results.get("partial", True)
    lines = [
        "# Whole slides on one machine: views on the fly vs a view store",
        "",
        f"Synthetic slides (`mad.datasets.synthetic_slide`, 4 channels, seed 0) of "
        f"{', '.join(f'{c:,}' for c in cells)} cells; vit_pico, {SM}/{SE} px views, precision "
        f"{args.precision!r} ({', '.join(precisions) or 'n/a'}), "
        f"{args.threads} threads, DataLoader workers {args.num_workers}; each step a fresh "
        f"subprocess (wall time, peak RSS = VmHWM). Shared machine: load average "
        f"{results['load_before']} before, {results.get('load_after', 'n/a')} after.",
        "",
        f"Command: `{results['command']}`",
        "",
    ]
    if partial:
        missing = [
            f"{s} at {int(n):,}"
            for n, v in results["runs"].items()
            for s in STEPS
            if s not in v or "error" in v[s]
        ]
        missing += [f"{n:,} cells" for n in args.cells if str(n) not in results["runs"]]
        lines += [
            "**Partial results**: the run stopped (or steps failed) before every step was "
            f"measured; missing: {', '.join(missing) or 'none (a step failed)'}.",
            "",
        ]
    lines += [
        "## Time (s) and peak RSS (GB) per step",
        "",
        "| step | "
        + " | ".join(f"{c:,} cells" for c in cells)
        + " | time exponent | RSS exponent |",
        "|---|" + "---|" * (len(cells) + 2),
    ]
    exps = {}
    for s in STEPS:
        have = [n for n in sizes if _done(runs, n, s)]
        x = [runs[n]["generate"]["n_cells"] for n in have]
        t = [runs[n][s]["wall_s"] for n in have]
        r = [runs[n][s]["rss_gb"] for n in have]
        exps[s] = (slope(x, t), slope(x, r))
        cols = " | ".join(
            f"{runs[n][s]['wall_s']:.1f} s, {runs[n][s]['rss_gb']:.2f} GB"
            if _done(runs, n, s)
            else ("failed" if "error" in runs[n].get(s, {}) else "-")
            for n in sizes
        )
        lines.append(f"| {s} | {cols} | {exps[s][0]:.2f} | {exps[s][1]:.2f} |")
    results["exponents"] = {s: {"time": e[0], "rss": e[1]} for s, e in exps.items()}
    lines += [
        "",
        "## Throughput and ratios",
        "",
        "| cells | views alone (cells/s) | embed on the fly (cells/s) | embed from store "
        "(cells/s) | ratio | train step on the fly (s) | from store (s) | ratio | store "
        "bytes/cell | on the fly bytes/cell |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt(n, step, key, spec):
        return format(runs[n][step][key], spec) if _done(runs, n, step) else "-"

    for n, c in zip(sizes, cells):
        r = runs[n]
        ratios = {}
        if _done(runs, n, "embed_otf", "embed_store"):
            ratios["embed"] = r["embed_otf"]["cells_per_s"] / r["embed_store"]["cells_per_s"]
        if _done(runs, n, "train_otf", "train_store"):
            ratios["train"] = r["train_store"]["step_s"] / r["train_otf"]["step_s"]
        r["ratios"] = ratios
        per_cell = f"{r['store']['store_bytes'] / c:,.0f}" if _done(runs, n, "store") else "-"
        lines.append(
            f"| {c:,} | {fmt(n, 'views', 'views_per_s', ',.0f')} | "
            f"{fmt(n, 'embed_otf', 'cells_per_s', ',.0f')} | "
            f"{fmt(n, 'embed_store', 'cells_per_s', ',.0f')} | "
            f"{format(ratios['embed'], '.2f') if 'embed' in ratios else '-'} | "
            f"{fmt(n, 'train_otf', 'step_s', '.3f')} | {fmt(n, 'train_store', 'step_s', '.3f')} | "
            f"{format(ratios['train'], '.2f') if 'train' in ratios else '-'} | {per_cell} | 0 |"
        )
    lines += [
        "",
        "Ratios are throughput on the fly / from the store (embedding: the `tl.embed` call; "
        "training: store step time / on-the-fly step time); >= 0.9 means the views are not "
        "the bottleneck. The end-to-end embed on the fly (`embed_otf` row) includes reading "
        "the slide, the plan (label statistics, windows) and embedding every cell; no view "
        "store is written.",
        "",
    ]
    both = [n for n in sizes if _done(runs, n, "views", "store")]
    if both:
        big, c = runs[both[-1]], runs[both[-1]]["generate"]["n_cells"]
        measured = {
            "views_core_s_per_cell": big["views"]["cut_s"] * args.threads / c,
            "store_bytes_per_cell": big["store"]["store_bytes"] / c,
        }
        proj = projection(measured)
        results["projection"] = proj
        lines += [
            "## Projection: 100 M cells on 8 GPUs (on paper)",
            "",
            proj["assumptions"],
            "",
            f"- embedding (ViT-L/14, {proj['embed_gflop_per_cell']:.0f} GFLOP per cell): "
            f"{proj['embed_hours']:.2f} h on 8 H100; cutting views on the fly for it needs "
            f"{proj['cores_to_feed_embedding']:.0f} CPU cores "
            f"({proj['view_core_ms_per_cell_70_224']:.2f} core-ms per cell);",
            f"- one training epoch ({proj['train_tflop_per_cell']:.2f} TFLOP per cell): "
            f"{proj['train_epoch_hours']:.1f} h on 8 H100; views on the fly need "
            f"{proj['cores_to_feed_training']:.0f} cores (a GPU node has 100+);",
            f"- a view store at 70/224 px would hold {proj['store_tb_70_224']:.1f} TB "
            f"uncompressed ({proj['store_tb_measured_compression']:.1f} TB at the compression "
            "measured here); on the fly: 0 bytes.",
            "",
        ]
    lines += [
        "Full run (the issue's sizes): `python benchmarks/bench_scale.py --cells 100000 "
        "300000 1000000 --out scale_1M`.",
    ]
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps(results, indent=1, default=float))
    if not partial:
        print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    p.add_argument("--workdir", default="/tmp/mad_bench_scale")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument(
        "--precision",
        default="auto",
        help="tl.embed / tl.pretrain precision: auto (bf16 on CPUs with native bf16), fp32, bf16",
    )
    p.add_argument("--out", default="scale")
    p.add_argument("--keep", action="store_true", help="keep the slides and stores")
    p.add_argument(
        "--only-steps",
        nargs="+",
        choices=STEPS,
        help="run these steps only (e.g. generate normalize views embed_otf for 1 M cells "
        "without writing a view store); the others are reported as not measured",
    )
    p.add_argument("--step", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    work = Path(args.workdir)
    if args.step:
        print(json.dumps(step(args.step, args.n, work, args), default=float))
        return
    work.mkdir(parents=True, exist_ok=True)
    results = {
        "command": "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]),
        "load_before": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "runs": {},
    }
    out = RESULTS / args.out
    failed = False
    for n in args.cells:
        print(f"{n:,} cells", flush=True)
        run = results["runs"][str(n)] = {}
        for s in args.only_steps or STEPS:
            try:
                run[s] = run_step(s, n, work, args)
            except RuntimeError as err:  # keep going: record it, measure the rest
                run[s] = {"error": str(err)}
                failed = True
            results["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
            write_results(results, args, out)  # partial results after every step
        if not args.keep:
            for p_ in work.glob(f"*_{n}.zarr"):
                shutil.rmtree(p_, ignore_errors=True)
    results["partial"] = failed
    write_results(results, args, out)


if __name__ == "__main__":
    main()
