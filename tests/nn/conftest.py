from __future__ import annotations

import pytest
import torch

#: MultiCropAugment options that leave a view as it is (one full global crop, no jitter).
NO_AUGMENT = {
    "n_global": 1,
    "n_local": 0,
    "global_scale": (1.0, 1.0),
    "ratio": (1.0, 1.0),
    "flip": False,
    "rotate90": False,
    "jitter": 0.0,
    "noise_std": 0.0,
}


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    # The CI box has 2 cores shared by parallel jobs; tiny models run faster (and with
    # stabler timings) single-threaded than with intra-op threads fighting for cores.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
