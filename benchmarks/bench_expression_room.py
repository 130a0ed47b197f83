"""Where an embedding's expression prediction falls short of the tissue's own variables.

``bench_science.py`` scores an expression ceiling: the HEST ridge fed the variables the
synthetic tissue draws its counts from (``_science_baselines.ground_truth_features``).
This script splits the room between an embedding and that ceiling by factor: for each
embedding of a ``bench_science.py`` work folder it scores the HEST ridge on the
embedding alone and on the embedding with one ground-truth factor appended (the four
classes; each subtype pair; the three niche programs; fibroblast activation; area). What
a factor adds is what the embedding does not already hold of it, in units of expression
r. Paired over seeds, on held-out random cells and spatial blocks. No training: it reads
the saved embeddings.

Usage::

    python benchmarks/bench_expression_room.py --workdir /tmp/mad_sci_1k \
        --n-cells 3000 --seeds 0 1 2 3 4 --out science_1000steps_transfer_expression_room
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
import bench_view_information as bvi  # noqa: E402
from _science_baselines import _zscore_block, ground_truth_activities  # noqa: E402

RESULTS = HERE / "results"
#: Ground-truth factors, each a block of program activities (or log area); the pairs are
#: the tissue's subtype pairs, named by the evidence that tells them apart.
FACTORS: dict[str, tuple[str, ...]] = {
    "classes": ("EPITHELIAL", "FIBROBLAST", "LYMPHOCYTE", "MACROPHAGE"),
    "tumour pair (morphology-only)": ("PROLIFERATION", "TUMOUR_DIFFERENTIATION"),
    "fibroblast pair (niche-only)": ("CAF", "STROMAL_FIBROBLAST"),
    "macrophage pair (niche-only)": ("TAM", "RESIDENT_MACROPHAGE"),
    "lymphocyte pair (niche-only)": ("T_CELL", "B_CELL"),
    "niche programs": ("NICHE_TUMOUR_HYPOXIA", "NICHE_STROMA_TGFB", "NICHE_IMMUNE_CHEMOKINE"),
    "fibroblast activation": ("MYOFIBROBLAST_ACTIVATION",),
    "area": (),
}
#: A factor is appended at this weight: its block (total variance 1) then carries as much
#: variance as an embedding of a few hundred standardised columns, so the ridge's PCA keeps it.
FACTOR_WEIGHT = 3.0


def factor_blocks(obs: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{factor: (n, k) balanced block}`` of the tissue's ground truth."""
    w = ground_truth_activities(obs)
    missing = {p for programs in FACTORS.values() for p in programs} - set(w)
    if missing:
        raise KeyError(f"the count model has no program(s) {sorted(missing)}")
    out = {}
    for name, programs in FACTORS.items():
        if programs:
            x = np.stack([w[p] for p in programs], axis=1)
        else:
            x = np.log(np.maximum(obs["area"].to_numpy(dtype=float), 1.0))[:, None]
        out[name] = _zscore_block(x)
    return out


#: The reading of a perfect eye: the ground truth an image of the cell and of its
#: ``WINDOW_NEIGHBOURS`` nearest neighbours shows (no niche label, no niche program).
WINDOW_TRUTH = "window_truth"
WINDOW_NEIGHBOURS = 25


