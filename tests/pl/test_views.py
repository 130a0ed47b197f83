from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.pl._utils import composite


def test_cell_views_rows_and_ids(view_store):
    store = view_store
    axes = mad.pl.cell_views(store, cells=[4, 1], show=False)
    assert axes.shape == (2, 2)
    # rows read in sorted order, drawn in the order asked
    np.testing.assert_array_equal(store.calls[-1], [1, 4])
    shown = axes[0, 0].get_images()[0].get_array()
    np.testing.assert_allclose(shown, composite(store.morphology[4]))
    np.testing.assert_allclose(
        axes[0, 1].get_images()[0].get_array(), composite(store.microenvironment[4])
    )
    assert axes[0, 0].get_title() == "morphology"
    assert axes[0, 1].get_title() == "microenvironment"
    fig = axes[0, 0].get_figure(root=True)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["DAPI", "PanCK"]
    assert axes[0, 0].get_figure(root=False).get_suptitle() == "row 4 (id 105)"

    axes = mad.pl.cell_views(store, cells=[102], id_type="instance_id", stretch=False, show=False)
    np.testing.assert_allclose(
        axes[0, 0].get_images()[0].get_array(), composite(store.morphology[1], limits=(0, 255))
    )
    assert axes[0, 0].get_figure(root=False).get_suptitle() == "cell 102"


def test_cell_views_reads_the_tables_view_store(view_store):
    from madspatial.io import ViewStore

    f = view_store
    n = len(f)
    store = ViewStore(
        f.morphology,
        f.microenvironment,
        f.instance_id,
        np.zeros((n, 2)),
        np.full(n, 50.0),
        {"channel_names": ["DAPI", "CD45"]},
    )
    table = ad.AnnData(
        np.zeros((n, 1)),
        obs=pd.DataFrame({"cell_type": list("abcdef")}, index=list("012345")),
        uns={"mad_views": {"store": store.location}},
    )
    fig = mad.pl.cell_views(table, cells=[2, 0], label="cell_type", return_fig=True)
    assert isinstance(fig, plt.Figure)
    assert fig.subfigs[0].get_suptitle() == "row 2 (id 103) · c"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["DAPI", "CD45"]
    shown = fig.subfigs[1].axes[1].get_images()[0].get_array()
    np.testing.assert_allclose(shown, composite(f.microenvironment[0]))


def test_cell_views_errors(view_store):
    store = view_store
    with pytest.raises(IndexError, match="out of range"):
        mad.pl.cell_views(store, cells=[10], show=False)
    with pytest.raises(KeyError, match=r"\[7\]"):
        mad.pl.cell_views(store, cells=[7], id_type="instance_id", show=False)
    with pytest.raises(ValueError, match="needs the SpatialData"):
        mad.pl.cell_views(store, cells=[0], label="cell_type", show=False)
    with pytest.raises(IndexError, match="channels"):
        mad.pl.cell_views(store, cells=[0], channels=[3], show=False)
    with pytest.raises(ValueError, match="id_type"):
        mad.pl.cell_views(store, cells=[0], id_type="name", show=False)
