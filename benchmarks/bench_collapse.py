"""Pilots on why the MAD-mode teacher stays near uniform when single-view teachers do not.

Short seeded pilots on the synthetic tissue at a CPU budget. Every variant pretrains a
``vit_pico`` (56 / 112 px views) on the *training* cells only (a random 75%, selected with
``tl.pretrain(cells=)``; held-out cells are never seen) and is scored on the held-out 25%:

- teacher entropy per view (mean of the last 10 steps; ``ln K`` = uniform), its batch
  entropy, the cross-view agreement (share of cells whose two views' teachers pick the
  same prototype) and the teacher-teacher cross-view CE, from the training history;
- held-out kNN accuracy (a 15-NN cosine classifier fitted on the training cells'
  embeddings, scored on the held-out cells) and Louvain ARI of the held-out cells
  against ``cell_type``;
- wall time of the pretraining.

Variants are MAD (``mode="mad"``) with one option changed at a time against the paper's
recipe, next to the two single-view runs (the entropy they reach is the goal) and their
concatenation (the "two separate models" control).

    python benchmarks/bench_collapse.py                       # all variants, seed 0
    python benchmarks/bench_collapse.py --variants paper view_centers --seeds 0 1
    python benchmarks/bench_collapse.py --quick               # smoke run

Results accumulate in ``benchmarks/results/collapse.json`` (one record per variant and
seed; a rerun replaces its records) and are rendered to ``collapse.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

#: The CPU pilot recipe every variant starts from (the demo's small head).
BASE = dict(
    recipe="paper",  # the variants' options on top of the paper's loss, at any step count
    model="vit_pico",
    batch_size=64,
    lr=2e-3,
    n_local=2,
    n_prototypes=1024,
    head_hidden_dim=256,
    head_bottleneck_dim=64,
    momentum=(0.99, 1.0),
    precision="auto",
    checkpoint_every=10**9,
)

#: name -> (mode, overrides of BASE, what it tests)
VARIANTS: dict[str, tuple[str, dict, str]] = {
    "morphology": ("morphology", {}, "single view (DINO on the cell alone)"),
    "microenvironment": ("microenvironment", {}, "single view (DINO on the niche)"),
    "paper": ("mad", {}, "MAD as in the paper: alpha 1, one shared center"),
    "alpha0": ("mad", {"alpha": 0.0}, "no cross-view terms (two DINO losses, one backbone)"),
    "alpha0.25": ("mad", {"alpha": 0.25}, "weaker cross-view terms"),
    "view_centers": ("mad", {"view_centers": True}, "one running center per view"),
    "alpha_warmup": (
        "mad",
        {"alpha_warmup_steps": "half"},
        "alpha ramped 0 -> 1 over the first half of the steps",
    ),
    "prototypes256": ("mad", {"n_prototypes": 256}, "256 prototypes instead of 1024"),
    "teacher_temp0.04": (
        "mad",
        {"teacher_temp": (0.04, 0.04)},
        "teacher temperature held at 0.04 (no warm-up to 0.07)",
    ),
    "teacher_temp0.02": (
        "mad",
        {"teacher_temp": (0.02, 0.04)},
        "sharper teacher: 0.02 -> 0.04",
    ),
    "teacher_temp0.01": (
        "mad",
        {"teacher_temp": (0.01, 0.02)},
        "much sharper teacher: 0.01 -> 0.02",
    ),
    "sinkhorn": ("mad", {"centering": "sinkhorn"}, "Sinkhorn-Knopp centering per view"),
    "teacher_temp0.02+view_centers": (
        "mad",
        {"teacher_temp": (0.02, 0.04), "view_centers": True},
        "sharper teacher and one center per view",
    ),
    "centred_micro_crops": (
        "mad",
        {"augment": {"microenvironment_center_jitter": 0.25}},
        "microenvironment crops (global and local) kept around the cell, like morphology",
    ),
    "view_centers+warmup": (
        "mad",
        {"view_centers": True, "alpha_warmup_steps": "half"},
        "one center per view and alpha warm-up",
    ),
    "centred_micro_crops+teacher_temp0.02": (
        "mad",
        {
            "augment": {"microenvironment_center_jitter": 0.25},
            "teacher_temp": (0.02, 0.04),
        },
        "cell-centred microenvironment crops and a sharper teacher: a cross-view target "
        "that is informative and that the crop can predict",
    ),
    "koleo": (
        "mad",
        {"koleo_weight": 0.1},
        "KoLeo spreading of the student's class tokens (DINOv2's 0.1)",
    ),
    "view_heads": (
        "mad",
        {"view_heads": True},
        "one projection head per view; a cross-view term asks a crop of one view to "
        "predict the other view's teacher in that view's own prototypes",
    ),
    "view_heads+teacher_temp0.02": (
        "mad",
        {"view_heads": True, "teacher_temp": (0.02, 0.04)},
        "one head per view and a sharper teacher (0.02 -> 0.04)",
    ),
    "to_microenvironment": (
        "mad",
        {"cross_terms": "to_microenvironment"},
        "one cross-view term: the microenvironment student learns the morphology teacher "
        "(which it can predict), the morphology student never chases the niche",
    ),
    "to_microenvironment+view_heads": (
        "mad",
        {"cross_terms": "to_microenvironment", "view_heads": True},
        "morphology -> microenvironment only, one head per view",
    ),
    "predictor_heads": (
        "mad",
        {"view_heads": True, "predictor_heads": True},
        "one head per view and a predictor per view for the cross-view terms: a view's "
        "teacher head is moved by its own view's term only",
    ),
    "predictor_heads+to_microenvironment": (
        "mad",
        {"view_heads": True, "predictor_heads": True, "cross_terms": "to_microenvironment"},
        "predictor heads, and only the morphology -> microenvironment term",
    ),
    "predictor_heads+to_microenvironment+centred_micro_crops": (
        "mad",
        {
            "view_heads": True,
            "predictor_heads": True,
            "cross_terms": "to_microenvironment",
            "augment": {"microenvironment_center_jitter": 0.1},
        },
        "predictor heads, only the morphology -> microenvironment term, microenvironment "
        "crops kept around the cell (centre within 10% of the side): a target the crop can "
        "predict, and a crop that shows which cell it is about",
    ),
    "predictor_heads+centred_micro_crops": (
        "mad",
        {
            "view_heads": True,
            "predictor_heads": True,
            "augment": {"microenvironment_center_jitter": 0.1},
        },
        "predictor heads, both cross-view terms, microenvironment crops kept around the cell "
        "(centre within 10% of the side): tl.pretrain(recipe='predictor_heads')",
    ),
    "predictor_heads+centred_micro_crops+teacher_temp0.04": (
        "mad",
        {
            "view_heads": True,
            "predictor_heads": True,
            "augment": {"microenvironment_center_jitter": 0.1},
            "teacher_temp": (0.04, 0.04),
        },
        "tl.pretrain(recipe='predictor_heads') with the teacher temperature held at 0.04 "
        "(no warm-up to 0.07): a sharper teacher, for the collapse goal",
    ),
    "predictor_heads+koleo": (
        "mad",
        {"view_heads": True, "predictor_heads": True, "koleo_weight": 0.1},
        "predictor heads and KoLeo (0.1)",
    ),
    "koleo+teacher_temp0.02": (
        "mad",
        {"koleo_weight": 0.1, "teacher_temp": (0.02, 0.04)},
        "KoLeo and a sharper teacher (0.02 -> 0.04)",
    ),
}


def log(msg: str) -> None:
    """Print ``msg`` with the time of day, flushed (progress of a long run)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- data
