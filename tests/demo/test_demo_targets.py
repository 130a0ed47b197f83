"""What the demo shows of the synthetic tissue is declared with its ground truth and true
of the generated data."""

from __future__ import annotations

import numpy as np

from madspatial import datasets
from madspatial._constants import OBS_CELL_TYPE, OBS_TRAJECTORY


def test_showcase_genes_are_in_the_panel_and_planted(tiny_tissue):
    adata = tiny_tissue.tables["table"]
    assert list(datasets.SHOWCASE_GENES) == ["MKI67", "FAP", "MS4A1", "ACTA2"]
    assert set(datasets.SHOWCASE_GENES) <= set(adata.var_names)
    # each planted gene is higher in the subtype it marks than in its designed partner
    counts = adata.layers["counts"]
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    types = adata.obs[OBS_CELL_TYPE].astype(str).to_numpy()
    for gene, (hi, lo) in {
        "MKI67": ("tumour_proliferative", "tumour_quiescent"),
        "FAP": datasets.DE_CONTRAST,
        "MS4A1": ("B_cell", "T_cell"),
    }.items():
        g = counts[:, list(adata.var_names).index(gene)]
        assert g[types == hi].mean() > 2 * g[types == lo].mean(), gene


def test_de_contrast_is_a_niche_only_pair():
    assert datasets.DE_CONTRAST in datasets.NICHE_ONLY_PAIRS
    assert set(datasets.DE_CONTRAST) <= set(datasets.CELL_TYPES)


def test_only_the_trajectory_cell_type_has_a_trajectory(tiny_tissue):
    obs = tiny_tissue.tables["table"].obs
    has = np.isfinite(obs[OBS_TRAJECTORY].to_numpy(float))
    assert has.sum() >= 20
    assert set(obs.loc[has, OBS_CELL_TYPE].astype(str)) == {datasets.TRAJECTORY_CELL_TYPE}
