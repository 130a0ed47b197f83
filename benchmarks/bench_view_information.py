"""What each embedding of a science run knows about each ground-truth factor of the tissue.

The synthetic tissue's eight subtypes are pairs within four morphological classes, each
pair told apart by one kind of evidence only (``docs/synthetic_tissue.md``): the
niche-only pairs (CAF / stromal fibroblast, TAM / stromal macrophage, T / B cell) look
alike, the morphology-only pair (proliferative / quiescent tumour) lives in the same
niches. Cross-view distillation can only transfer what the two views *share*; this script
measures, on the held-out cells of a ``bench_science.py`` work folder, how well each
embedding predicts

- ``morph_class`` (what the cell alone looks like, 4 classes),
- ``niche`` (where it sits, 3 niches),
- the partner within each niche-only pair, and within the morphology-only pair,

with a 15-NN cosine classifier (and, for class and niche, a logistic-regression probe)
fitted on the training cells of each seed's split and scored on its test cells, beside
the microenvironment view's central 24 px as raw pixels (what a microenvironment token
could know about the centre cell); then MAD's per-view tokens minus the single-view model of the
same view, paired over seeds. No training: it reads the saved embeddings.

Usage::

    python benchmarks/bench_view_information.py --workdir /tmp/mad_bench_science_fp32 \
        --n-cells 3000 --seeds 0 1 2 --out science_view_information
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_science as bs  # noqa: E402

RESULTS = HERE / "results"
FACTORS = [
    "morph_class",
    "niche",
    "niche_only_pairs",
    "morphology_only_pair",
    "morph_class_linear",
    "niche_linear",
]
WHAT = {
    "morph_class": "morphological class (4)",
    "niche": "niche (3)",
    "niche_only_pairs": "partner within a niche-only pair (mean of 3 pairs)",
    "morphology_only_pair": "partner within the morphology-only pair",
    "morph_class_linear": "morphological class (4), linear probe",
    "niche_linear": "niche (3), linear probe",
}
#: The microenvironment view's central pixels (the cell and its rim): what a
#: microenvironment token *could* know about the centre cell.
CENTRE_PIXELS = "microenvironment_centre_pixels"


def knn_score(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Accuracy on ``test`` of a 15-NN cosine classifier fitted on ``train``."""
    from sklearn.neighbors import KNeighborsClassifier

    if train.sum() < 15 or test.sum() == 0:
        return float("nan")
    clf = KNeighborsClassifier(n_neighbors=15, metric="cosine").fit(x[train], labels[train])
    return float((clf.predict(x[test]) == labels[test]).mean())


def linear_score(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Accuracy on ``test`` of an L2-regularised logistic regression on standardised ``x``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(labels[train])) < 2 or test.sum() == 0:
        return float("nan")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    return float(clf.fit(x[train], labels[train]).score(x[test], labels[test]))


def centre_pixels(store, *, side: int = 24, pooled: int = 12) -> np.ndarray:
    """The central ``side`` px of every microenvironment view, average-pooled to
    ``pooled`` x ``pooled`` per channel, flattened (float32)."""
    micro = np.asarray(store.microenvironment[:], dtype=np.float32)
    n, c = micro.shape[-1] // 2, side // 2
    crop = micro[..., n - c : n + c, n - c : n + c]
    f = side // pooled
    return (
        crop.reshape(len(micro), micro.shape[1], pooled, f, pooled, f)
        .mean((3, 5))
        .reshape(len(micro), -1)
    )


def factor_scores(x: np.ndarray, obs: pd.DataFrame, train: np.ndarray, test: np.ndarray):
    """``{factor: accuracy}`` of one embedding on one split."""
    from madspatial.datasets import MORPHOLOGY_ONLY_PAIRS, NICHE_ONLY_PAIRS

    ct = obs["cell_type"].astype(str).to_numpy()
    out = {f: knn_score(x, obs[f].astype(str).to_numpy(), train, test) for f in FACTORS[:2]}
    for f in FACTORS[:2]:
        out[f"{f}_linear"] = linear_score(x, obs[f].astype(str).to_numpy(), train, test)
    for name, pairs in (
        ("niche_only_pairs", NICHE_ONLY_PAIRS),
        ("morphology_only_pair", MORPHOLOGY_ONLY_PAIRS),
    ):
        accs = []
        for pair in pairs:
            inside = np.isin(ct, list(pair))
            accs.append(knn_score(x, ct, train & inside, test & inside))
        out[name] = float(np.nanmean(accs))
    return out


def embeddings(workdir: Path, seed: int, base: dict) -> dict[str, np.ndarray]:
    """Every embedding saved for one seed but the alpha sweep (``separate`` concatenated)."""
    reps: dict[str, np.ndarray] = {}
    for name, z in (
        (f.name[4 : -len(f"_seed{seed}.npz")], np.load(f))
        for f in sorted(workdir.glob(f"emb_*_seed{seed}.npz"))
    ):
        if name.startswith("MAD_alpha"):
            continue  # the alpha sweep: not scored here (bench_science has it)
        reps[name] = z["all"]
        for view in bs.TOKEN_VIEWS if bs.has_tokens(name) else ():
            if view in z.files:
                reps[bs.token_rep(name, view)] = z[view]
    for sep, (morph, micro) in bs.separate_parts(reps).items():
        reps[sep] = np.c_[reps[morph], reps[micro]]
    reps.update(base)
    return reps


