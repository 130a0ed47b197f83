from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    # The CI box has 2 cores shared by parallel jobs; tiny models run faster (and with
    # stabler timings) single-threaded than with intra-op threads fighting for cores.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
