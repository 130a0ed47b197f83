"""The synthetic tissue: structure, determinism, and the ground truth it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.spatial import cKDTree

import madspatial as mad
from madspatial._constants import (
    CELL_LABELS_KEY,
    IMAGE_KEY,
    INSTANCE_KEY,
    LAYER_COUNTS,
    NUCLEUS_LABELS_KEY,
    OBS_AREA,
    OBS_CELL_TYPE,
    OBS_MORPH_CLASS,
    OBS_NICHE,
    OBS_SAMPLE,
    OBS_SLIDE,
    OBS_TRAJECTORY,
    OBS_TUMOUR_DISTANCE,
    OBSM_SPATIAL,
    REGION_KEY,
    TABLE_KEY,
    UNS_COLORS_SUFFIX,
    UNS_SYNTHETIC,
)
from madspatial.datasets import (
    CELL_TYPES,
    CHANNEL_NAMES,
    MORPH_CLASSES,
    NICHE_ONLY_PAIRS,
    NICHES,
    synthetic_tissue,
)
from madspatial.datasets import _tissue_spec as spec

# --- helpers --------------------------------------------------------------------------


def _arrays(sdata):
    return (
        np.asarray(sdata.images[IMAGE_KEY].values),
        np.asarray(sdata.labels[CELL_LABELS_KEY].values),
        np.asarray(sdata.labels[NUCLEUS_LABELS_KEY].values),
        sdata.tables[TABLE_KEY],
    )


def _flat_field_corrected(img: np.ndarray, lab: np.ndarray, block: int = 16) -> np.ndarray:
    """Divide each channel by its illumination, estimated from the cell-free background.

    Background = autofluorescence x illumination, so the smoothed mean of pixels at least
    6 px from any cell (camera offset removed; beyond the PSF tail) is the field up to a
    constant.
    """
    from scipy import ndimage as ndi

    free = ~ndi.binary_dilation(lab > 0, iterations=6)
    h, w = lab.shape
    hb, wb = -(-h // block), -(-w // block)
    pad = ((0, hb * block - h), (0, wb * block - w))
    m = np.pad(free, pad).reshape(hb, block, wb, block).astype(float)
    out = np.empty(img.shape, dtype=float)
    for ch in range(img.shape[0]):
        v = np.pad(img[ch].astype(float) - spec.CAMERA_OFFSET, pad).reshape(hb, block, wb, block)
        num = ndi.gaussian_filter((v * m).sum(axis=(1, 3)), 2.0)
        den = ndi.gaussian_filter(m.sum(axis=(1, 3)), 2.0)
        field = np.repeat(np.repeat(num / np.maximum(den, 1e-9), block, 0), block, 1)[:h, :w]
        out[ch] = (img[ch] - spec.CAMERA_OFFSET) / np.maximum(field, 1e-6)
    return out


def _features(sdata) -> pd.DataFrame:
    """Per-cell shape and intensity features from the labels (what the cell alone shows).

    Intensities are measured after flat-field correction, as MAD's preprocessing does.
    """
    from skimage.measure import regionprops_table

    img, lab, nuc, table = _arrays(sdata)
    inten = np.moveaxis(_flat_field_corrected(img, lab), 0, -1)
    cell = pd.DataFrame(
        regionprops_table(
            lab,
            intensity_image=inten,
            properties=("label", "area", "eccentricity", "solidity", "intensity_mean"),
        )
    ).set_index("label")
    nucl = pd.DataFrame(
        regionprops_table(
            nuc, intensity_image=inten, properties=("label", "area", "intensity_mean")
        )
    ).set_index("label")
    ids = table.obs[INSTANCE_KEY].to_numpy()
    out = cell.reindex(ids)
    out["nuc_area"] = nucl["area"].reindex(ids).to_numpy()
    out["nuc_dapi"] = nucl["intensity_mean-0"].reindex(ids).to_numpy()
    for ch, name in ((1, "membrane"), (2, "rna"), (3, "stroma")):
        out[f"mean_{name}"] = cell[f"intensity_mean-{ch}"].reindex(ids).to_numpy()
    out.index = table.obs.index
    h, w = lab.shape
    xy = table.obsm[OBSM_SPATIAL]
    out["border"] = (xy[:, 0] < 20) | (xy[:, 1] < 20) | (xy[:, 0] > w - 21) | (xy[:, 1] > h - 21)
    return out


def _neighbour_composition(table, k: int = 10) -> np.ndarray:
    """Share of each morphological class among the k nearest neighbours of every cell."""
    xy = table.obsm[OBSM_SPATIAL]
    _, nn = cKDTree(xy).query(xy, k + 1)
    cls = table.obs[OBS_MORPH_CLASS].cat.codes.to_numpy()[nn[:, 1:]]
    return np.stack([(cls == c).mean(axis=1) for c in range(len(MORPH_CLASSES))], axis=1)


@pytest.fixture(scope="module")
def medium():
    """Large enough for distribution tests (~2,500 cells), generated once for this module."""
    return synthetic_tissue(n_cells=2500, seed=7)


@pytest.fixture(scope="module")
def medium_features(medium):
    return _features(medium)


# --- structure ------------------------------------------------------------------------


def test_elements_shapes_dtypes_and_channel_names(tiny_tissue):
    img, lab, nuc, table = _arrays(tiny_tissue)
    side = table.uns[UNS_SYNTHETIC]["slide_shape"]
    assert img.dtype == np.uint16 and img.ndim == 3 and img.shape[0] == 4
    assert list(tiny_tissue.images[IMAGE_KEY].coords["c"].values) == list(CHANNEL_NAMES)
    # two slides side by side with a gap
    assert img.shape[1:] == (side[0], 2 * side[1] + spec.SLIDE_GAP_PX)
    assert lab.shape == nuc.shape == img.shape[1:]
    assert np.issubdtype(lab.dtype, np.integer) and np.issubdtype(nuc.dtype, np.integer)
    # the image is a noisy camera frame: offset, never saturated, real dynamic range
    assert img.min() > 0 and img.max() < np.iinfo(np.uint16).max
    assert np.percentile(img[0], 99.5) > 5 * np.median(img[0])

    attrs = table.uns["spatialdata_attrs"]
    assert attrs == {
        "region": CELL_LABELS_KEY,
        "region_key": REGION_KEY,
        "instance_key": INSTANCE_KEY,
    }
    assert table.n_obs == 400 and table.n_vars >= 100
    for key, cats in (
        (OBS_CELL_TYPE, CELL_TYPES),
        (OBS_MORPH_CLASS, MORPH_CLASSES),
        (OBS_NICHE, NICHES),
    ):
        assert list(table.obs[key].cat.categories) == list(cats)
        assert len(table.uns[key + UNS_COLORS_SUFFIX]) == len(cats)
    for key in (OBS_TRAJECTORY, OBS_TUMOUR_DISTANCE, OBS_AREA, OBS_SLIDE, OBS_SAMPLE):
        assert key in table.obs
    assert table.obsm[OBSM_SPATIAL].shape == (400, 2)
    assert sp.issparse(table.X) and table.X.dtype == np.float32
    x = table.X.toarray()
    assert np.all(x >= 0) and np.array_equal(x, np.round(x))
    assert (table.layers[LAYER_COUNTS] != table.X).nnz == 0
    assert x.sum(axis=1).min() > 0  # every cell has transcripts
    # real gene symbols: markers of every class are in the panel
    for gene in ("EPCAM", "KRT8", "MKI67", "TOP2A", "COL1A1", "ACTA2", "FAP", "PTPRC", "CD3E"):
        assert gene in table.var_names
    assert table.var_names.is_unique


def test_every_label_has_exactly_one_row_and_nuclei_sit_in_their_cell(tiny_tissue):
    _, lab, nuc, table = _arrays(tiny_tissue)
    ids = table.obs[INSTANCE_KEY].to_numpy()
    present = np.unique(lab)
    present = present[present > 0]
    assert len(ids) == len(set(ids))
    np.testing.assert_array_equal(np.sort(ids), present)
    assert table.obs_names.tolist() == [str(i) for i in ids]
    # area column is the pixel count of the label
    np.testing.assert_array_equal(table.obs[OBS_AREA].to_numpy(), np.bincount(lab.ravel())[ids])
    # a nucleus pixel carries its own cell's id, and nearly every cell has a nucleus
    inside = nuc > 0
    assert np.array_equal(nuc[inside], lab[inside])
    with_nucleus = np.isin(ids, np.unique(nuc[inside]))
    assert with_nucleus.mean() > 0.97
    # nuclei are one connected piece each
    from skimage.measure import label as cc

    n_pieces = len(np.unique(cc(nuc, background=0, connectivity=1))) - 1
    assert n_pieces == len(np.unique(nuc[inside]))


def test_cells_touch_and_are_cut_by_the_border(tiny_tissue):
    _, lab, _, _ = _arrays(tiny_tissue)
    # touching: many horizontally adjacent pixel pairs belong to two different cells
    a, b = lab[:, 1:], lab[:, :-1]
    assert np.sum((a > 0) & (b > 0) & (a != b)) > 200
    # cut by the border: cells reach the image edge
    edge_ids = np.unique(np.r_[lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    assert np.count_nonzero(edge_ids) > 10


def test_slides_and_samples(tiny_tissue):
    table = tiny_tissue.tables[TABLE_KEY]
    side = table.uns[UNS_SYNTHETIC]["slide_shape"][1]
    counts = table.obs[OBS_SLIDE].value_counts()
    assert counts.to_dict() == {"slide_0": 200, "slide_1": 200}
    x = table.obsm[OBSM_SPATIAL][:, 0]
    on_first = (table.obs[OBS_SLIDE] == "slide_0").to_numpy()
    assert x[on_first].max() < side <= x[~on_first].min()
    assert (table.obs[OBS_SAMPLE].cat.codes == table.obs[OBS_SLIDE].cat.codes).all()


# --- determinism ----------------------------------------------------------------------


def test_same_seed_same_arrays_other_seed_differs():
    a = synthetic_tissue(n_cells=150, seed=11)
    b = synthetic_tissue(n_cells=150, seed=11)
    c = synthetic_tissue(n_cells=150, seed=12)
    for x, y in zip(_arrays(a)[:3], _arrays(b)[:3]):
        np.testing.assert_array_equal(x, y)
    ta, tb, tc = (s.tables[TABLE_KEY] for s in (a, b, c))
    assert (ta.X != tb.X).nnz == 0
    pd.testing.assert_frame_equal(ta.obs, tb.obs)
    assert not np.array_equal(_arrays(a)[1], _arrays(c)[1])
    assert not np.array_equal(ta.obsm[OBSM_SPATIAL], tc.obsm[OBSM_SPATIAL])


def test_noise_changes_only_the_image():
    clean = synthetic_tissue(n_cells=150, seed=3, noise=0.0)
    noisy = synthetic_tissue(n_cells=150, seed=3, noise=2.0)
    ic, lc, nc, tc = _arrays(clean)
    i2, l2, n2, t2 = _arrays(noisy)
    np.testing.assert_array_equal(lc, l2)
    np.testing.assert_array_equal(nc, n2)
    assert (tc.X != t2.X).nnz == 0
    # the noisy frame scatters around the clean one (shot + read noise) without bias,
    # and its scatter grows with the signal (Poisson, not just additive Gaussian)
    resid = i2[0].astype(float) - ic[0].astype(float)
    assert abs(resid.mean()) < 0.02 * ic[0].mean()
    bright = ic[0] > np.percentile(ic[0], 95)
    dim = ic[0] < np.percentile(ic[0], 20)
    assert resid[dim].std() > 20  # read noise and shot noise of the background
    assert resid[bright].std() > 2 * resid[dim].std()


def test_niche_imprint_brightens_one_partner_of_each_niche_only_pair_and_nothing_else():
    from scipy import ndimage as ndi

    plain = synthetic_tissue(n_cells=300, seed=5, noise=0.0)
    marked = synthetic_tissue(n_cells=300, seed=5, noise=0.0, niche_imprint=1.0)
    ip, lp, np_, tp = _arrays(plain)
    im, lm, nm, tm = _arrays(marked)
    np.testing.assert_array_equal(lp, lm)  # same cells, shapes and positions
    np.testing.assert_array_equal(np_, nm)
    assert (tp.X != tm.X).nnz == 0  # same counts
    assert tm.uns["synthetic_tissue"]["niche_imprint"] == 1.0
    ids = tp.obs[INSTANCE_KEY].to_numpy()

    def cell_mean(img):  # above the camera offset, mean over channels
        return np.mean([ndi.mean(img[c].astype(float) - 100, lp, ids) for c in range(4)], 0)

    ratio = pd.Series(cell_mean(im) / cell_mean(ip)).groupby(tp.obs["cell_type"].to_numpy())
    ratio = ratio.median()
    for first, second in NICHE_ONLY_PAIRS:
        # the gain is 0.15; the blur spreads part of it outside the cell
        assert ratio[first] == pytest.approx(1.105, abs=0.055), first  # 1.05 .. 1.16
        assert abs(ratio[second] - 1) < 0.02, f"{second}: {ratio[second]:.3f}"
    assert abs(ratio["tumour_quiescent"] - 1) < 0.02
    for bad in (-0.1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="niche_imprint"):
            synthetic_tissue(n_cells=50, niche_imprint=bad)


def test_illumination_is_uneven_so_flat_field_correction_matters():
    img, lab, _, _ = _arrays(synthetic_tissue(n_cells=1000, seed=4, noise=0.0))
    offset = spec.CAMERA_OFFSET
    h, w = lab.shape
    for ch in range(img.shape[0]):
        bg = np.where(lab == 0, img[ch].astype(float) - offset, np.nan)
        # background (autofluorescence) per 4 x 4 block of the slide
        blocks = [
            np.nanmedian(bg[i * h // 4 : (i + 1) * h // 4, j * w // 4 : (j + 1) * w // 4])
            for i in range(4)
            for j in range(4)
        ]
        assert max(blocks) / min(blocks) > 1.25, f"channel {ch}: flat illumination"


def test_n_cells_is_exact_and_size_sets_the_image():
    sd = synthetic_tissue(n_cells=333, seed=1)
    assert sd.tables[TABLE_KEY].n_obs == 333
    sd = synthetic_tissue(n_cells=None, size=(180, 260), seed=1)
    assert sd.images[IMAGE_KEY].shape == (4, 180, 260)
    assert 80 < sd.tables[TABLE_KEY].n_obs < 140  # the default density: ~440 px^2 per cell


# --- ground truth -----------------------------------------------------------------------


def test_subtypes_live_in_their_niches_with_their_class(medium):
    obs = medium.tables[TABLE_KEY].obs
    counts = obs[OBS_CELL_TYPE].value_counts()
    assert set(counts.index) == set(CELL_TYPES) and counts.min() >= 60
    assert obs[OBS_NICHE].value_counts().min() >= 300
    for subtype, cls in spec.CELL_TYPE_CLASS.items():
        assert (obs.loc[obs[OBS_CELL_TYPE] == subtype, OBS_MORPH_CLASS] == cls).all()
    niche_of = obs.groupby(OBS_CELL_TYPE, observed=True)[OBS_NICHE].agg(lambda s: set(s))
    assert niche_of["CAF"] == {"tumour"} and niche_of["TAM"] == {"tumour"}
    assert niche_of["stromal_fibroblast"] <= {"stroma", "immune"}
    assert niche_of["stromal_macrophage"] <= {"stroma", "immune"}
    assert niche_of["B_cell"] == {"immune"}
    assert "immune" not in niche_of["T_cell"]
    assert niche_of["tumour_proliferative"] == niche_of["tumour_quiescent"] == {"tumour"}
    # class mix of each niche follows the specification
    mix = pd.crosstab(obs[OBS_NICHE], obs[OBS_MORPH_CLASS], normalize="index")
    expected = pd.DataFrame(spec.NICHE_CLASS_MIX, index=list(NICHES), columns=list(MORPH_CLASSES))
    assert np.abs(mix.reindex_like(expected).fillna(0) - expected).to_numpy().max() < 0.06


@pytest.mark.parametrize(("a", "b"), NICHE_ONLY_PAIRS)
def test_niche_only_pairs_look_alike_but_live_apart(medium, medium_features, a, b):
    table = medium.tables[TABLE_KEY]
    f = medium_features
    ct = table.obs[OBS_CELL_TYPE].to_numpy()
    in_a = (ct == a) & ~f["border"].to_numpy()
    in_b = (ct == b) & ~f["border"].to_numpy()
    # the cell alone: same shape distributions. 12 KS tests over the three pairs, so
    # each at 0.1 % (a 10 % shift in area gives p < 1e-6 at these sample sizes) ...
    for col in ("area", "eccentricity", "solidity", "nuc_area"):
        p = stats.ks_2samp(f.loc[in_a, col].dropna(), f.loc[in_b, col].dropna()).pvalue
        assert p > 1e-3, f"{a} vs {b} differ in {col} (KS p = {p:.2g})"
    # ... and the same stain levels once illumination is corrected. On 20,000 cells the
    # medians agree within 3.5 % (neighbour light reaching a rim through the PSF); with a
    # few hundred cells per subtype the sampling error of a median ratio is ~3 %.
    for col in ("nuc_dapi", "mean_membrane", "mean_rna", "mean_stroma"):
        ratio = f.loc[in_a, col].median() / f.loc[in_b, col].median()
        assert abs(ratio - 1) < 0.1, f"{a} vs {b}: median {col} ratio {ratio:.3f}"
    # ... but different neighbourhoods
    comp = _neighbour_composition(table)
    diff = np.abs(comp[in_a].mean(axis=0) - comp[in_b].mean(axis=0))
    assert diff.max() > 0.3, f"{a} vs {b}: neighbourhoods too similar ({diff.round(2)})"
    col = int(np.argmax(diff))
    assert stats.mannwhitneyu(comp[in_a, col], comp[in_b, col]).pvalue < 1e-10


def test_morphology_only_pair_differs_in_the_nucleus_not_the_neighbourhood(medium, medium_features):
    table = medium.tables[TABLE_KEY]
    f = medium_features
    ct = table.obs[OBS_CELL_TYPE].to_numpy()
    pro = (ct == "tumour_proliferative") & ~f["border"].to_numpy()
    qui = (ct == "tumour_quiescent") & ~f["border"].to_numpy()
    assert f.loc[pro, "nuc_area"].median() > 1.3 * f.loc[qui, "nuc_area"].median()
    assert f.loc[pro, "nuc_dapi"].median() > 1.2 * f.loc[qui, "nuc_dapi"].median()
    nuc_pro, nuc_qui = f.loc[pro, "nuc_area"].dropna(), f.loc[qui, "nuc_area"].dropna()
    assert stats.mannwhitneyu(nuc_pro, nuc_qui).pvalue < 1e-20
    comp = _neighbour_composition(table)
    assert np.abs(comp[pro].mean(axis=0) - comp[qui].mean(axis=0)).max() < 0.05


def test_trajectory_rises_towards_the_nests_in_morphology_and_expression(medium, medium_features):
    table = medium.tables[TABLE_KEY]
    traj = table.obs[OBS_TRAJECTORY].to_numpy()
    on = ~np.isnan(traj)
    np.testing.assert_array_equal(on, (table.obs[OBS_CELL_TYPE] == "stromal_fibroblast").to_numpy())
    assert np.all((traj[on] >= 0) & (traj[on] <= 1)) and np.ptp(traj[on]) > 0.8
    dist = table.obs[OBS_TUMOUR_DISTANCE].to_numpy()[on]
    assert np.all(dist >= 0)  # stromal fibroblasts lie outside the nests
    assert stats.spearmanr(traj[on], dist).statistic < -0.85
    ecc = medium_features["eccentricity"].to_numpy()[on]
    assert stats.spearmanr(traj[on], ecc).statistic > 0.6
    genes = mad.datasets.synthetic_gene_sets()["MYOFIBROBLAST_ACTIVATION"]
    x = table[:, genes].X.toarray().sum(axis=1) / table.X.toarray().sum(axis=1)
    assert stats.spearmanr(traj[on], x[on]).statistic > 0.5


def test_planted_programs_are_up_where_the_gene_sets_say(medium):
    table = medium.tables[TABLE_KEY]
    x = table.X.toarray()
    x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4)
    obs = table.obs
    sets = mad.datasets.synthetic_gene_sets()
    marks = {
        "EPITHELIAL": (OBS_MORPH_CLASS, "epithelial"),
        "FIBROBLAST": (OBS_MORPH_CLASS, "fibroblast"),
        "MACROPHAGE": (OBS_MORPH_CLASS, "macrophage"),
        "LYMPHOCYTE": (OBS_MORPH_CLASS, "lymphocyte"),
        "PROLIFERATION": (OBS_CELL_TYPE, "tumour_proliferative"),
        "TUMOUR_DIFFERENTIATION": (OBS_CELL_TYPE, "tumour_quiescent"),
        "CAF": (OBS_CELL_TYPE, "CAF"),
        "STROMAL_FIBROBLAST": (OBS_CELL_TYPE, "stromal_fibroblast"),
        "TAM": (OBS_CELL_TYPE, "TAM"),
        "RESIDENT_MACROPHAGE": (OBS_CELL_TYPE, "stromal_macrophage"),
        "T_CELL": (OBS_CELL_TYPE, "T_cell"),
        "B_CELL": (OBS_CELL_TYPE, "B_cell"),
        "NICHE_TUMOUR_HYPOXIA": (OBS_NICHE, "tumour"),
        "NICHE_STROMA_TGFB": (OBS_NICHE, "stroma"),
        "NICHE_IMMUNE_CHEMOKINE": (OBS_NICHE, "immune"),
    }
    assert set(marks) | {"MYOFIBROBLAST_ACTIVATION"} == set(sets)
    for name, (key, value) in marks.items():
        cols = table.var_names.get_indexer(sets[name])
        score = x[:, cols].mean(axis=1)
        groups = pd.Series(score).groupby(obs[key].to_numpy(), observed=True).mean()
        assert groups.idxmax() == value, f"{name} peaks in {groups.idxmax()}, not {value}"
        assert groups[value] > groups.drop(value).max() + 0.5
    # niche programs are expressed by every class in the niche: context, not identity
    hyp = x[:, table.var_names.get_indexer(sets["NICHE_TUMOUR_HYPOXIA"])].mean(axis=1)
    for cls in ("fibroblast", "macrophage", "lymphocyte"):
        is_cls = (obs[OBS_MORPH_CLASS] == cls).to_numpy()
        nest = (obs[OBS_NICHE] == "tumour").to_numpy()
        assert hyp[is_cls & nest].mean() > hyp[is_cls & ~nest].mean() + 0.3


def test_library_size_grows_with_cell_area(medium):
    table = medium.tables[TABLE_KEY]
    total = np.asarray(table.X.sum(axis=1)).ravel()
    assert stats.spearmanr(total, table.obs[OBS_AREA]).statistic > 0.4


# --- persistence and arguments -------------------------------------------------------


def test_zarr_round_trip_keeps_everything(tiny_tissue, tmp_path):
    import spatialdata

    path = tmp_path / "tissue.zarr"
    tiny_tissue.write(path)
    back = spatialdata.read_zarr(path)
    for x, y in zip(_arrays(tiny_tissue)[:3], _arrays(back)[:3]):
        np.testing.assert_array_equal(x, y)
    assert list(back.images[IMAGE_KEY].coords["c"].values) == list(CHANNEL_NAMES)
    a, b = tiny_tissue.tables[TABLE_KEY], back.tables[TABLE_KEY]
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert (sp.csr_matrix(a.X) != sp.csr_matrix(b.X)).nnz == 0
    assert (sp.csr_matrix(a.layers[LAYER_COUNTS]) != sp.csr_matrix(b.layers[LAYER_COUNTS])).nnz == 0
    assert a.var_names.equals(b.var_names)
    np.testing.assert_array_equal(a.obsm[OBSM_SPATIAL], b.obsm[OBSM_SPATIAL])
    for key in (OBS_CELL_TYPE, OBS_NICHE, OBS_MORPH_CLASS):
        assert list(b.uns[key + UNS_COLORS_SUFFIX]) == list(a.uns[key + UNS_COLORS_SUFFIX])
    assert b.uns[UNS_SYNTHETIC]["seed"] == a.uns[UNS_SYNTHETIC]["seed"]
    assert b.uns["spatialdata_attrs"]["region"] == CELL_LABELS_KEY
    assert set(back.coordinate_systems) == set(tiny_tissue.coordinate_systems)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_cells": 10}, ValueError, "n_cells must be >= 50"),
        ({"n_cells": 120, "n_slides": 3}, ValueError, "n_cells must be >= 150"),
        ({"n_cells": 1000.0}, TypeError, "n_cells must be an integer"),
        ({"n_cells": None}, ValueError, "give n_cells, size, or both"),
        ({"n_cells": 5000, "size": 200}, ValueError, "do not fit on a 200 x 200"),
        ({"size": 32}, ValueError, "at least 64 px"),
        ({"size": (100,)}, TypeError, "size must be an int or a"),
        ({"noise": -1.0}, ValueError, "noise must be a finite number >= 0"),
        ({"noise": float("nan")}, ValueError, "noise"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"seed": None}, TypeError, "seed must be an integer"),
        ({"n_slides": 0}, ValueError, "n_slides must be >= 1"),
        ({"n_genes": 20}, ValueError, "n_genes must be between"),
        ({"n_genes": 10_000}, ValueError, "n_genes must be between"),
        ({"dispersion": 0}, ValueError, "dispersion must be > 0"),
        ({"pixel_size": -0.5}, ValueError, "pixel_size must be > 0"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        synthetic_tissue(**kwargs)


def test_n_genes_keeps_the_program_genes():
    sd = synthetic_tissue(n_cells=60, seed=2, n_genes=140)
    var = sd.tables[TABLE_KEY].var_names
    assert len(var) == 140
    assert all(g in var for genes in mad.datasets.synthetic_gene_sets().values() for g in genes)
