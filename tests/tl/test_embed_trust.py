"""mad.tl.embed never writes non-finite embeddings and names a folder that is not a MAD model."""

from __future__ import annotations

import pytest
import torch

import madspatial as mad
from madspatial._constants import OBSM_MAD

from .test_embed import _config

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def small_views(tissue_views):
    """The tiny tissue's table with 28 / 56 px views."""
    return tissue_views.tables["table"]


def test_non_finite_embeddings_are_refused(small_views):
    from madspatial.nn import MADModel

    torch.manual_seed(0)
    model = MADModel(_config())
    with torch.no_grad():  # a damaged weight: one NaN in the patch embedding
        next(model.backbone.parameters()).view(-1)[0] = float("nan")
    table = small_views.copy()
    table.obsm.pop(OBSM_MAD, None)
    with pytest.raises(ValueError, match=r"cells got non-finite \(NaN or inf\) morphology") as e:
        mad.tl.embed(table, model=model)
    msg = str(e.value)
    assert "first rows [0, 1, 2, 3, 4]" in msg
    assert f"cell ids {[str(i) for i in table.obs_names[:5]]}" in msg
    assert OBSM_MAD not in table.obsm  # nothing written


def test_embed_with_a_decoder_folder(small_views, decoder_folder):
    with pytest.raises(ValueError, match="is not a MAD model folder") as e:
        mad.tl.embed(small_views.copy(), model=decoder_folder)
    assert "format_version=None" not in str(e.value)
