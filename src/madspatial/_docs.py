"""Parameter documentation shared by many functions, filled into docstrings once.

As scanpy's ``_doc_params``: a docstring holds a placeholder such as ``{doc_show}`` on a
line of its own, and :func:`doc_params` replaces it with the fragment, indented like the
placeholder. Only the named placeholders are touched, so other braces in a docstring
(``{distances,connectivities}``) stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

#: ``show`` and ``return_fig`` of every ``pl`` function.
doc_show = """\
show
    Show the figure (default: when the backend is interactive).
return_fig
    Return the Figure instead of the Axes."""

#: ``ax``, ``show`` and ``return_fig`` of a ``pl`` function that draws into one Axes.
doc_ax_show = (
    """\
ax
    Axes to draw into.
"""
    + doc_show
)

#: :data:`doc_ax_show` and the Returns section of a ``pl`` function that draws into one Axes.
doc_ax_show_returns = (
    doc_ax_show
    + """

Returns
-------
The Axes (``show=False``), the Figure (``return_fig=True``) or None."""
)


def _fill(doc: str, name: str, text: str) -> str:
    token = "{" + name + "}"
    out = []
    for line in doc.split("\n"):
        stripped = line.strip()
        if stripped == token:
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + t if t else t for t in text.split("\n"))
        else:
            out.append(line.replace(token, text) if token in line else line)
    return "\n".join(out)


def doc_params(**fragments: str) -> Callable[[F], F]:
    """Fill the ``{name}`` placeholders of a docstring with ``fragments[name]``."""

    def decorate(obj: F) -> F:
        doc = obj.__doc__ or ""
        for name, text in fragments.items():
            if "{" + name + "}" not in doc:
                raise ValueError(f"{obj.__qualname__}: docstring has no {{{name}}} placeholder")
            doc = _fill(doc, name, text)
        obj.__doc__ = doc
        return obj

    return decorate


#: ``y_true``, ``y_pred`` and ``gene_names`` of the per-gene expression metrics.
doc_gene_pair = """\
y_true
    Measured expression, cells x genes.
y_pred
    Predicted expression, same shape.
gene_names
    Optional gene names; the result is then a Series indexed by gene."""

#: The shared tail (folds, balance, seed) of the probe accuracies' parameters.
doc_probe_folds = """\
balanced
    Report balanced accuracy (mean per-class recall) instead of plain accuracy.
seed
    Seed of the fold shuffling."""

#: ``copy`` of a function that writes into ``adata`` unless a copy is asked for.
doc_copy = """\
copy
    Return a modified copy instead of writing into ``adata``."""

#: ``key_added`` and ``copy`` of a tool that writes one ``.obs`` column and ``.uns`` entry.
doc_obs_key_copy = (
    """\
key_added
    Name of the ``.obs`` column and ``.uns`` entry written.
"""
    + doc_copy
)

#: ``adata`` and ``use_rep`` of a tool working on one embedding.
doc_adata_rep = """\
adata
    Annotated data matrix with an embedding in ``.obsm``.
use_rep
    Key of the embedding in ``.obsm`` (``"X"`` for ``.X``)."""
