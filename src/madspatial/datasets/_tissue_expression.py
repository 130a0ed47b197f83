"""Counts: negative-binomial noise around class, subtype, niche and trajectory programs.

For cell ``i`` and gene ``g``::

    log r_ig = base_g + sum_p  w_ip * L_pg          (L_pg > 0 only for genes of program p)
    mu_ig    = depth_i * r_ig / sum_g r_ig           (composition times library size)
    x_ig     ~ Poisson(Gamma(shape=theta, scale=mu_ig / theta))   (NB, variance mu + mu^2/theta)

Program activities ``w_ip``: 1 for the cell's class and subtype programs; its
activation for MYOFIBROBLAST_ACTIVATION (fibroblasts); for the niche programs
0.6 in the cell's niche (the tumour-nest hypoxia program rises from 0.3 at the
nest edge to 1.0 deep inside). Library size grows with the cell's area in the
image (``depth ~ area^0.8``), so expression also carries cell size.
"""

from __future__ import annotations

import numpy as np

from . import _tissue_spec as S
from ._gene_sets import ABSENT_CELL_TYPE_GENES, HOUSEKEEPING_GENES, synthetic_gene_sets

# Which program each subtype / class / niche switches on (names of .gmt sets).
_CLASS_PROGRAM = {
    S.EPI: "EPITHELIAL",
    S.FIB: "FIBROBLAST",
    S.LYM: "LYMPHOCYTE",
    S.MAC: "MACROPHAGE",
}
_SUBTYPE_PROGRAM = {
    S.PROLIFERATIVE: "PROLIFERATION",
    S.QUIESCENT: "TUMOUR_DIFFERENTIATION",
    S.CAF: "CAF",
    S.STROMAL_FIBROBLAST: "STROMAL_FIBROBLAST",
    S.TAM: "TAM",
    S.STROMAL_MACROPHAGE: "RESIDENT_MACROPHAGE",
    S.T_CELL: "T_CELL",
    S.B_CELL: "B_CELL",
}
_NICHE_PROGRAM = {
    S.TUMOUR: "NICHE_TUMOUR_HYPOXIA",
    S.STROMA: "NICHE_STROMA_TGFB",
    S.IMMUNE: "NICHE_IMMUNE_CHEMOKINE",
}
TRAJECTORY_PROGRAM = "MYOFIBROBLAST_ACTIVATION"
NICHE_WEIGHT = 0.6


def program_activities(
    morph_class: np.ndarray,
    cell_type: np.ndarray,
    niche: np.ndarray,
    activation: np.ndarray,
    nest_depth: np.ndarray,
) -> dict[str, np.ndarray]:
    """``{program: (n,) activity}`` for every program in the .gmt."""
    n = len(cell_type)
    w: dict[str, np.ndarray] = {name: np.zeros(n) for name in synthetic_gene_sets()}
    for k, name in _CLASS_PROGRAM.items():
        w[name][morph_class == k] = 1.0
    for k, name in _SUBTYPE_PROGRAM.items():
        w[name][cell_type == k] = 1.0
    for k, name in _NICHE_PROGRAM.items():
        w[name][niche == k] = NICHE_WEIGHT
    # Hypoxia deepens towards the middle of a nest.
    nest = niche == S.TUMOUR
    w["NICHE_TUMOUR_HYPOXIA"][nest] = 0.3 + 0.7 * np.clip(nest_depth[nest] / 40.0, 0, 1)
    w[TRAJECTORY_PROGRAM] = np.nan_to_num(activation, nan=0.0)
    return w


def simulate_counts(
    rng: np.random.Generator,
    genes: list[str],
    activities: dict[str, np.ndarray],
    area: np.ndarray,
    *,
    dispersion: float,
) -> np.ndarray:
    """(n_cells, n_genes) float32 counts."""
    n, g = len(area), len(genes)
    col = {gene: j for j, gene in enumerate(genes)}
    # Gene baselines are a fixed property of the panel, not of the seed: derive them
    # from a fixed stream so two seeds share one "biology" and differ in the cells.
    panel_rng = np.random.default_rng(20_240_601)
    base = panel_rng.normal(-1.0, 0.3, g)
    for gene in HOUSEKEEPING_GENES:
        if gene in col:
            base[col[gene]] = panel_rng.uniform(1.5, 2.5)
    for gene in ABSENT_CELL_TYPE_GENES:
        if gene in col:
            base[col[gene]] = panel_rng.uniform(-2.0, -1.0)
    logr = np.broadcast_to(base, (n, g)).astype(np.float64).copy()
    for name, genes_p in synthetic_gene_sets().items():
        j = np.array([col[x] for x in genes_p if x in col], dtype=int)
        if j.size == 0:
            continue
        lfc = panel_rng.uniform(2.2, 3.4, j.size)  # 9x-30x when fully on
        act = activities[name]
        on = act > 0
        logr[np.ix_(on, j)] += act[on, None] * lfc
    r = np.exp(logr - logr.max(axis=1, keepdims=True))
    r /= r.sum(axis=1, keepdims=True)
    med = np.median(area[area > 0]) if np.any(area > 0) else 1.0
    depth = S.MEAN_COUNTS * (np.maximum(area, 1.0) / med) ** 0.8 * np.exp(rng.normal(0, 0.25, n))
    mu = r * depth[:, None]
    lam = rng.gamma(dispersion, mu / dispersion)
    return rng.poisson(lam).astype(np.float32)
