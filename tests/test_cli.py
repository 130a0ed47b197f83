"""The ``madspatial`` command line: what ``--help`` lists, options built from the library's
signatures, one-line user errors, and ``prepare -> pretrain -> embed`` on a SpatialData zarr."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from madspatial.cli import build_parser, main

pytestmark = pytest.mark.filterwarnings("ignore")  # zarr / ome-zarr chatter, tiny-run warnings

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
TINY_TRAINING = (
    "--model vit_pico --max-steps 2 --batch-size 16 --n-prototypes 64 --head-hidden-dim 32 "
    "--head-bottleneck-dim 16 --n-local 1 --n-holdout 16"
).split()


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def test_help_lists_exactly_the_commands_that_work(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^    (\w+) ", out, flags=re.M)
    assert listed == ["demo", "prepare", "pretrain", "embed"]
    # every listed command builds its options (an ImportError would propagate, not hide it)
    parser = build_parser()
    for name in listed:
        assert _sub(parser, name).get_default("func") is not None, name


def test_help_imports_no_torch_and_no_command_modules():
    code = (
        "import sys, contextlib, io\n"
        "from madspatial.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0\n"
        "heavy = ('torch', 'spatialdata', 'anndata', 'numpy', 'madspatial.tl', 'madspatial.pp')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["madspatial", "madspatial.cli"])
def test_console_entry_points_print_the_version(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=ENV
    )
    assert out.returncode == 0 and out.stdout.startswith("madspatial "), out.stderr


def test_choices_are_the_library_constants():
    from madspatial._constants import MODES
    from madspatial.nn._loss import CENTERINGS
    from madspatial.train._distributed import STRATEGIES
    from madspatial.train._precision import PRECISIONS
    from madspatial.train._trainer import PIXEL_STATS

    pretrain = _options(_sub(build_parser(["pretrain"]), "pretrain"))
    assert pretrain["mode"].choices == list(MODES)
    assert pretrain["precision"].choices == list(PRECISIONS)
    assert pretrain["centering"].choices == list(CENTERINGS)
    assert pretrain["strategy"].choices == list(STRATEGIES)
    assert pretrain["pixel_stats"].choices == list(PIXEL_STATS)
    embed = _options(_sub(build_parser(["embed"]), "embed"))
    assert embed["precision"].choices == list(PRECISIONS)
    prepare = _options(_sub(build_parser(["prepare"]), "prepare"))
    assert prepare["missing"].choices == ["raise", "intersect"]  # from cell_views' Literal


def test_every_library_option_is_on_the_command_line():
    """A new keyword of the functions (or TrainConfig field) shows up, or this fails."""
    from madspatial._demo import run_demo
    from madspatial.cli import _demo, _embed, _prepare, _pretrain
    from madspatial.pp import cell_views, normalize
    from madspatial.tl import embed, pretrain
    from madspatial.train import TrainConfig

    def keywords(f):
        return {
            p.name for p in inspect.signature(f).parameters.values() if p.kind is p.KEYWORD_ONLY
        }

    parser = build_parser()
    cases = {
        "prepare": (
            keywords(cell_views) | keywords(normalize),
            {*_prepare._SKIP_VIEWS, *_prepare._SKIP_NORMALIZE},
        ),
        "pretrain": (
            keywords(pretrain) | {f.name for f in dataclasses.fields(TrainConfig)},
            set(_pretrain._SKIP) - {"checkpoint_dir", "resume"},
        ),
        "embed": (keywords(embed), set(_embed._SKIP) - {"model"}),
        "demo": (keywords(run_demo), set(_demo._SKIP) - {"sdata_path"}),
    }
    for name, (wanted, skipped) in cases.items():
        dests = {a.dest for a in _sub(parser, name)._actions}
        dests |= {"checkpoint_dir", "resume"} if name == "pretrain" else set()  # --out, --no-resume
        assert wanted - skipped <= dests, (name, sorted(wanted - skipped - dests))


def test_options_not_given_take_the_library_defaults():
    from madspatial.cli._options import param_docs
    from madspatial.tl import pretrain

    parser = build_parser(["pretrain"])
    args = parser.parse_args(
        [
            "pretrain",
            "views.zarr",
            "--out",
            "m",
            "--lr",
            "0.01",
            "--teacher-temp",
            "0.03,0.06",
            "--grad-checkpointing",
        ]
    )
    given = {**args._options["pretrain"].given(args), **args._options["train"].given(args)}
    assert given == {"lr": 0.01, "teacher_temp": (0.03, 0.06), "grad_checkpointing": True}
    # `model` is a preset name or a dict of ViT options (JSON)
    args = parser.parse_args(["pretrain", "v", "--out", "m", "--model", '{"preset": "vit_pico"}'])
    assert args._options["pretrain"].given(args) == {"model": {"preset": "vit_pico"}}
    args = parser.parse_args(["pretrain", "v", "--out", "m", "--model", "vit_pico"])
    assert args._options["pretrain"].given(args) == {"model": "vit_pico"}
    # the help shows the signature's default and the docstring's first sentence
    text = _sub(parser, "pretrain").format_help()
    assert "(default: 65536)" in " ".join(text.split())
    assert param_docs(pretrain)["alpha"] == "Weight of the cross-view terms."


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["embed", "{tmp}/nope.zarr", "--model", "m", "--out", "x.h5ad"],
            "madspatial embed: error: DATA '{tmp}/nope.zarr' does not exist.",
        ),
        (
            ["embed", "{tmp}/nope.zarr", "--out", "x.h5ad"],
            "madspatial embed: error: pass --model DIR (a trained MAD model) or --weights NAME",
        ),
        (
            ["pretrain", "{tmp}", "--out", "m", "--option", "foo"],
            "madspatial pretrain: error: --option expects KEY=VALUE (e.g. warmup_steps=100), got "
            "'foo'.",
        ),
        (
            ["prepare", "{tmp}", "--out", "v.zarr"],
            "madspatial prepare: error: SDATA '{tmp}' is not a SpatialData .zarr",
        ),
        (
            ["demo", "--threads", "0", "--out", "{tmp}/d"],
            "madspatial demo: error: the torch thread count (threads= / --threads / "
            "mad.settings.n_threads) must be a positive int",
        ),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(message.format(tmp=tmp_path)), err
    assert err.rstrip().endswith("(--debug shows the traceback)")


def test_debug_raises_with_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DATA '.*nope\.zarr' does not exist"):
        main(["embed", str(tmp_path / "nope.zarr"), "--model", "m", "--out", "x", "--debug"])
    with pytest.raises(FileNotFoundError):  # before the command, too
        main(["--debug", "embed", str(tmp_path / "nope.zarr"), "--model", "m", "--out", "x"])


def test_bad_choice_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "views.zarr", "--out", "m", "--precision", "fp64"])
    assert exc.value.code == 2
    assert "invalid choice: 'fp64' (choose from 'auto', 'bf16', 'fp16', 'fp32')" in (
        capsys.readouterr().err
    )


# ------------------------------------------------------------------ on a SpatialData zarr
@pytest.fixture(scope="module")
def sdata_zarr(tmp_path_factory):
    import madspatial as mad

    sdata = mad.datasets.synthetic_tissue(n_cells=150, seed=1)
    path = tmp_path_factory.mktemp("cli") / "tissue.zarr"
    sdata.write(path)
    return path


@pytest.fixture(scope="module")
def prepared(sdata_zarr):
    out = sdata_zarr.parent / "views.zarr"
    code = main(
        [
            "-q",
            "prepare",
            str(sdata_zarr),
            "--out",
            str(out),
            "--morphology-size",
            "28",
            "--microenvironment-size",
            "56",
            "--n-neighbors",
            "10",
            "--write-table",
        ]
    )
    assert code == 0
    return out


def test_prepare_writes_the_views_of_every_cell(sdata_zarr, prepared, capsys):
    import spatialdata

    from madspatial._constants import UNS_VIEWS
    from madspatial.io import read_views

    store = read_views(prepared)
    table = spatialdata.read_zarr(sdata_zarr).tables["table"]
    assert len(store) == table.n_obs == 150
    assert store.morphology.shape[-2:] == (28, 28)
    assert store.microenvironment.shape[-2:] == (56, 56)
    np.testing.assert_array_equal(store.instance_id, table.obs["instance_id"].to_numpy())
    # the options reached cell_views, and --write-table put its record into the zarr
    assert table.uns[UNS_VIEWS]["n_neighbors"] == 10
    assert Path(table.uns[UNS_VIEWS]["store"]) == prepared.resolve()


def test_pretrain_and_embed_on_a_store_and_on_the_sdata(sdata_zarr, prepared, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["-q", "pretrain", str(prepared), "--out", str(model), *TINY_TRAINING]) == 0
    assert capsys.readouterr().out.startswith(f"saved to {model}: 2 steps, loss ")
    a, b = tmp_path / "a.h5ad", tmp_path / "b.h5ad"
    assert main(["-q", "embed", str(prepared), "--model", str(model), "--out", str(a)]) == 0
    assert main(["-q", "embed", str(sdata_zarr), "--model", str(model), "--out", str(b)]) == 0
    a, b = ad.read_h5ad(a), ad.read_h5ad(b)
    assert a.n_obs == b.n_obs == 150
    assert "cell_type" in b.obs  # the SpatialData's table, with its columns
    np.testing.assert_allclose(a.obsm["X_mad"], b.obsm["X_mad"], atol=1e-5)


def test_prepare_bad_key_lists_what_exists(sdata_zarr, tmp_path, capsys):
    code = main(["prepare", str(sdata_zarr), "--out", str(tmp_path / "v"), "--labels-key", "x"])
    assert code == 2
    err = capsys.readouterr().err
    assert "labels_key (--labels-key) 'x' is not in" in err
    assert "['cell_labels', 'nucleus_labels']" in err
