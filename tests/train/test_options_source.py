"""Training options live in one place: TrainConfig / MADConfig hold every default and
TRAIN_OPTION_DOCS every description; tl.pretrain, DINOHead, the docstrings and the command
line read them from there."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import madspatial as mad
from madspatial.train._config import TRAIN_OPTION_DOCS, TrainConfig

SRC = Path(mad.__file__).parent


def test_every_field_is_described_once():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert list(TRAIN_OPTION_DOCS) == names  # same fields, same order, nothing stale
    doc = inspect.getdoc(TrainConfig)
    for name in names:
        assert re.search(rf"^{name}\n    \S", doc, re.M), name


def test_pretrain_docstring_renders_the_shared_descriptions():
    doc = " ".join((inspect.getdoc(mad.tl.pretrain) or "").split())
    for name in ("centering", "precision", "koleo_weight", "n_local"):
        assert " ".join(TRAIN_OPTION_DOCS[name].split()) in doc, name
    # options a preset fills say what each preset gives
    assert "Default: the preset's ('paper': 65536, 'cpu': 1024)" in doc
    assert "{doc_" not in doc


def test_paper_defaults_are_written_once():
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"=\s*65536\b", line)
    ]
    assert len(hits) == 1 and hits[0].startswith("nn/_config.py:"), hits
    head = inspect.signature(mad.nn.DINOHead).parameters
    cfg = mad.nn.MADConfig()
    assert (head["n_prototypes"].default, head["hidden_dim"].default) == (
        cfg.n_prototypes,
        cfg.head_hidden_dim,
    )
    assert TrainConfig().n_prototypes == cfg.n_prototypes == 65536


def test_cli_help_describes_the_further_options():
    from madspatial.cli._main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    text = " ".join(sub.choices["pretrain"].format_help().split())
    assert "--base-lr BASE_LR Learning rate per 256 cells when lr is None (DINO: 5e-4)." in text
    assert "--preset {paper,cpu,auto}" in text
