"""Shared docstring fragments: filled once, indented like their placeholder, nothing left over."""

from __future__ import annotations

import inspect

import pytest

import madspatial as mad
from madspatial._docs import doc_ax_show, doc_params, doc_show


def test_fragment_is_indented_like_its_placeholder():
    @doc_params(doc_ax_show=doc_ax_show)
    def f(x):
        """Do.

        Parameters
        ----------
        x
            The {distances,connectivities} braces stay.
        {doc_ax_show}

        Returns
        -------
        None.
        """

    doc = inspect.getdoc(f)
    assert "    Axes to draw into.\nshow\n    Show the figure" in doc
    assert "{distances,connectivities}" in doc and "{doc_ax_show}" not in doc


def test_missing_placeholder_is_an_error():
    with pytest.raises(ValueError, match=r"no \{doc_show\} placeholder"):

        @doc_params(doc_show=doc_show)
        def g():
            """No placeholder here."""


@pytest.mark.parametrize("name", [n for n in mad.pl.__all__ if callable(getattr(mad.pl, n))])
def test_pl_docstrings_are_filled(name):
    func = getattr(mad.pl, name)
    doc = inspect.getdoc(func) or ""
    assert "{doc_" not in doc, f"pl.{name}: an unfilled placeholder"
    params = inspect.signature(func).parameters
    for p in ("show", "return_fig"):
        if p in params:
            assert f"\n{p}\n    " in doc, f"pl.{name}: {p} undocumented"
