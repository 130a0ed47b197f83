"""Can the benchmark's backbone put the centre cell into its microenvironment token at all?

``bench_view_information.py`` shows every MAD recipe's microenvironment class token telling
the centre cell's morphological class no better than a microenvironment-only model
(~0.6), while the view's own central pixels tell it at ~0.97. Before reading that as
"cross-view distillation transfers nothing", this script asks what a *direct* signal
achieves with the same backbone and budget: the microenvironment backbone trained
supervised on the centre cell's class (cross-entropy through a linear layer on the
class token), on the same training cells, crops and learning rate family as pretraining,
then scored like the SSL tokens (15-NN and a linear probe on the held-out spatial-block
cells of ``bench_science.py``'s split). If a label cannot move the class into the token
at a budget, a cross-view term cannot be expected to either.

    python benchmarks/bench_token_ceiling.py --seeds 0 1 2 --jobs 2

Each configuration: ``(name, steps, microenvironment crop centre jitter or None)``;
``random``: DINO's uniformly placed global crops (what MAD's microenvironment student
sees), ``centred``: the crop centre within 10% of its side of the cell.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_science as bs  # noqa: E402
import bench_view_information as bvi  # noqa: E402

RESULTS = HERE / "results"
CONFIGS = {"random_200": (200, None), "centred_200": (200, 0.1), "centred_1000": (1000, 0.1)}


def train_supervised(store, labels: np.ndarray, train: np.ndarray, *, steps: int, jitter, seed: int,
                     lr: float = 1e-3, batch_size: int = 64, backbone: str = "vit_pico") -> np.ndarray:  # fmt: skip
    """Train the microenvironment backbone on ``labels`` of the ``train`` cells; return
    every cell's class token (un-augmented views, eval mode)."""
    import torch

    from madspatial.nn import MADConfig, MADModel, MultiCropAugment

    torch.manual_seed(seed)
    micro = torch.from_numpy(np.asarray(store.microenvironment[:]))
    sample = micro[np.flatnonzero(train)[:1024]].float() / 255  # what pixel_stats="data" does
    cfg = MADConfig(
        backbone=backbone,
        in_chans=micro.shape[1],
        morphology_size=int(store.morphology_size),
        microenvironment_size=int(store.microenvironment_size),
        pixel_mean=sample.mean((0, 2, 3)).tolist(),
        pixel_std=sample.std((0, 2, 3)).tolist(),
    )
    model = MADModel(cfg)
    classes, y = np.unique(labels, return_inverse=True)
    probe = torch.nn.Linear(model.embed_dim, len(classes))
    size = int(store.microenvironment_size)
    augment = MultiCropAugment(
        morphology_size=int(store.morphology_size),
        microenvironment_size=size,
        n_global=1,
        n_local=0,
        microenvironment_center_jitter=jitter,
    )
    params = list(model.backbone.parameters()) + list(probe.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.04)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(train)
    target = torch.from_numpy(y).long()
    for _ in range(steps):
        b = rng.choice(idx, batch_size, replace=False)
        crops = augment(None, micro[b], generator=gen)["microenvironment"]["global"][0]
        loss = torch.nn.functional.cross_entropy(probe(model.forward_features(crops)), target[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return torch.cat(
            [model.forward_features(model.preprocess(micro[i : i + 256])) for i in range(0, len(micro), 256)]
        ).numpy()  # fmt: skip


def run_one(args, seed: int, name: str) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    sargs = argparse.Namespace(n_cells=args.n_cells, seeds=[seed], block_windows=args.block_windows)
    _, store, table, _, splits = bs.setup(sargs)
    klass = table.obs["morph_class"].astype(str).to_numpy()
    steps, jitter = CONFIGS[name]
    t0 = time.perf_counter()
    z = train_supervised(store, klass, bs.pretrain_mask(splits[seed]), steps=steps, jitter=jitter,
                         seed=seed)  # fmt: skip
    secs = time.perf_counter() - t0
    lab = splits[seed]["blocks"]
    tr, te = lab == "train", lab == "test"
    px = bvi.centre_pixels(store)
    return dict(
        seed=seed,
        config=name,
        steps=steps,
        jitter=jitter,
        train_s=secs,
        knn=bvi.knn_score(z, klass, tr, te),
        linear=bvi.linear_score(z, klass, tr, te),
        pixels_knn=bvi.knn_score(px, klass, tr, te),
        pixels_linear=bvi.linear_score(px, klass, tr, te),
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--n-cells", type=int, default=3000)
    ap.add_argument("--block-windows", type=float, default=4.0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/mad_token_ceiling")
    ap.add_argument("--out", default="token_ceiling")
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    d = Path(args.workdir)
    d.mkdir(parents=True, exist_ok=True)
    tasks = [(s, c) for c in args.configs for s in args.seeds]
    if args.worker is not None:
        for k, (seed, name) in enumerate(tasks):
            out = d / f"{name}_seed{seed}.json"
            if k % args.jobs == args.worker and not out.exists():
                out.write_text(json.dumps(run_one(args, seed, name)))
        return
    t0 = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    procs = [
        subprocess.Popen([sys.executable, __file__, *argv, "--worker", str(w)])
        for w in range(args.jobs)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit("a worker failed")
    rows = [json.loads((d / f"{c}_seed{s}.json").read_text()) for s, c in tasks]
    write(args, rows, time.perf_counter() - t0, argv)


def write(args, rows: list[dict], wall: float, argv) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    L = [
        "# The microenvironment token's ceiling: the backbone trained on the answer",
        "",
        "The benchmark's microenvironment backbone (`vit_pico`, 112 px views, 64 cells a step, "
        "AdamW lr 1e-3, the pretraining cells of `bench_science.py`'s split) trained "
        "*supervised* on the centre cell's morphological class through a linear layer on its "
        "class token; the token then scored like the self-supervised ones on the held-out "
        "spatial-block cells (15-NN cosine, and a logistic-regression probe). "
        "`centre pixels`: the view's central 24 px as raw pixels, no training. "
        f"Mean over seeds {args.seeds} [95% t-interval]; wall {wall / 60:.1f} min.",
        "",
        f"Command: `python benchmarks/bench_token_ceiling.py {' '.join(argv)}`",
        "",
        "| configuration | steps | crops | train s | token, 15-NN | token, linear | "
        "centre pixels, 15-NN | centre pixels, linear |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name in args.configs:
        g = df[df.config == name]
        steps, jitter = CONFIGS[name]
        crops = "uniform (DINO)" if jitter is None else f"centre within {jitter:.0%} of the side"
        cells = [
            bs.fmt(*bs.t_interval(g[c])) for c in ("knn", "linear", "pixels_knn", "pixels_linear")
        ]
        L.append(
            f"| {name} | {steps} | {crops} | {g.train_s.mean():.0f} | " + " | ".join(cells) + " |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text("\n".join(L) + "\n")
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(L))


if __name__ == "__main__":
    main()
