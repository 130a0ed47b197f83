"""torch only where used: ``import madspatial`` and ``import madspatial.pp`` import no torch,
and the lazy namespaces still behave like eager ones (attributes, ``dir``, ``from ... import``).

Each check runs in a fresh interpreter: this test process has long imported torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
TORCH = ("torch", "torchvision", "timm")


def _run(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object as its last line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    return _run(code)


@pytest.mark.parametrize(
    "statement",
    [
        "import madspatial",
        "import madspatial as mad; mad.settings.seed",
        "import madspatial.pp",
        # every public function of these namespaces, looked up (their modules imported)
        *(
            f"import madspatial as mad; [getattr(mad.{ns}, n) for n in mad.{ns}.__all__]"
            for ns in ("pp", "io", "metrics", "datasets", "pl")
        ),
    ],
)
def test_no_torch(statement):
    loaded = _loaded_after(statement)
    assert not [m for m in loaded if m.split(".")[0] in TORCH], statement


def test_import_madspatial_is_just_the_package():
    loaded = _loaded_after("import madspatial")
    ours = [m for m in loaded if m.startswith("madspatial")]
    assert ours == ["madspatial", "madspatial._lazy", "madspatial._settings", "madspatial._version"]
    assert "spatialdata" not in loaded and "anndata" not in loaded


def test_torch_arrives_with_the_functions_that_need_it():
    # tl.pretrain / tl.embed (and their option defaults, TrainConfig, MADConfig) are read
    # by ``madspatial pretrain/embed --help``: looking them up loads no torch; running
    # them, or the torch layer itself, does
    loaded = _loaded_after(
        "import madspatial as mad; mad.tl.embed, mad.tl.pretrain, mad.train.TrainConfig, "
        "mad.nn.MADConfig"
    )
    assert "madspatial.tl._embed" in loaded and "madspatial.train._config" in loaded
    assert "torch" not in loaded
    loaded = _loaded_after("import madspatial as mad; mad.nn.MADModel")
    assert "torch" in loaded and "madspatial.nn._model" in loaded


def test_lazy_namespaces_behave_like_eager_ones():
    got = _run(
        "import json, madspatial as mad\n"
        "from madspatial.tl import pretrain\n"
        "from madspatial import tl\n"
        "import madspatial.tl._pretrain as m\n"
        "try:\n"
        "    mad.tl.no_such_function\n"
        "    err = None\n"
        "except AttributeError as e:\n"
        "    err = str(e)\n"
        "print(json.dumps({\n"
        "    'same': pretrain is m.pretrain is mad.tl.pretrain and tl is mad.tl,\n"
        "    'dir_tl': [n for n in dir(mad.tl) if not n.startswith('_')],\n"
        "    'all_tl': mad.tl.__all__,\n"
        "    'dir_mad': [n for n in dir(mad) if not n.startswith('_')],\n"
        "    'err': err,\n"
        "    'cached': 'pretrain' in vars(mad.tl),\n"
        "}))"
    )
    assert got["same"]
    assert got["dir_tl"] == sorted(got["all_tl"])  # tab completion lists the public names
    assert {"embed", "pretrain", "fit_decoder", "Decoder", "louvain"} <= set(got["dir_tl"])
    assert {"pp", "tl", "pl", "io", "datasets", "metrics", "settings"} <= set(got["dir_mad"])
    assert got["err"] == "module 'madspatial.tl' has no attribute 'no_such_function'"
    assert got["cached"]  # later look-ups are plain attribute reads


@pytest.mark.parametrize("ns", ["pp", "tl", "pl", "io", "metrics", "datasets", "nn", "train"])
def test_every_public_name_resolves(ns):
    import importlib

    mod = importlib.import_module(f"madspatial.{ns}")
    for name in mod.__all__:
        obj = getattr(mod, name)
        # defined where the package says (sphinx autosummary documents it from there)
        assert getattr(obj, "__module__", f"madspatial.{ns}").startswith(f"madspatial.{ns}")


def test_nothing_in_the_library_imports_the_command_line():
    """The CLI is the top of the house: it imports the library, never the reverse."""
    import re

    import madspatial

    src = Path(madspatial.__file__).parent
    pattern = re.compile(r"^\s*(from\s+(madspatial\.|\.+)cli\b|import\s+madspatial\.cli\b)", re.M)
    offenders = [
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.relative_to(src).parts[0] != "cli"
        and p.name != "__main__.py"  # `python -m madspatial` is the CLI's other door
        and pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
    assert pattern.search("    from ..cli import main") and pattern.search("import madspatial.cli")