def prepare(
    n_cells: int, *, seed: int = 0, morph: int = 56, micro: int = 112, niche_imprint: float = 0.0
):
    """Synthetic tissue with in-memory views; returns ``(sdata, store)``."""
    import madspatial as mad

    sdata = mad.datasets.synthetic_tissue(n_cells=n_cells, seed=seed, niche_imprint=niche_imprint)
    mad.pp.normalize(sdata, image_key="morphology", dtype="float32", multiscale=False)
    mad.pp.cell_views(
        sdata,
        image_key="morphology_normalized",
        labels_key="cell_labels",
        morphology_size=morph,
        microenvironment_size=micro,
    )
    return sdata, mad.io.read_views(sdata)


def random_split(n: int, *, seed: int, test_fraction: float = 0.25) -> np.ndarray:
    """Boolean mask of the training cells (a seeded random ``1 - test_fraction``)."""
    rng = np.random.default_rng(seed)
    train = np.ones(n, dtype=bool)
    train[rng.choice(n, size=round(test_fraction * n), replace=False)] = False
    return train


# --------------------------------------------------------------------------- training
def resolve(overrides: dict, steps: int) -> dict:
    """Resolve a variant's overrides for a run of ``steps`` (``"half"``: half the steps)."""
    out = dict(overrides)
    if out.get("alpha_warmup_steps") == "half":
        out["alpha_warmup_steps"] = max(1, steps // 2)
    return out


def pretrain_embed(store, train_mask, *, mode, seed, steps, overrides=None, workdir=None):
    """Pretrain on ``store``'s training rows only (``tl.pretrain(cells=)``); embed every row.

    Returns ``({"": (N, d) concatenated tokens, view: (N, D)}, history, seconds)``.
    """
    import madspatial as mad
    from madspatial.tl._embed import embed_store

    opts = dict(BASE)
    opts.update(resolve(overrides or {}, steps))
    n_train = int(train_mask.sum())
    opts.setdefault("n_holdout", min(256, n_train // 8))
    opts.setdefault("eval_every", max(1, steps // 4))
    t0 = time.perf_counter()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mad_bench_") as tmp:
        model = mad.tl.pretrain(
            store,
            cells=np.asarray(train_mask, dtype=bool),  # held-out cells are never read
            mode=mode,
            seed=seed,
            max_steps=steps,
            resume=False,
            checkpoint_dir=str(workdir) if workdir is not None else tmp,
            **opts,
        )
    seconds = time.perf_counter() - t0
    tokens = embed_store(store, model, show_progress=False)
    views = [v for v in ("morphology", "microenvironment") if v in tokens]
    out = {v: np.asarray(tokens[v], dtype=np.float32) for v in views}
    out[""] = np.concatenate([out[v] for v in views], axis=1)
    return out, model.history, seconds


def untrained_embed(store, *, seed: int, pixel_stats: str, train_mask=None) -> np.ndarray:
    """Build the MAD architecture of BASE at its seeded random initialisation, not trained.

    ``pixel_stats="data"`` standardises with the training cells' channel statistics (what
    a trained model uses), ``"fixed"`` with MADConfig's 0.5 / 0.25.
    """
    import torch

    from madspatial.nn import MADConfig, MADModel
    from madspatial.tl._embed import embed_store
    from madspatial.train._data import derive_seed, pixel_statistics

    mean = std = None
    if pixel_stats == "data":
        sub = store if train_mask is None else store.subset(np.flatnonzero(train_mask))
        mean, std = pixel_statistics(
            sub, ("morphology", "microenvironment"), seed=derive_seed(seed, 0, 0, 3)
        )
    torch.manual_seed(seed)
    model = MADModel(
        MADConfig(
            backbone=BASE["model"],
            in_chans=int(store.n_channels),
            channel_names=list(store.channel_names),
            mode="mad",
            morphology_size=int(store.morphology_size),
            microenvironment_size=int(store.microenvironment_size),
            head_hidden_dim=BASE["head_hidden_dim"],
            head_bottleneck_dim=BASE["head_bottleneck_dim"],
            n_prototypes=BASE["n_prototypes"],
            pixel_mean=mean,
            pixel_std=std,
        )
    ).eval()
    tokens = embed_store(store, model, show_progress=False)
    return np.concatenate(
        [np.asarray(tokens[v], dtype=np.float32) for v in ("morphology", "microenvironment")], 1
    )


def history_stats(h: dict, window: int = 10) -> dict:
    """End-of-run teacher diagnostics (means of the last ``window`` steps)."""

    def last(key):
        v = h.get(key) or []
        return float(np.mean(v[-window:])) if len(v) else float("nan")

    out = {
        "ln_k": float(h["ln_k"]),
        "teacher_entropy": last("teacher_entropy"),
        "teacher_batch_entropy": last("teacher_batch_entropy"),
        "collapsed": bool(h.get("collapsed", False)),
        "recall@5_last": float(h["recall@5"][-1]) if h.get("recall@5") else float("nan"),
        "recall@5_chance": float(h["recall_chance"]["recall@5"]),
        "loss_last": last("loss"),
    }
    for v in ("morphology", "microenvironment"):
        out[f"entropy_{v}"] = last(f"teacher_entropy_{v}")
        out[f"batch_entropy_{v}"] = last(f"teacher_batch_entropy_{v}")
    out["view_agreement"] = last("view_agreement")
    out["teacher_cross_ce"] = last("teacher_cross_ce")
    # the trajectory, for the report: entropy per view at 4 points of the run
    n = len(h.get("loss", []))
    marks = sorted({0, n // 4, n // 2, 3 * n // 4, max(0, n - 1)}) if n else []
    out["curve"] = [
        {
            "step": int(i),
            **{
                k: float(h[k][i])
                for k in (
                    "teacher_entropy_morphology",
                    "teacher_entropy_microenvironment",
                    "view_agreement",
                    "alpha",
                )
                if h.get(k)
            },
        }
        for i in marks
    ]
    return out


# --------------------------------------------------------------------------- scoring
def heldout_scores(X: np.ndarray, labels: np.ndarray, train_mask: np.ndarray, *, seed: int):
    """Score held-out kNN accuracy (fit on training cells) and held-out Louvain ARI."""
    from sklearn.neighbors import KNeighborsClassifier

    import madspatial as mad
    from madspatial.tl._cluster import knn_graph, multilevel

    test = ~train_mask
    knn = KNeighborsClassifier(n_neighbors=15, metric="cosine")
    knn.fit(X[train_mask], labels[train_mask])
    acc = float(np.mean(knn.predict(X[test]) == labels[test]))
    g = knn_graph(X[test], n_neighbors=min(30, int(test.sum()) - 1))
    cl, _ = multilevel(g, resolution=1.0, seed=seed)
    return {"knn_accuracy": acc, "louvain_ari": float(mad.metrics.ari(labels[test], cl))}


# --------------------------------------------------------------------------- report
def render(records: list[dict], meta: dict) -> str:
    """Render the records and the run's settings as the Markdown report."""
    import pandas as pd

    df = pd.DataFrame(records)
    bs = meta.get("batch_size", BASE["batch_size"])
    order = [v for v in [*VARIANTS, "separate (concat)", "untrained"] if v in set(df.variant)]
    cols = [
        ("entropy_morphology", "H morph"),
        ("entropy_microenvironment", "H micro"),
        ("batch_entropy_morphology", "H(mean) morph"),
        ("batch_entropy_microenvironment", "H(mean) micro"),
        ("view_agreement", "agreement"),
        ("teacher_cross_ce", "cross CE"),
        ("knn_accuracy", "held-out kNN acc."),
        ("louvain_ari", "held-out Louvain ARI"),
        ("train_s", "train s"),
    ]
    L = [
        "# Collapse diagnosis: per-view teacher entropy of MAD vs single-view runs",
        "",
        f"Synthetic tissue, {meta['n_cells']} cells ({meta['n_train']} training cells, a seeded "
        f"random 75%; the rest held out and never seen in pretraining), views "
        f"{meta['morph']} / {meta['micro']} px; `vit_pico`, {meta['steps']} steps x "
        f"{bs} cells ({meta['steps'] * bs / meta['n_train']:.1f}"
        f" epochs), lr {BASE['lr']}, {BASE['n_local']} local crops, {BASE['n_prototypes']} "
        f"prototypes (head {BASE['head_hidden_dim']}/{BASE['head_bottleneck_dim']}), EMA "
        f"{BASE['momentum'][0]} -> {BASE['momentum'][1]}, precision `auto`. "
        f"ln K = {np.log(BASE['n_prototypes']):.2f} (ln 256 = {np.log(256):.2f}).",
        "",
        "Entropies (nats) are the mean of the last 10 steps. H = mean per-cell teacher "
        "entropy (uniform collapse: H ~ ln K); H(mean) = entropy of the batch-mean teacher "
        "distribution (one-hot collapse: H(mean) ~ 0). agreement = share of cells whose "
        "morphology and microenvironment teachers put their largest probability on the same "
        "prototype; cross CE = mean teacher-teacher cross-entropy between the views. kNN: "
        "15-NN cosine classifier fitted on the training cells' embeddings, accuracy on the "
        "held-out cells; Louvain: resolution 1, 30-NN graph of the held-out cells, ARI "
        "against `cell_type`. MAD embeddings are both class tokens concatenated (2D); "
        "`separate (concat)` concatenates the two single-view runs' tokens (2D, each run "
        "the full number of steps). Cells: mean over seeds (per-seed values in "
        "collapse.json).",
        "",
        "| variant | what | seeds | collapsed | " + " | ".join(c[1] for c in cols) + " |",
        "|---|---|---:|---|" + "---:|" * len(cols),
    ]
    for v in order:
        g = df[df.variant == v]
        what = VARIANTS[v][2] if v in VARIANTS else g["what"].iloc[0]
        coll = g["collapsed"].dropna()
        coll_s = f"{int(coll.sum())}/{len(coll)}" if len(coll) else ""
        cells = []
        for key, _ in cols:
            vals = pd.to_numeric(g.get(key), errors="coerce").dropna() if key in g else []
            if len(vals) == 0:
                cells.append("")
            else:
                d = 0 if key == "train_s" else (2 if "entropy" in key or key.endswith("ce") else 3)
                cells.append(f"{vals.mean():.{d}f}")
        L.append(f"| {v} | {what} | {len(g)} | {coll_s} | " + " | ".join(cells) + " |")
    L += ["", "Entropy per view over the run (first seed):", ""]
    L += [
        "| variant | step | H morph | H micro | agreement | alpha |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v in order:
        g = df[df.variant == v]
        if "curve" not in g or not isinstance(g["curve"].iloc[0], list):
            continue
        for c in g["curve"].iloc[0]:
            L.append(
                f"| {v} | {c['step']} | {c.get('teacher_entropy_morphology', float('nan')):.2f}"
                f" | {c.get('teacher_entropy_microenvironment', float('nan')):.2f} | "
                f"{c.get('view_agreement', float('nan')):.3f} | {c.get('alpha', float('nan')):.2f} |"
            )
    L += ["", f"Machine: {meta['machine']}; commands: `{meta['command']}`", ""]
    if meta.get("notes"):
        L += ["## Reading", "", *meta["notes"], ""]
    return "\n".join(L)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line (``--quick``: 300 cells, 4 steps, ``collapse_quick``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-cells", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=BASE["batch_size"])
    ap.add_argument("--out", default="collapse")
    ap.add_argument(
        "--merge",
        nargs="*",
        default=None,
        help="only merge the records of these results stems into --out and re-render",
    )
    ap.add_argument("--notes", default=None, help="a markdown file rendered as 'Reading'")
    args = ap.parse_args(argv)
    if args.merge is None and args.quick:
        args.n_cells, args.steps, args.out = 300, 4, "collapse_quick"
    return args


def _replace(records: list[dict], rec: dict) -> list[dict]:
    """Return ``records`` with ``rec`` in place of any earlier record of its variant and seed."""
    key = (rec["variant"], rec["seed"])
    return [*(r for r in records if (r["variant"], r["seed"]) != key), rec]


def merge(args: argparse.Namespace) -> None:
    """Merge the records of the ``--merge`` results into ``--out`` and re-render it."""
    path = RESULTS / f"{args.out}.json"
    state = json.loads(path.read_text())
    records = state["records"]
    for stem in args.merge:
        for r in json.loads((RESULTS / f"{stem}.json").read_text())["records"]:
            records = _replace(records, r)
    state["records"] = records
    if args.notes:
        state["meta"]["notes"] = Path(args.notes).read_text().splitlines()
    path.write_text(json.dumps(state, indent=1))
    (RESULTS / f"{args.out}.md").write_text(render(records, state["meta"]))


def run_seed(seed: int, args, store, labels, state: dict, path: Path) -> list[dict]:
    """Pretrain and score every variant for one seed, then the two reference rows.

    The state is written after every variant, so partial results survive a kill.
    """
    records = state["records"]
    train_mask = random_split(len(store), seed=seed)
    tokens: dict[str, np.ndarray] = {}
    for name in args.variants:
        mode, overrides, _ = VARIANTS[name]
        emb, h, secs = pretrain_embed(
            store, train_mask, mode=mode, seed=seed, steps=args.steps, overrides=overrides
        )
        if name in ("morphology", "microenvironment"):
            tokens[name] = emb[""]
        rec = {"variant": name, "seed": seed, "steps": args.steps, "train_s": secs}
        rec.update(history_stats(h))
        rec.update(heldout_scores(emb[""], labels, train_mask, seed=seed))
        records = _replace(records, rec)
        state["records"] = records
        path.write_text(json.dumps(state, indent=1))  # partial results survive a kill
        log(
            f"seed {seed} {name}: {secs:.0f} s, H morph {rec['entropy_morphology']:.2f} "
            f"micro {rec['entropy_microenvironment']:.2f} (ln K {rec['ln_k']:.2f}), "
            f"agreement {rec['view_agreement']:.3f}, kNN {rec['knn_accuracy']:.3f}, "
            f"ARI {rec['louvain_ari']:.3f}"
        )
    if len(tokens) == 2:
        X = np.concatenate([tokens["morphology"], tokens["microenvironment"]], 1)
        rec = {
            "variant": "separate (concat)",
            "what": "the two single-view runs, tokens concatenated",
            "seed": seed,
            "steps": args.steps,
        }
        rec.update(heldout_scores(X, labels, train_mask, seed=seed))
        records = _replace(records, rec)
    rec = {
        "variant": "untrained",
        "what": "MAD architecture, random init, data pixel statistics",
        "seed": seed,
        "steps": 0,
    }
    rec.update(
        heldout_scores(
            untrained_embed(store, seed=seed, pixel_stats="data", train_mask=train_mask),
            labels,
            train_mask,
            seed=seed,
        )
    )
    return _replace(records, rec)


def main(argv=None) -> None:
    """Run the variants for every seed (or merge results) and write the report."""
    args = parse_args(argv)
    if args.merge is not None:
        merge(args)
        return None
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    warnings.simplefilter("ignore")
    os.environ.setdefault("MADSPATIAL_NO_PROGRESS", "1")
    import torch

    import madspatial as mad

    # one thread: on a shared 2-core machine two OpenMP threads per process thrash
    # (measured 7x slower per step under a load of ~7); --threads 2 on an idle machine
    torch.set_num_threads(args.threads)
    mad.settings.verbosity = "error"
    BASE["batch_size"] = args.batch_size
    sdata, store = prepare(args.n_cells)
    labels = sdata.tables["table"].obs["cell_type"].astype(str).to_numpy()
    path = RESULTS / f"{args.out}.json"
    state = json.loads(path.read_text()) if path.exists() else {"records": []}
    records = state["records"]
    RESULTS.mkdir(exist_ok=True)
    for seed in args.seeds:
        records = run_seed(seed, args, store, labels, state, path)
        state["records"] = records
    meta = {
        "n_cells": args.n_cells,
        "n_train": int(random_split(args.n_cells, seed=0).sum()),
        "morph": int(store.morphology_size),
        "micro": int(store.microenvironment_size),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "machine": f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load "
        f"{[round(x, 2) for x in os.getloadavg()]}",
        "command": "python benchmarks/bench_collapse.py " + " ".join(argv or sys.argv[1:]),
        "notes": state.get("notes", []),
    }
    state.update(records=records, meta=meta)
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(state, indent=1))
    (RESULTS / f"{args.out}.md").write_text(render(records, meta))
    log(f"wrote {RESULTS / args.out}.md")


if __name__ == "__main__":
    sys.exit(main())
