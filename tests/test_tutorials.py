"""Execute the tutorials (``tutorials/*.md``, MyST notebooks) end to end in quick mode.

No notebook machinery is needed: the ```` ```{code-cell} ```` blocks of each tutorial are
extracted in order and executed with ``exec`` in one namespace, as a kernel would run
them, with ``MADSPATIAL_TUTORIAL_QUICK=1`` (tiny tissue, pico model, a few steps) and
outputs written to a temporary folder. A failing cell is reported with its number and
source. The docs build renders the same files without executing them.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
COSMX = ROOT.parent / "shared" / "data" / "cosmx_lung_mini"  # as tests/conftest.py

#: ```{code-cell} [lang] ... ``` blocks; the closing fence has the opening's backtick count.
_CELL = re.compile(
    r"^(?P<fence>`{3,})\{code-cell\}[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)


def code_cells(path: Path) -> list[str]:
    """Source of every code cell of a MyST notebook, in order (cell options removed)."""
    cells = []
    for m in _CELL.finditer(path.read_text()):
        lines = m.group("body").splitlines()
        if lines and lines[0].strip() == "---":  # YAML block of cell options
            end = lines.index("---", 1)
            lines = lines[end + 1 :]
        while lines and re.match(r"^:\w[\w-]*:", lines[0]):  # short-form options (:tags: ...)
            lines = lines[1:]
        cells.append("\n".join(lines) + "\n")
    return cells


def run_notebook(path: Path) -> dict:
    """Run the code cells of ``path`` in one fresh namespace; returns the namespace."""
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__main__"}
    times = []
    for i, source in enumerate(code_cells(path), start=1):
        t0 = time.perf_counter()
        # IPython's "last expression is displayed" has no meaning here; plain exec is enough
        code = compile(source, f"{path.name}[cell {i}]", "exec")
        try:
            exec(code, namespace)
        except Exception as err:
            raise AssertionError(
                f"{path.name}: code cell {i} failed with {type(err).__name__}: {err}\n"
                f"--- cell {i} ---\n{source}"
            ) from err
        finally:
            plt.close("all")
            times.append((time.perf_counter() - t0, i))
    slow = ", ".join(f"cell {i} {t:.1f} s" for t, i in sorted(times, reverse=True)[:5])
    print(f"{path.name}: slowest cells: {slow}")
    return namespace


def test_code_cell_extractor(tmp_path):
    nb = tmp_path / "nb.md"
    nb.write_text(
        "# t\n\n```{code-cell} ipython3\nx = 1\n```\n\ntext\n\n"
        "````{code-cell} ipython3\n:tags: [hide-input]\ny = x + 1\n```python\n````\n\n"
        "```{code-cell}\n---\ntags: [remove-output]\n---\nz = y * 10\n```\n"
        "```python\nnot_a_cell = 1\n```\n"
    )
    cells = code_cells(nb)
    assert cells == ["x = 1\n", "y = x + 1\n```python\n", "z = y * 10\n"]


@pytest.fixture
def quick_env(tmp_path, monkeypatch):
    import madspatial as mad

    monkeypatch.setenv("MADSPATIAL_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("MADSPATIAL_TUTORIAL_OUT", str(tmp_path))
    monkeypatch.setenv("MADSPATIAL_COSMX", str(COSMX))
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd lands here
    seed, verbosity = mad.settings.seed, mad.settings.verbosity
    mad.settings.verbosity = "warning"
    yield tmp_path
    mad.settings.seed, mad.settings.verbosity = seed, verbosity


TUTORIAL_FILES = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.md"))


def test_tutorials_exist():
    assert TUTORIAL_FILES == ["01_quickstart.md", "02_your_own_data.md", "03_squidpy.md"]
    for name in TUTORIAL_FILES:
        source = code_cells(TUTORIALS / name)
        assert len(source) >= 5, name
        assert "MADSPATIAL_TUTORIAL_QUICK" in source[0], f"{name}: quick mode not read in cell 1"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 3-step training: weak signal
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", TUTORIAL_FILES)
def test_tutorial_runs_in_quick_mode(name, quick_env):
    if name.startswith("02_") and not COSMX.is_dir():
        pytest.skip(f"tutorial 2 reads the real CosMx data, not found at {COSMX}")
    t0 = time.perf_counter()
    ns = run_notebook(TUTORIALS / name)
    elapsed = time.perf_counter() - t0
    assert ns["QUICK"] is True
    adata = ns["adata"]
    assert adata.obsm["X_mad"].shape[0] == adata.n_obs
    assert os.fspath(quick_env) in os.fspath(ns["OUT"])  # outputs went to the temp folder
    print(f"{name}: {elapsed:.1f} s")
