from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import madspatial as mad
from madspatial.pl._utils import composite


def _sdata():
    lab = np.zeros((30, 40), dtype=np.int32)
    lab[5:15, 5:15] = 1
    lab[18:28, 20:35] = 2
    img = np.zeros((2, 30, 40), dtype=np.uint16)
    img[0, lab > 0] = 1000
    obs = pd.DataFrame({"cell_type": pd.Categorical(["a", "b"])}, index=[1, 2])
    return mad.io.sdata_from_arrays(img, lab, obs=obs, instance_ids=[1, 2])


def test_overview_colours_outlines_by_category():
    ax = mad.pl.tissue_overview(
        _sdata(), color="cell_type", show=False, palette={"a": "red", "b": "lime"}
    )
    rgb = ax.get_images()[0].get_array()
    # the inner boundary of cell 1 is pure red, of cell 2 pure lime
    np.testing.assert_allclose(rgb[5, 8], [1, 0, 0])
    np.testing.assert_allclose(rgb[18, 25], [0, 1, 0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    plt.close("all")


def test_overview_return_fig_and_bad_key():
    fig = mad.pl.tissue_overview(_sdata(), color=None, return_fig=True)
    assert isinstance(fig, plt.Figure)
    with pytest.raises(KeyError, match="available"):
        mad.pl.tissue_overview(_sdata(), color="nope", show=False)
    plt.close("all")


def test_composite_stretches_each_channel():
    img = np.stack([np.linspace(0, 10, 100).reshape(10, 10), np.zeros((10, 10))])
    rgb = composite(img, percentiles=(0, 100))
    assert rgb.shape == (10, 10, 3)
    assert rgb.max() <= 1 and rgb[-1, -1].max() == pytest.approx(1.0)
    assert rgb[0, 0].max() == 0
