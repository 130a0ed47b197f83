"""Smoke tests of the science benchmark's building blocks (benchmarks/bench_science.py).

No pretraining here (the benchmark's ``--quick`` run covers it end to end): the
baselines on the shared tiny tissue, and the scoring helpers on hand-made inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import _science_baselines
        import bench_science

        yield bench_science, _science_baselines
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def tissue_with_views(tiny_tissue):
    import spatialdata

    import madspatial as mad

    sdata = spatialdata.deepcopy(tiny_tissue)
    mad.pp.normalize(sdata, image_key="morphology")
    mad.pp.cell_views(
        sdata,
        image_key="morphology_normalized",
        labels_key="cell_labels",
        morphology_size=28,
        microenvironment_size=56,
    )
    return sdata, mad.io.read_views(sdata)


def test_baselines_shapes_and_balance(bench, tissue_with_views):
    bs, _ = bench
    sdata, store = tissue_with_views
    n = sdata.tables["table"].n_obs
    emb = bs.baseline_embeddings(
        sdata, store, seed=0, n_neighbors=10, n_morph_clusters=4, n_components=8
    )
    assert emb["pixel_pca"].shape == (n, 16)
    hand = emb["handcrafted"]
    # own features (7 shape + 4 means + 4 sds + nuclear fraction + 4 nuclear means = 20),
    # 4 composition columns, 20 neighbour means
    assert hand.shape == (n, 44)
    for x in emb.values():
        assert np.isfinite(x).all() and x.dtype == np.float32
    # each block carries total variance 1 (z-scored columns scaled by 1/sqrt(width))
    own, comp = hand[:, :20], hand[:, 20:24]
    assert own.var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    assert comp.var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    # lymphocytes are the smallest class: the area feature must reflect that
    obs = sdata.tables["table"].obs
    lym = (obs["morph_class"] == "lymphocyte").to_numpy()
    assert own[lym, 0].mean() < own[~lym, 0].mean()


def test_cell_features_on_hand_made_labels(bench):
    _, base = bench
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[2:6, 2:6] = 7  # 16 px square
    labels[10:18, 10:12] = 3  # 8 x 2 bar
    nuclei = np.where(labels == 7, 0, labels)
    nuclei[3:5, 3:5] = 7  # 4 of the 16 px
    image = np.zeros((2, 20, 20), dtype=np.float32)
    image[0][labels == 7] = 0.5
    image[1][labels == 3] = 1.0
    feats, names = base.cell_features(image, labels, np.array([3, 7, 99]), nuclei)
    f = pd.DataFrame(feats, columns=names, index=[3, 7, 99])
    assert f.loc[7, "area"] == 16 and f.loc[3, "area"] == 16
    assert f.loc[7, "nuclear_fraction"] == pytest.approx(0.25)
    assert f.loc[3, "nuclear_fraction"] == pytest.approx(1.0)
    assert f.loc[7, "mean_c0"] == pytest.approx(0.5) and f.loc[3, "mean_c1"] == pytest.approx(1.0)
    assert f.loc[3, "eccentricity"] > f.loc[7, "eccentricity"]
    assert np.isnan(f.loc[99]).all()  # absent from the labels


def test_summary_helpers(bench):
    bs, _ = bench
    m, lo, hi = bs.t_interval(np.array([1.0, 2.0, 3.0]))
    # t(0.975, 2) = 4.303; sd = 1; half width 4.303 / sqrt(3)
    assert m == 2.0 and hi - m == pytest.approx(4.3027 / np.sqrt(3), rel=1e-3)
    assert m - lo == pytest.approx(hi - m)
    rows = pd.DataFrame(
        dict(
            rep=["MAD"] * 3 + ["morphology"] * 3,
            metric="louvain_ari",
            seed=[0, 1, 2] * 2,
            value=[0.5, 0.6, 0.7, 0.4, 0.65, 0.5],
        )
    )
    d = bs.paired_difference(rows, "louvain_ari", "MAD", "morphology")
    assert d["diff"] == pytest.approx(np.mean([0.1, -0.05, 0.2])) and d["wins"] == 2
    summary = bs.summarise(rows.assign(ci_low=np.nan, ci_high=np.nan))
    assert summary.set_index("rep").loc["MAD", "mean"] == pytest.approx(0.6)
    per_gene = pd.DataFrame(
        dict(
            rep=["a", "b"] * 3,
            gene=["g1", "g1", "g2", "g2", "g3", "g3"],
            pearson=[0.9, 0.1, 0.2, 0.8, 0.7, 0.6],
            seed=0,
        )
    )
    share = bs.share_best(per_gene, ["a", "b"])
    assert share["a"] == pytest.approx(2 / 3) and share["n_genes"] == 3


def test_de_agreement_perfect_prediction(bench, tiny_tissue):
    """Predicting the measured log-normalized expression exactly gives r = 1, full top-20
    overlap, and the planted programs are found as often as on measured expression."""
    bs, _ = bench
    import madspatial as mad
    from madspatial.tl._inputs import get_expression

    table = tiny_tissue.tables["table"]
    adata = bs.scratch_adata(table, {})
    Y, _, _ = get_expression(adata, normalize="auto")
    summary, df = bs.de_agreement(adata, Y, gene_sets=mad.datasets.synthetic_gene_sets())
    assert len(df) == 8
    assert summary["de_log2fc_r"] == pytest.approx(1.0, abs=1e-6)
    assert summary["de_top20_overlap"] == 1.0
    assert (df["enriched_pred"] == df["enriched_meas"]).all()
    assert summary["enrich_program_recovered"] >= 6  # planted programs are strong
    assert "mad_pred" not in adata.layers  # scratch layer cleaned up
