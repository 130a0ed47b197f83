"""pl.spatial_expression scores predictions on cells the decoder did not train on."""

import logging

import numpy as np
import pytest

import madspatial as mad
from madspatial.pl._expression import measured_expression


@pytest.fixture
def mad_log(caplog):
    log = logging.getLogger("madspatial")
    log.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="madspatial")
    yield caplog
    log.removeHandler(caplog.handler)


def test_in_sample_cells_are_drawn_but_not_scored(spatial_adata, mad_log):
    a = spatial_adata
    meas, _ = measured_expression(a, ["EPCAM"])
    in_sample = np.arange(a.n_obs) % 3 == 0
    a.layers["mad_pred"][in_sample, 0] = meas[in_sample, 0]  # memorised training cells
    a.obs["mad_pred_in_sample"] = in_sample
    axes = mad.pl.spatial_expression(a, genes="EPCAM", show=False)
    out = ~in_sample
    pred = a.layers["mad_pred"][:, 0]
    r = np.corrcoef(meas[out, 0], pred[out])[0, 1]
    mae = np.abs(meas[out, 0] - pred[out]).mean()
    n_out = int(out.sum())
    # before: r and MAE over all cells, flattered by the memorised ones, and unmarked
    assert axes[0, 1].get_title() == (
        f"EPCAM · mad_pred\nr = {r:.2f}, MAE = {mae:.2f} ({n_out} out-of-sample cells)"
    )
    r_all = np.corrcoef(meas[:, 0], pred)[0, 1]
    mae_all = np.abs(meas[:, 0] - pred).mean()
    assert r_all > r and mae_all < 0.8 * mae  # what the title said before
    assert len(axes[0, 1].collections[0].get_offsets()) == a.n_obs  # all cells still drawn
    assert f"r/MAE over the {n_out} out-of-sample cells" in mad_log.text


def test_titles_say_out_of_sample_or_in_sample(spatial_adata, mad_log):
    a = spatial_adata
    a.obs["mad_pred_in_sample"] = False
    axes = mad.pl.spatial_expression(a, genes="EPCAM", show=False)
    assert axes[0, 1].get_title().endswith(" (out-of-sample)")
    a.obs["mad_pred_in_sample"] = True
    axes = mad.pl.spatial_expression(a, genes="EPCAM", show=False)
    assert axes[0, 1].get_title().endswith(" (in-sample)")
    assert "all 150 predictions are in-sample" in mad_log.text