def window_truth(obs: pd.DataFrame, spatial: np.ndarray, k: int = WINDOW_NEIGHBOURS) -> np.ndarray:
    """What the two views could show at best, as ground truth: the cell's morphological
    class, its tumour subtype (the morphology-only pair) and log area, then the class
    composition of its ``k`` nearest cells (the microenvironment view holds ~20-30).

    The niche-only subtypes, the niche programs and the activation are left out: an image
    shows them only through this composition (the tissue's background is the same in
    every niche), so an embedding above this reading has learned more than class counts.
    """
    from sklearn.neighbors import NearestNeighbors

    cls = pd.get_dummies(obs["morph_class"].astype(str)).to_numpy(dtype=float)
    tumour = pd.get_dummies(obs["cell_type"].astype(str)).reindex(
        columns=["tumour_proliferative", "tumour_quiescent"], fill_value=0
    )
    area = np.log(np.maximum(obs["area"].to_numpy(dtype=float), 1.0))
    own = _zscore_block(np.c_[cls, tumour.to_numpy(dtype=float), area])
    k = min(k, len(obs) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(spatial).kneighbors(spatial)[1][:, 1:]
    return np.c_[own, FACTOR_WEIGHT * _zscore_block(cls[idx].mean(axis=1))].astype(np.float32)


def with_factors(reps: dict, blocks: dict) -> dict[str, np.ndarray]:
    """Each embedding alone and with each factor appended (``"<rep> + <factor>"``)."""
    out = {}
    for rep, x in reps.items():
        out[rep] = np.asarray(x, dtype=np.float32)
        for f, b in blocks.items():
            out[f"{rep} + {f}"] = np.c_[out[rep], FACTOR_WEIGHT * b].astype(np.float32)
    return out


def default_reps(names) -> list[str]:
    """The concatenated embeddings and the non-learned baselines (no tokens, no sweep)."""
    keep = [r for r in bs.REP_ORDER if r in names and bs.parse_token(r) is None]
    keep += sorted(r for r in names if r.startswith("MAD_") and r not in keep)
    keep = [r for r in keep if not r.startswith("MAD_alpha") and bs.parse_token(r) is None]
    return [r for r in keep if r not in ("morphology", "microenvironment", "untrained_fixed")]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bs.add_work_folder_arguments(ap)
    ap.add_argument("--reps", nargs="*", default=None, help="embeddings (default: all runs)")
    ap.add_argument("--out", default="science_expression_room")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    (_, _, table, _, splits), args.niche_imprint = bs.work_folder_setup(
        workdir, n_cells=args.n_cells, seeds=args.seeds, block_windows=args.block_windows
    )
    blocks = factor_blocks(table.obs)
    window = window_truth(table.obs, table.obsm["spatial"])
    handcrafted = dict(np.load(workdir / "baselines.npz")).get("handcrafted")
    rows = []
    for seed in args.seeds:
        base = {"handcrafted": handcrafted} if handcrafted is not None else {}
        reps = bvi.embeddings(workdir, seed, base)
        chosen = args.reps or default_reps(reps)
        unknown = sorted(set(chosen) - set(reps))
        if unknown:
            raise SystemExit(f"no embedding(s) {unknown} in {workdir} for seed {seed}")
        scored = with_factors({r: reps[r] for r in chosen}, blocks)
        scored[bs.CEILING] = np.concatenate(list(blocks.values()), axis=1)
        scored[WINDOW_TRUTH] = window

        for sp in bs.SPLITS:
            ev = bs.score_split(args, table, scored, splits[seed][sp], seed, metrics=["hest"])
            ev["split"] = sp
            rows.append(ev)
        print(f"seed {seed}: {len(scored)} embeddings scored", flush=True)
    write(pd.concat(rows, ignore_index=True), args, workdir)


def write(df: pd.DataFrame, args, workdir: Path) -> None:
    """Per split: each embedding's r, the ceiling's, and what each factor adds."""
    df = df[df.metric == "hest_pearson"]
    summary = bs.summarise(df).set_index(["split", "rep"])
    refs = (bs.CEILING, WINDOW_TRUTH)
    reps = [r for r in dict.fromkeys(df.rep) if " + " not in r and r not in refs]
    imprint = getattr(args, "niche_imprint", 0.0)
    L = [
        "# Where expression r falls short of the tissue's own variables",
        "",
        f"Embeddings of `{workdir}` (a `bench_science.py` run; {len(args.seeds)} seeds "
        f"{args.seeds}" + (f"; tissue with `niche_imprint={imprint:g}`" if imprint else "") + "). "
        "HEST ridge (standardise, PCA 256, ridge, Pearson r over the 50 most variable genes) "
        "on held-out cells; each cell: what appending one ground-truth factor to the "
        f"embedding adds to r (weight {FACTOR_WEIGHT:g}), paired over seeds, mean [95% "
        f"t-interval]; bold: the interval excludes 0. `{bs.CEILING}`: every factor "
        f"together, no embedding. `{WINDOW_TRUTH}`: what a perfect eye reads from the two "
        "views, as ground truth: the cell's class, tumour subtype and log area, and the "
        f"class composition of its {WINDOW_NEIGHBOURS} nearest cells (no niche label; the "
        "tissue's background is the same in every niche).",
        "",
        f"Command: `python benchmarks/bench_expression_room.py {' '.join(sys.argv[1:])}`",
    ]
    claims = []
    for sp in bs.SPLITS:
        top = summary.loc[(sp, bs.CEILING)]
        eye = summary.loc[(sp, WINDOW_TRUTH)]
        L += [
            "",
            f"## `{sp}` split (ceiling r {bs.fmt(top['mean'], top['lo'], top['hi'])}; "
            f"`{WINDOW_TRUTH}` r {bs.fmt(eye['mean'], eye['lo'], eye['hi'])})",
            "",
            "| factor appended | " + " | ".join(reps) + " |",
            "|---|" + "---:|" * len(reps),
            "| (none: the embedding's r) | "
            + " | ".join(
                bs.fmt(
                    summary.loc[(sp, r), "mean"],
                    summary.loc[(sp, r), "lo"],
                    summary.loc[(sp, r), "hi"],
                )
                for r in reps
            )
            + " |",
        ]
        for f in FACTORS:
            cells = []
            for r in reps:
                c = bs.paired(df, sp, "hest_pearson", f"{r} + {f}", r)
                c["factor"] = f
                claims.append(c)
                v = bs.fmt(c["diff"], c["lo"], c["hi"], sign=True)
                cells.append(f"**{v}**" if c["holds"] else v)
            L.append(f"| + {f} | " + " | ".join(cells) + " |")
        for ref, what in ((bs.CEILING, "ceiling"), (WINDOW_TRUTH, f"`{WINDOW_TRUTH}`")):
            room = [bs.paired(df, sp, "hest_pearson", ref, r) for r in reps]
            L.append(
                f"| room left ({what} - embedding) | "
                + " | ".join(bs.fmt(c["diff"], c["lo"], c["hi"], sign=True) for c in room)
                + " |"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.md").write_text("\n".join(L) + "\n")
    payload = {"summary": bs.summarise(df).to_dict("records"), "claims": claims}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(payload, indent=1, default=float))
    print("\n".join(L))


if __name__ == "__main__":
    main()
