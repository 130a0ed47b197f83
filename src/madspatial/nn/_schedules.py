"""Per-step schedules for lr, weight decay, EMA momentum and teacher temperature."""

from __future__ import annotations

import numpy as np


def cosine_schedule(
    base: float,
    final: float,
    total_steps: int,
    *,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> np.ndarray:
    """Linear warm-up to ``base``, then a half cosine from ``base`` to ``final``.

    Used for the learning rate (warm-up from 0, decay to a small final lr), the weight
    decay (``0.04 -> 0.4``, no warm-up) and the teacher EMA momentum (``0.992 -> 1``).

    Parameters
    ----------
    base
        Value at the end of the warm-up (the start of the cosine).
    final
        Value at the last step.
    total_steps
        Length of the schedule (one value per optimiser step).
    warmup_steps
        Steps of linear warm-up from ``warmup_start`` (inclusive) towards ``base`` (a
        schedule shorter than the warm-up is its truncated ramp).
    warmup_start
        First value of the warm-up.

    Returns
    -------
    ``float64`` array of length ``total_steps``; ``out[-1] == final`` whenever at least one
    step follows the warm-up.
    """
    if total_steps < 0 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 0, got total={total_steps}, warmup={warmup_steps}.")
    # warm-up values start at warmup_start and approach base (reached at the first cosine
    # step); a run shorter than the warm-up follows the same ramp, truncated
    warm = warmup_start + (base - warmup_start) * np.arange(warmup_steps) / max(warmup_steps, 1)
    warm = warm[:total_steps]
    n = total_steps - len(warm)
    if n == 1:
        cos = np.array([final])
    else:
        t = np.arange(n) / max(n - 1, 1)
        cos = final + 0.5 * (base - final) * (1.0 + np.cos(np.pi * t))
    return np.concatenate([warm, cos]).astype(np.float64)


def teacher_temperature_schedule(
    total_steps: int,
    *,
    warmup_steps: int,
    start: float = 0.04,
    end: float = 0.07,
) -> np.ndarray:
    """Teacher softmax temperature: linear ``start -> end`` over ``warmup_steps``, then ``end``.

    A low temperature early sharpens the teacher while its outputs are still near uniform
    (DINO's warm-up from 0.04 to 0.07).

    Parameters
    ----------
    total_steps
        Length of the schedule.
    warmup_steps
        Steps to go from ``start`` to ``end`` (value ``end`` reached at step ``warmup_steps``).
    start
        Initial temperature.
    end
        Temperature after the warm-up.

    Returns
    -------
    ``float64`` array of length ``total_steps``.
    """
    if total_steps < 0 or warmup_steps < 0:
        raise ValueError(f"steps must be >= 0, got total={total_steps}, warmup={warmup_steps}.")
    steps = np.arange(total_steps, dtype=np.float64)
    if warmup_steps == 0:
        return np.full(total_steps, end, dtype=np.float64)
    frac = np.minimum(steps / warmup_steps, 1.0)
    return start + (end - start) * frac
