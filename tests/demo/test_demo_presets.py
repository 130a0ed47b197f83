"""The demo's CPU preset is the library's ``"cpu"`` preset plus the demo's own budget."""

from __future__ import annotations

import pytest

from madspatial._demo import DEMO_CPU_PRESET
from madspatial.train import PRESETS

#: The demo preset's name for a ``PRESETS["cpu"]`` option (the others keep theirs).
DEMO_NAME = {"backbone": "model", "base_lr": "lr"}


@pytest.mark.parametrize("option", sorted(PRESETS["cpu"]))
def test_every_cpu_preset_option_reaches_the_demo(option):
    value = DEMO_CPU_PRESET[DEMO_NAME.get(option, option)]
    if option == "base_lr":  # the demo states the peak lr of its batch (DINO's scaling)
        assert value == PRESETS["cpu"]["base_lr"] * DEMO_CPU_PRESET["batch_size"] / 256
    else:
        assert value == PRESETS["cpu"][option]


def test_demo_preset_values_unchanged():
    # the values the demo was timed and documented with, in the report's order
    assert list(DEMO_CPU_PRESET.items()) == [
        ("n_cells", 3000),
        ("model", {"preset": "vit_pico", "embed_dim": 96, "depth": 3, "num_heads": 3}),
        ("morphology_size", 56),
        ("microenvironment_size", 112),
        ("n_local", 2),
        ("batch_size", 64),
        ("steps", 150),
        ("lr", 2e-3),
        ("n_prototypes", 1024),
        ("head_hidden_dim", 512),
        ("head_bottleneck_dim", 128),
        ("n_holdout", 256),
        ("n_evals", 10),
        ("decoder_epochs", 100),
        ("threads", None),
    ]


def test_demo_model_is_a_copy_of_the_library_preset():
    assert DEMO_CPU_PRESET["model"] is not PRESETS["cpu"]["backbone"]
