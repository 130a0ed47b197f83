"""Instance ids as instruments write them: ints, uint64 >= 2**63, whole floats, digit strings."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import _few

#: Integer kinds numpy gives to label ids and table ids.
_INT_KINDS = "iu"


def _as_id_array(values: Any, what: str) -> np.ndarray:
    """Whole-number ids as int64 or uint64 (never wrapped, never rounded), or a clear error."""
    import pandas as pd

    ser = pd.Series(values)
    if ser.isna().any():
        rows = np.flatnonzero(ser.isna().to_numpy())
        raise ValueError(
            f"{what} holds {len(rows)} missing value(s) (NaN/NA), e.g. at rows "
            f"{_few(rows.tolist())}; every row needs the label id of its cell. Drop those rows "
            "or fill in their ids."
        )
    arr = ser.to_numpy()
    if (
        arr.dtype.kind == "O"
        or arr.dtype.kind in "US"
        or isinstance(ser.dtype, pd.CategoricalDtype)
    ):
        arr = np.asarray(ser.astype(object).to_numpy())
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            ints = [int(v) for v in arr]
        else:
            as_str = [str(v).strip() for v in arr]
            if not all(t.isdigit() for t in as_str):  # "12": integers written as text are fine
                bad = next(v for v, t in zip(arr, as_str) if not t.isdigit())
                if all(t.lstrip("-").isdigit() for t in as_str):
                    raise ValueError(f"{what} holds negative ids (e.g. {bad!r}); ids are positive.")
                raise _StringIds(f"{what} holds text ids, e.g. {bad!r}, not label values")
            ints = [int(t) for t in as_str]
        lo, hi = min(ints, default=0), max(ints, default=0)
        if lo < 0:
            raise ValueError(f"{what} holds negative ids (e.g. {lo}); label ids are positive.")
        if hi >= 2**64:
            raise ValueError(f"{what} holds ids of 2**64 or more (e.g. {hi}); relabel the cells.")
        return np.array(ints, dtype=np.uint64 if hi >= 2**63 else np.int64)
    if arr.dtype.kind == "b":
        raise ValueError(f"{what} holds booleans, not label ids.")
    if arr.dtype.kind in _INT_KINDS:
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise ValueError(
                f"{what} holds negative ids (e.g. {int(arr.min())}); label ids are positive."
            )
        if arr.dtype == np.uint64 and arr.size and arr.max() >= 2**63:
            return arr.astype(np.uint64)
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":  # e.g. ids after a CSV round trip: whole numbers are fine
        frac = ~np.isfinite(arr) | (arr != np.round(arr)) | (arr < 0)
        if frac.any():
            rows = np.flatnonzero(frac)
            raise ValueError(
                f"{what} holds values that are not non-negative whole numbers (e.g. "
                f"{arr[rows[0]].item()!r} at row {rows[0]}; {len(rows)} row(s)); label ids are whole "
                "numbers. Fix the ids (they must equal the label values of the segmentation)."
            )
        if arr.size and arr.max() >= 2**53:
            raise ValueError(
                f"{what} holds float ids of 2**53 or more, which floats cannot store exactly "
                "(so they may not match the labels); store the ids as integers."
            )
        return arr.astype(np.int64)
    raise ValueError(
        f"{what} has dtype {arr.dtype}; it must hold the integer label id of each row."
    )


class _StringIds(ValueError):
    """The ids are text (e.g. Xenium's ``aaabbbcc-1``), not label values."""


def id_codes(ids: np.ndarray) -> np.ndarray:
    """int64 codes of int64/uint64 ids: the same bits, so equality (not order) is preserved."""
    ids = np.asarray(ids)
    if ids.dtype == np.uint64:
        return ids.view(np.int64)
    return ids.astype(np.int64, copy=False)
