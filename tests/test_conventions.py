"""The API conventions of DESIGN.md, checked on every public pp/tl function.

scanpy's style: the data object first and positional, every option
keyword-only, ``copy=False`` / ``inplace=True`` defaults, a Returns section in
the docstring, and every parameter documented. New functions are picked up
automatically, so the convention holds as the API grows.
"""

from __future__ import annotations

import inspect
import re

import pytest

import madspatial as mad

# Functions whose signature deliberately takes two positional objects.
TWO_POSITIONAL = {"predict"}  # predict(decoder, adata): the fitted object, then the data


def _public_functions():
    for ns_name in ("pp", "tl"):
        ns = getattr(mad, ns_name)
        names = getattr(ns, "__all__", [n for n in dir(ns) if not n.startswith("_")])
        for name in names:
            obj = getattr(ns, name)
            if inspect.isfunction(obj):
                yield pytest.param(obj, id=f"{ns_name}.{name}")


FUNCS = list(_public_functions())


def test_namespaces_are_importable_as_modules():
    import importlib

    for ns in ("pp", "tl", "pl", "datasets", "io", "metrics"):
        mod = importlib.import_module(f"madspatial.{ns}")
        assert getattr(mad, ns) is mod
    assert isinstance(mad.__version__, str) and mad.__version__.count(".") >= 2


@pytest.mark.parametrize("func", FUNCS)
def test_data_first_then_keyword_only(func):
    params = list(inspect.signature(func).parameters.values())
    assert params, f"{func.__name__} takes no data object"
    n_pos = 2 if func.__name__ in TWO_POSITIONAL else 1
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    assert len(positional) == n_pos, (
        f"{func.__module__}.{func.__name__}: expected {n_pos} positional parameter(s) "
        f"(the data object), got {[p.name for p in positional]}; make the rest keyword-only."
    )


@pytest.mark.parametrize("func", FUNCS)
def test_copy_and_inplace_defaults(func):
    params = inspect.signature(func).parameters
    if "copy" in params:
        assert params["copy"].default is False, f"{func.__name__}: copy must default to False"
    if "inplace" in params:
        assert params["inplace"].default is True, f"{func.__name__}: inplace must default to True"


@pytest.mark.parametrize("func", FUNCS)
def test_documented(func):
    doc = inspect.getdoc(func) or ""
    assert re.search(r"^Returns\n-+", doc, re.M), f"{func.__name__}: docstring lacks Returns"
    assert re.search(r"^Parameters\n-+", doc, re.M), f"{func.__name__}: lacks Parameters"
    for name, p in inspect.signature(func).parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        assert re.search(rf"^{name}\b|, {name}\b|^\w+, {name}\b", doc, re.M), (
            f"{func.__name__}: parameter {name!r} is not documented"
        )
