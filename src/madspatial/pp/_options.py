"""Checks of numeric options: errors name the argument, the value and its type, the rule, a fix."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _got(name: str, value: Any) -> str:
    return f"{name}={value!r} ({type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int = 1,
    example: int | None = None,
    rule: str | None = None,
) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError saying so."""
    example = minimum if example is None else example
    if not _is_int(value) or value < minimum:
        if rule is None:
            rule = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        hint = ""
        if _is_real(value) and math.isfinite(float(value)) and float(value).is_integer():
            hint = f": pass {int(value)} (an int)" if int(value) >= minimum else ""
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            hint = f": pass the number {int(value)}, not a string"
        raise ValueError(f"{_got(name, value)} must be {rule}, e.g. {example}{hint}.")
    return int(value)


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = 0.0,
    high: float | None = None,
    low_open: bool = True,
    high_open: bool = False,
    example: float,
) -> float:
    """``value`` as a finite float in the given interval, or a ValueError saying so."""
    ok = _is_real(value) and math.isfinite(float(value))
    if ok:
        v = float(value)
        if low is not None and (v <= low if low_open else v < low):
            ok = False
        if high is not None and (v >= high if high_open else v > high):
            ok = False
    if not ok:
        if low is not None and high is not None:
            rule = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            rule = f"a finite number {'>' if low_open else '>='} {low:g}"
        else:
            rule = "a finite number"
        hint = ""
        if isinstance(value, str):
            hint = ": pass a number, not a string"
        raise ValueError(f"{_got(name, value)} must be {rule}, e.g. {example:g}{hint}.")
    return float(value)


def check_view_size(name: str, value: Any, patch: int) -> int:
    """Check that ``value`` is a positive int multiple of the ViT patch size."""
    if not _is_int(value) or value <= 0 or value % patch:
        if _is_real(value) and math.isfinite(float(value)) and float(value) > 0:
            lo = max(patch, int(float(value) // patch) * patch)
        else:
            lo = 4 * patch
        if (
            _is_real(value)
            and not _is_int(value)
            and float(value).is_integer()
            and not int(value) % patch
            and value > 0
        ):
            fix = f"pass {int(value)} (an int)"
        elif isinstance(value, str) and value.strip().isdigit():
            v = int(value)
            good = v if v > 0 and not v % patch else max(patch, v // patch * patch)
            fix = f"pass the number {good}, not a string"
        else:
            fix = f"e.g. {lo} or {lo + patch}"
        raise ValueError(
            f"{_got(name, value)} must be a positive int multiple of the ViT patch size {patch} "
            f"(so the view splits into whole patches): {fix}."
        )
    return int(value)
