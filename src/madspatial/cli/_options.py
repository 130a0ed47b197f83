"""Command-line options built from the library's own signatures and docstrings.

Each keyword parameter of a function (or field of a config dataclass) becomes one option:
its type and choices come from the annotation (``Literal[...]``, ``bool``, ``int``,
``tuple[float, float]``, ...) or from the constant the library validates against
(``MODES``, ``PRECISIONS``, ...), its help from the numpy docstring, its default from the
signature. Nothing is retyped here, so the command line cannot drift from the functions.

An option the user does not give is not passed at all (``argparse.SUPPRESS``): the
function applies its own default, which the help shows.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod):`~?([^`]+)`")
_SECTION = re.compile(r"^\s*(Parameters|Returns|Raises|Yields|See Also|Notes|Examples)\s*$")


def param_docs(obj: Any) -> dict[str, str]:
    """``{parameter: first sentence of its description}`` from a numpy docstring."""
    doc = inspect.getdoc(obj) or ""
    lines = doc.splitlines()
    out: dict[str, str] = {}
    in_params = False
    names: list[str] = []
    text: list[str] = []

    def flush() -> None:
        if names:
            sentence = _first_sentence(" ".join(text))
            for n in names:
                out.setdefault(n, sentence)

    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _SECTION.match(line) and nxt.strip().startswith("---"):
            flush()
            names, text = [], []
            in_params = line.strip() == "Parameters"
            continue
        if not in_params or line.strip().startswith("---"):
            continue
        if line and not line[0].isspace():  # "name" or "name1, name2" at column 0
            flush()
            names = [n.strip().lstrip("*") for n in line.split(":")[0].split(",")]
            text = []
        elif line.strip():
            text.append(line.strip())
    flush()
    return out


def _first_sentence(text: str) -> str:
    """Return the text up to its first full stop outside brackets (not one of "e.g.", "i.e.")."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text).replace("``", "")
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch in "([") - (ch in ")]")
        if (
            ch == "."
            and depth == 0
            and text[i + 1 : i + 2] in ("", " ")
            and not text[max(0, i - 3) : i + 1].endswith(("e.g.", "i.e."))
        ):
            return text[: i + 1].strip()
    return text.strip()


def pair(text: str) -> tuple[float, float]:
    """``"0.04,0.07"`` -> ``(0.04, 0.07)``."""
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}")
    return parts[0], parts[1]


def json_or_str(text: str) -> Any:
    """Parse a JSON value (``'{"preset": "vit_pico"}'``, ``3``, ``null``), else return the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def key_values(items: Iterable[str]) -> dict[str, Any]:
    """``["warmup_steps=100", ...]`` -> ``{"warmup_steps": 100, ...}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE (e.g. warmup_steps=100), got {item!r}.")
        out[key] = json_or_str(value)
    return out


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # e.g. a return type imported only under TYPE_CHECKING: one by one
        pass
    if dataclasses.is_dataclass(obj):
        raw = {f.name: f.type for f in dataclasses.fields(obj)}
        namespace = vars(inspect.getmodule(obj))
    else:
        raw = {p.name: p.annotation for p in inspect.signature(obj).parameters.values()}
        namespace = getattr(obj, "__globals__", {})
    hints = {}
    for name, ann in raw.items():
        try:
            hints[name] = eval(ann, dict(namespace)) if isinstance(ann, str) else ann
        except Exception:  # this one does not evaluate: the default's type is used
            continue
    return hints


def _unwrap_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
        if all(a in (str, Path) for a in rest):
            return str
        return Any
    return hint


def _argparse_kwargs(hint: Any, default: Any) -> dict[str, Any]:
    hint = _unwrap_optional(hint)
    if hint is inspect.Parameter.empty:  # not annotated: the default's type
        hint = type(default) if default not in (None, inspect.Parameter.empty) else Any
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return {"type": type(args[0]), "choices": list(args)}
    if origin is tuple and len(args) == 2 and all(a in (int, float) for a in args):
        return {"type": pair, "metavar": "A,B"}
    if hint in (int, float, str):
        return {"type": hint}
    if hint is Path:
        return {"type": str}
    return {"type": json_or_str, "metavar": "JSON"}  # dicts, presets-or-dicts, ...


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclasses.dataclass
class OptionSet:
    """The options added for one function or config, and how to collect them."""

    names: list[str] = dataclasses.field(default_factory=list)

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """Return the options the user gave, as keyword arguments."""
        return {n: getattr(args, n) for n in self.names if hasattr(args, n)}


def add_options(
    parser: argparse.ArgumentParser | Any,
    source: Callable | type,
    *,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    docs: Mapping[str, str] | None = None,
    seen: set[str] | None = None,
) -> OptionSet:
    """Add one ``--option`` per keyword parameter of ``source`` (a function or a dataclass).

    Parameters
    ----------
    parser
        The (sub)parser or argument group.
    source
        Function (its keyword parameters) or dataclass (its fields).
    skip
        Parameters not offered (the data object, ``copy``, ...).
    only
        Offer only these.
    choices
        Allowed values of ``str`` parameters, from the constants the library checks.
    docs
        Help text of parameters whose own docstring does not describe them.
    seen
        Names already added (by another source); updated in place.
    """
    choices = dict(choices or {})
    help_text = {**param_docs(source), **(docs or {})}
    hints = _hints(source)
    if dataclasses.is_dataclass(source):
        params = [
            (f.name, f.default if f.default is not dataclasses.MISSING else None)
            for f in dataclasses.fields(source)
        ]
    else:
        params = [
            (p.name, p.default)
            for p in inspect.signature(source).parameters.values()
            if p.kind is p.KEYWORD_ONLY
        ]
    seen = set() if seen is None else seen
    added = OptionSet()
    for name, default in params:
        if name in skip or name in seen or (only is not None and name not in only):
            continue
        seen.add(name)
        added.names.append(name)
        flag = "--" + name.replace("_", "-")
        text = help_text.get(name, "").replace("%", "%%")
        hint = hints.get(name, inspect.Parameter.empty)
        if _unwrap_optional(hint) is bool or isinstance(default, bool):
            if default is True:
                flag = "--no-" + name.replace("_", "-")
                text = f"{text} (default: on; this flag turns it off)".strip()
                action = "store_false"
            else:
                action = "store_true"
            parser.add_argument(
                flag, dest=name, action=action, default=argparse.SUPPRESS, help=text
            )
            continue
        kwargs = _argparse_kwargs(hint, default)
        if name in choices:
            kwargs["choices"] = list(choices[name])
        if default not in (None, inspect.Parameter.empty):  # None: the docstring says what
            text = f"{text} (default: {_show(default)})".strip()
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=text, **kwargs)
    return added
