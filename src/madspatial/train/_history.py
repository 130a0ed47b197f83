"""Training history and the small-data collapse watch.

Self-distillation has two ways to fail silently, and both are visible in numbers
we can record cheaply at every step:

* **uniform collapse**: the teacher outputs (almost) the same flat distribution
  for every cell; its per-cell entropy sits at ``ln(K)`` and the loss is pinned
  near ``ln(K)``.
* **one-hot collapse**: every cell goes to the same prototype; the per-cell
  entropy is low, but so is the entropy of the batch-mean distribution (only one
  or two prototypes are ever used).

Neither says whether the embedding separates *cells*, so the history also
records cross-view Recall@K on a fixed held-out batch (the paper's Fig. 2e
signal): for each held-out cell, is its own microenvironment view among the K
nearest (cosine) of all held-out microenvironment embeddings of its morphology
embedding (and the other way round)? Chance level is ``K / n``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

RECALL_KS = (1, 5, 10)


@torch.no_grad()
def cross_view_recall(a: torch.Tensor, b: torch.Tensor, ks=RECALL_KS) -> dict[int, float]:
    """Recall@K for retrieving row ``i`` of ``b`` with row ``i`` of ``a`` and vice versa.

    Cosine similarity; the two directions are averaged. Ties count against the
    query (the true match must rank strictly inside the top K).
    """
    a = torch.nn.functional.normalize(a.float(), dim=1)
    b = torch.nn.functional.normalize(b.float(), dim=1)
    sim = a @ b.T
    n = sim.shape[0]
    diag = sim.diagonal()
    # rank of the true partner = number of candidates at least as similar, minus itself
    rank_ab = (sim >= diag[:, None]).sum(1) - 1
    rank_ba = (sim >= diag[None, :]).sum(0) - 1
    out = {}
    for k in ks:
        k_eff = min(k, n)
        out[k] = 0.5 * float((rank_ab < k_eff).float().mean() + (rank_ba < k_eff).float().mean())
    return out


@torch.no_grad()
def teacher_entropies(
    logits: list[torch.Tensor], center: torch.Tensor, temp: float
) -> tuple[float, float]:
    """Mean per-cell entropy and entropy of the batch-mean teacher distribution (nats)."""
    probs = torch.cat([torch.softmax((t.float() - center.float()) / temp, dim=-1) for t in logits])
    return probs_entropies(probs)


def probs_entropies(probs: torch.Tensor) -> tuple[float, float]:
    """:func:`teacher_entropies` of given ``(..., K)`` teacher distributions."""
    probs = probs.reshape(-1, probs.shape[-1]).float()
    log_p = torch.log(probs.clamp_min(1e-30))
    per_cell = float(-(probs * log_p).sum(-1).mean())
    mean_p = probs.mean(0)
    batch = float(-(mean_p * torch.log(mean_p.clamp_min(1e-30))).sum())
    return per_cell, batch


@torch.no_grad()
def view_diagnostics(loss_fn, views: tuple[str, ...]) -> dict[str, float]:
    """Per-view teacher entropies and, with two views, how much the views agree.

    From the teacher distributions of the last loss call (``loss_fn.last_teacher_probs``,
    ``(n_global, B, K)`` per view): ``teacher_entropy_<view>`` (mean per-cell entropy) and
    ``teacher_batch_entropy_<view>`` (entropy of the batch mean) for every view; with both
    views also ``view_agreement`` (share of cells whose two first-global-crop teachers put
    their highest probability on the same prototype; chance ~ 1 / the prototypes in use)
    and ``teacher_cross_ce`` (mean of CE(p_morph, p_micro) and CE(p_micro, p_morph)
    between the two teachers, nats; ``ln K`` or more means the views do not agree). With
    view heads (``loss_fn.view_heads``) both are computed within each head's prototype
    space (head u's teacher of view u against head u's teacher of the other view) and
    averaged over the two heads.
    """
    out: dict[str, float] = {}
    probs = loss_fn.last_teacher_probs
    for v in views:
        per_cell, batch = probs_entropies(probs[v])
        out[f"teacher_entropy_{v}"] = per_cell
        out[f"teacher_batch_entropy_{v}"] = batch
    if len(views) == 2:
        if getattr(loss_fn, "view_heads", False):
            # one prototype space per view: compare the views within each head's space
            cross = loss_fn.last_cross_teacher_probs
            pairs = [(probs[u][0].float(), cross[(u, v)].float()) for u, v in (views, views[::-1])]
        else:
            pairs = [tuple(probs[v][0].float() for v in views)]
        agree, ce = [], []
        for a, b in pairs:
            agree.append(float((a.argmax(-1) == b.argmax(-1)).float().mean()))
            la, lb = (torch.log(p.clamp_min(1e-30)) for p in (a, b))
            ce.append(float(0.5 * (-(a * lb).sum(-1).mean() - (b * la).sum(-1).mean())))
        out["view_agreement"] = float(np.mean(agree))
        out["teacher_cross_ce"] = float(np.mean(ce))
    return out


def format_rate(rate: float) -> str:
    """Format a throughput for the progress bar: 2 significant digits below 100 (``3.1``)."""
    if not math.isfinite(rate):
        return "?"
    if rate >= 100:
        return f"{rate:.0f}"
    return f"{rate:.2g}"


class History:
    """Per-step and per-evaluation records of a training run, JSON-serialisable."""

    STEP_KEYS = (
        "step",
        "epoch",
        "loss",
        "lr",
        "weight_decay",
        "momentum",
        "teacher_temp",
        "teacher_entropy",
        "teacher_batch_entropy",
        "cells_per_s",
    )
    EVAL_KEYS = ("eval_step", "recall@1", "recall@5", "recall@10")

    def __init__(self, n_prototypes: int, n_holdout: int, recall_views: str) -> None:
        self.data: dict[str, Any] = {k: [] for k in self.STEP_KEYS + self.EVAL_KEYS}
        self.data.update(
            n_prototypes=int(n_prototypes),
            ln_k=math.log(n_prototypes),
            n_holdout=int(n_holdout),
            recall_views=recall_views,
            recall_chance={f"recall@{k}": min(1.0, k / max(1, n_holdout)) for k in RECALL_KS},
            collapsed=False,
            collapse_reason=None,
            weak_signal=False,
        )

    def log_step(self, **values: float) -> None:
        """Append one step.

        ``STEP_KEYS`` are required; any other key is logged as given (e.g. the per-view
        diagnostics of :func:`view_diagnostics`).
        """
        for k in self.STEP_KEYS:
            v = values[k]
            self.data[k].append(int(v) if k in ("step", "epoch") else float(v))
        for k, v in values.items():
            if k not in self.STEP_KEYS:
                self.data.setdefault(k, []).append(float(v))

    def log_eval(self, step: int, recall: dict[int, float]) -> None:
        self.data["eval_step"].append(int(step))
        for k in RECALL_KS:
            self.data[f"recall@{k}"].append(float(recall[k]))

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.data.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        h = cls(d["n_prototypes"], d["n_holdout"], d["recall_views"])
        h.data.update({k: (list(v) if isinstance(v, list) else v) for k, v in d.items()})
        return h

    def losses(self) -> np.ndarray:
        return np.asarray(self.data["loss"], dtype=float)

    def check_collapse(self, *, window: int = 10) -> list[str]:
        """Diagnose the end of the run from the last ``window`` steps; returns warnings.

        ``collapsed`` is set when the per-cell teacher entropy is above 0.95 ln(K)
        (uniform collapse) or fewer than ~1.5 prototypes are in effective use,
        exp(H(mean p)) < 1.5 (one-hot collapse). Independently, ``weak_signal`` is set
        when the last held-out Recall@5 is at most twice chance: the embedding does
        not tell cells apart across views (yet) - too short a run, too high an lr, or
        views without shared structure.
        """
        d = self.data
        d["collapsed"], d["collapse_reason"], d["weak_signal"] = False, None, False
        if not d["loss"]:
            return []
        messages = []
        ln_k = d["ln_k"]
        ent = float(np.mean(d["teacher_entropy"][-window:]))
        batch_ent = float(np.mean(d["teacher_batch_entropy"][-window:]))
        loss = float(np.mean(d["loss"][-window:]))
        reason = None
        if ent > 0.95 * ln_k:
            reason = (
                f"uniform collapse: teacher entropy {ent:.3f} ~ ln(K) = {ln_k:.3f}, "
                f"loss {loss:.3f}; the teacher gives every cell the same flat distribution"
            )
        elif d["n_prototypes"] > 1 and math.exp(batch_ent) < 1.5:
            reason = (
                "one-hot collapse: every cell maps to the same prototype "
                f"(effective prototypes exp(H) = {math.exp(batch_ent):.2f})"
            )
        if reason:
            d["collapsed"], d["collapse_reason"] = True, reason
            messages.append(reason)
        if d["recall@5"]:
            chance = d["recall_chance"]["recall@5"]
            r5 = d["recall@5"][-1]
            if chance < 0.5 and r5 <= 2 * chance:
                d["weak_signal"] = True
                messages.append(
                    f"weak signal: held-out Recall@5 {r5:.3f} is at most twice chance (chance "
                    f"5/{d['n_holdout']} held-out cells = {chance:.3f}, twice chance "
                    f"{2 * chance:.3f}); train longer or check the views"
                )
        return messages