def rep_order(names) -> list[str]:
    """``bench_science``'s column order; each extra recipe followed by its tokens."""
    out = []
    for run in [r for r in bs.REP_ORDER if r in names] + sorted(set(names) - set(bs.REP_ORDER)):
        if run in out or (bs.parse_token(run) and bs.parse_token(run)[0] != "MAD"):
            continue
        out.append(run)
        if run != "MAD" and bs.has_tokens(run):
            out += [t for v in bs.TOKEN_VIEWS if (t := bs.token_rep(run, v)) in names]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bs.add_work_folder_arguments(ap)
    ap.add_argument("--out", default="science_view_information")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    (_, store, table, _, splits), args.niche_imprint = bs.work_folder_setup(
        workdir, n_cells=args.n_cells, seeds=args.seeds, block_windows=args.block_windows
    )
    obs = table.obs
    handcrafted = dict(np.load(workdir / "baselines.npz")).get("handcrafted")
    pixels = centre_pixels(store)
    rows = []
    for seed in args.seeds:
        base = {"handcrafted": handcrafted} if handcrafted is not None else {}
        base[CENTRE_PIXELS] = pixels
        base["untrained_data"] = bs.bc.untrained_embed(
            store, seed=seed, pixel_stats="data", train_mask=bs.pretrain_mask(splits[seed])
        )
        reps = embeddings(workdir, seed, base)
        for sp in bs.SPLITS:
            lab = splits[seed][sp]
            train, test = lab == "train", lab == "test"
            for rep, x in reps.items():
                for f, v in factor_scores(np.asarray(x), obs, train, test).items():
                    rows.append(dict(seed=seed, split=sp, rep=rep, metric=f, value=v))
    df = pd.DataFrame(rows)
    write(df, args, workdir)


def write(df: pd.DataFrame, args, workdir: Path) -> None:
    """The tables (per split: factor x embedding; token minus control) as markdown + json."""
    imprint = getattr(args, "niche_imprint", 0.0)
    summary = bs.summarise(df)
    L = [
        "# What each embedding knows: the tissue's ground-truth factors, held-out cells",
        "",
        f"Embeddings of `{workdir}` (a `bench_science.py` run; {len(args.seeds)} seeds "
        f"{args.seeds}"
        + (f"; tissue with `niche_imprint={imprint:g}`" if imprint else "")
        + "); 15-NN cosine classifier (rows marked *linear probe*: logistic "
        "regression on standardised features) fitted on each split's training cells, "
        "accuracy on its test cells; mean over seeds [95% t-interval]. "
        f"`{CENTRE_PIXELS}`: the microenvironment view's central 24 px as raw pixels "
        "(pooled to 12 x 12 per channel), what a microenvironment token could know about "
        "the centre cell.",
        "",
        f"Command: `python benchmarks/bench_view_information.py {' '.join(sys.argv[1:])}`",
    ]
    reps = rep_order(set(df.rep))
    for sp in bs.SPLITS:
        L += ["", f"## `{sp}` split", "", "| factor | " + " | ".join(reps) + " |"]
        L.append("|---|" + "---:|" * len(reps))
        for f in FACTORS:
            sub = summary[(summary.split == sp) & (summary.metric == f)].set_index("rep")
            cells = [
                bs.fmt(sub.loc[r, "mean"], sub.loc[r, "lo"], sub.loc[r, "hi"])
                if r in sub.index
                else ""
                for r in reps
            ]
            L.append(f"| {WHAT[f]} | " + " | ".join(cells) + " |")
    pairs = []
    for t in [t for t in reps if bs.parse_token(t)]:
        run, view = bs.parse_token(t)
        pairs += [(t, c) for c in dict.fromkeys((view, bs.own_control(run, view, reps)))]
    for r in [r for r in reps if r.startswith("MAD") and not bs.parse_token(r)]:
        pairs += [(r, c) for c in dict.fromkeys(("separate", bs.own_control(r, "separate", reps)))]
    pairs = [(a, b) for a, b in pairs if b in reps]
    L += [
        "",
        "## Does distillation transfer what the other view knows? (paired over seeds)",
        "",
        "| split | factor | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |",
        "|---|---|" + "---:|" * len(pairs),
    ]
    claims = []
    for sp in bs.SPLITS:
        for f in FACTORS:
            cells = []
            for a, b in pairs:
                c = bs.paired(df, sp, f, a, b)
                claims.append(c)
                v = bs.fmt(c["diff"], c["lo"], c["hi"], sign=True)
                cells.append(f"**{v}**" if c["holds"] else v)
            L.append(f"| {sp} | {WHAT[f]} | " + " | ".join(cells) + " |")
    L += ["", "Bold: the interval excludes 0 in favour of the left-hand embedding."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text("\n".join(L) + "\n")
    payload = {"summary": summary.to_dict("records"), "claims": claims}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(payload, indent=1, default=float))
    print("\n".join(L))


if __name__ == "__main__":
    main()
