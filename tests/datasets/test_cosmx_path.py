"""cosmx_lung_mini finds its data from path= or $MADSPATIAL_COSMX, never from the source tree."""

from __future__ import annotations

import pytest

import madspatial as mad
from madspatial.datasets._cosmx import PATH_ENV


def test_no_path_and_no_env_says_what_to_do(monkeypatch):
    monkeypatch.delenv(PATH_ENV, raising=False)
    with pytest.raises(ValueError, match=r"pass path=\.\.\. or set the environment variable"):
        mad.datasets.cosmx_lung_mini()


def test_env_names_the_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(PATH_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mad.datasets.cosmx_lung_mini()


def test_env_loads_the_data(monkeypatch, cosmx_dir):
    monkeypatch.setenv(PATH_ENV, str(cosmx_dir))
    sdata = mad.datasets.cosmx_lung_mini(fovs=(3,))
    assert sdata.tables["table"].n_obs == 53
