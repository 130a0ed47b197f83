"""The demo leaves matplotlib's global state alone; only the command picks a backend, and
only when none was chosen."""

from __future__ import annotations

import subprocess
import sys

import pytest

_SNIPPET = (
    "import matplotlib\n"
    "{before}\n"
    "from madspatial.cli._demo import headless_backend\n"
    "headless_backend()\n"
    "print(matplotlib.get_backend().lower())\n"
)


@pytest.mark.parametrize(
    ("before", "env", "expected"),
    [
        ("", {}, "agg"),  # nothing chosen: draw into files
        ("matplotlib.use('pdf')", {}, "pdf"),  # chosen in the process
        ("", {"MPLBACKEND": "svg"}, "svg"),  # chosen by the environment
    ],
)
def test_command_sets_agg_only_when_no_backend_was_chosen(before, env, expected, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET.format(before=before)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


def test_library_demo_sets_no_backend():
    import inspect

    from madspatial import _demo
    from madspatial._demo import _main, _pipeline, _scoring, _sections, _state

    for mod in (_demo, _main, _pipeline, _scoring, _sections, _state):
        src = inspect.getsource(mod)
        assert "matplotlib.use(" not in src, mod.__name__
        assert "rcParams[" not in src, mod.__name__
        assert "plt.subplots" not in src, mod.__name__
