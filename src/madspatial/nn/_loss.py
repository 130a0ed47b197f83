"""MAD's four-way self-distillation loss (and the single-view DINO ablations) and KoLeo.

For teacher view ``u`` and student view ``v`` the cross-entropy term is

    CE(u, v) = mean over pairs (i, j) and cells b of
               - sum_k softmax((t_u[i, b] - c) / T_t)_k * log_softmax(s_v[j, b] / T_s)_k

over the teacher's global crops ``i`` of ``u`` and all student crops ``j`` of ``v``, except
the pairs where the student sees the very crop the teacher saw (``u == v`` and ``i == j``).
The loss of mode ``"mad"`` is ``CE(m, m) + CE(e, e) + alpha * (CE(m, e) + CE(e, m))`` (m:
morphology, e: microenvironment); a single-view mode uses only its own ``CE(v, v)``, which
is DINO's loss. ``cross_terms`` keeps only one of the two cross-view terms:
``"to_microenvironment"`` (``alpha * CE(m, e)``: the microenvironment student learns the
morphology teacher, which its view can predict, since the cell is in its centre) or
``"to_morphology"`` (``alpha * CE(e, m)``; the morphology view cannot see the niche).

Teacher targets are centred one of two ways: ``centering="center"`` (the paper's running
center ``c``, subtracted before the sharpened softmax) or ``centering="sinkhorn"``
(Sinkhorn-Knopp equipartition over the batch, as in SwAV and DINOv2). Both remove what
all cells share; neither can create differences the head outputs do not have. When a
freshly initialised backbone maps nearly every cell to the same output, both give a
nearly uniform teacher (on the synthetic tissue that was fixed by standardising the
input with the data's statistics, ``TrainConfig.pixel_stats``, not by the centering).

``view_heads=True`` (with :class:`~madspatial.nn.ViewHeads`: logits ``(B, 2K)``, the
morphology head's then the microenvironment head's) gives each view its own prototype
space: ``CE(u, v)`` compares view ``u``'s teacher, scored by ``u``'s head, with the
student's crops of ``v`` scored by the *same* head ``u``. The same-view terms are then
exactly two DINO losses, and a cross-view term asks a crop of ``v`` to predict what ``u``'s
own teacher says, rather than pulling both views towards one shared distribution (which,
when the views share little, is satisfied by a flat teacher). Each head has its own
running center. ``predictor_heads=True`` (logits ``(B, 4K)``: the two views' heads,
then ``predict_morphology`` and ``predict_microenvironment``) scores the student's crops
of ``v`` in a cross-view term with a predictor head of ``u`` instead of ``u``'s own head,
so the term cannot make ``u``'s teacher easier to match by flattening ``u``'s head.

``view_centers=True`` keeps one running center per view instead of the paper's single
``c``: the two views feed one head but their mean outputs differ, and a shared center
removes only the average of the two (see ``benchmarks/results/collapse.md`` for what
each option measured). ``alpha`` is a plain attribute, so a trainer can ramp it
(``TrainConfig.alpha_warmup_steps``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .._constants import (
    CENTERINGS,
    CROSS_TERMS,
    MODE_MAD,
    VIEW_MICROENVIRONMENT,
    VIEW_MORPHOLOGY,
)
from ._config import mode_views
from ._head import head_names

__all__ = ["CENTERINGS", "MADLoss", "koleo_loss", "mode_views"]


class MADLoss(nn.Module):
    """Four-way cross-entropy between teacher and student prototype distributions.

    Parameters
    ----------
    n_prototypes
        Number of prototypes ``K`` (head output width).
    mode
        ``"mad"`` (both views with cross-view terms), ``"morphology"`` or
        ``"microenvironment"`` (single-view DINO).
    alpha
        Weight of the cross-view terms (``mode="mad"`` only; ``0`` gives two independent
        DINO losses on one shared backbone).
    student_temp
        Student softmax temperature ``T_s``.
    center_momentum
        EMA momentum of the teacher center ``c``.
    centering
        ``"center"`` (running center, the paper's choice) or ``"sinkhorn"`` (Sinkhorn-Knopp
        equipartition of each view's teacher crops over the batch; the running center is
        still tracked for logging but not used).
    sinkhorn_iterations
        Number of Sinkhorn-Knopp normalisation rounds.
    view_centers
        One running center per view (``center`` has one row per view, in the order of
        :attr:`views`) instead of one shared by both (the paper's single ``c``).
    cross_terms
        ``"both"`` (the paper's), ``"to_microenvironment"`` (only morphology teacher ->
        microenvironment student) or ``"to_morphology"`` (only the reverse).
    view_heads
        Logits come from one head per view, side by side (``(B, 2K)``; ``mode="mad"``
        only); each term is scored in its teacher view's head (see the module notes).
        Implies ``view_centers`` (one center per head).
    predictor_heads
        With ``view_heads``: the logits also hold one predictor head per view (``(B,
        4K)``) and a cross-view term ``u -> v`` scores ``v``'s crops with ``u``'s predictor.

    Notes
    -----
    By default one center is shared by both views. ``forward`` does not update it; call :meth:`update_center` with the teacher logits after each step. The
    per-term values of the last call are kept (detached) in :attr:`last_terms`, keyed
    ``"<teacher view>-><student view>"``.
    """

    center: torch.Tensor

    def __init__(
        self,
        n_prototypes: int,
        *,
        mode: str = MODE_MAD,
        alpha: float = 1.0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: str = "center",
        sinkhorn_iterations: int = 3,
        view_centers: bool = False,
        view_heads: bool = False,
        cross_terms: str = "both",
        predictor_heads: bool = False,
    ) -> None:
        super().__init__()
        if predictor_heads and not view_heads:
            raise ValueError("predictor_heads=True needs view_heads=True (one head per view).")
        if cross_terms not in CROSS_TERMS:
            raise ValueError(
                f"cross_terms must be one of {list(CROSS_TERMS)}, got {cross_terms!r}."
            )
        self.cross_terms = cross_terms
        if view_heads and mode != MODE_MAD:
            raise ValueError(f"view_heads=True needs mode='mad' (both views), got {mode!r}.")
        if centering not in CENTERINGS:
            raise ValueError(f"centering must be one of {list(CENTERINGS)}, got {centering!r}.")
        if sinkhorn_iterations < 1:
            raise ValueError(f"sinkhorn_iterations must be >= 1, got {sinkhorn_iterations}.")
        self.centering = centering
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.views = mode_views(mode)
        self.mode = mode
        self.n_prototypes = n_prototypes
        self.alpha = float(alpha)
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.view_heads = bool(view_heads)
        self.predictor_heads = bool(predictor_heads)
        self.head_names = (
            head_names(self.views, predictors=self.predictor_heads) if self.view_heads else ()
        )
        self.view_centers = bool(view_centers) or self.view_heads
        n_centers = len(self.views) if self.view_centers else 1
        self.register_buffer("center", torch.zeros(n_centers, n_prototypes))
        self.last_terms: dict[str, torch.Tensor] = {}
        self.last_teacher_probs: dict[str, torch.Tensor] = {}
        # with view heads: head u's teacher distribution of view v's first global crop
        self.last_cross_teacher_probs: dict[tuple[str, str], torch.Tensor] = {}

    def _weights(self) -> dict[tuple[str, str], float]:
        if self.mode != MODE_MAD:
            return {(self.mode, self.mode): 1.0}
        m, e = VIEW_MORPHOLOGY, VIEW_MICROENVIRONMENT
        w = {(m, m): 1.0, (e, e): 1.0}
        if self.alpha != 0.0:
            if self.cross_terms in ("both", "to_microenvironment"):
                w[(m, e)] = self.alpha
            if self.cross_terms in ("both", "to_morphology"):
                w[(e, m)] = self.alpha
        return w

    def _check(self, student, teacher) -> None:
        for view in self.views:
            for name, d in (("student", student), ("teacher", teacher)):
                if view not in d or not d[view]:
                    raise ValueError(
                        f"mode {self.mode!r} needs {name} logits for view {view!r}; got views "
                        f"{sorted(k for k, v in d.items() if v)}."
                    )
            if len(student[view]) < len(teacher[view]):
                raise ValueError(
                    f"view {view!r}: {len(teacher[view])} teacher crops but only "
                    f"{len(student[view])} student crops; the student list must start with "
                    "the same global crops the teacher saw."
                )
        width = self.n_prototypes * max(1, len(self.head_names))
        for t in [t for v in self.views for t in (*student[v], *teacher[v])]:
            if t.ndim != 2 or t.shape[-1] != width:
                heads = f" ({len(self.head_names)} heads x {self.n_prototypes})" * self.view_heads
                raise ValueError(f"logits must be (B, {width}){heads}, got shape {tuple(t.shape)}.")

    def head_logits(self, logits: torch.Tensor, head: str | None) -> torch.Tensor:
        """Return the ``(B, K)`` logits of view ``head``'s head (all logits without view heads)."""
        if not self.view_heads:
            return logits
        i = self.head_names.index(head)
        return logits[:, i * self.n_prototypes : (i + 1) * self.n_prototypes]

    def term_head(self, teacher_view: str, student_view: str) -> str | None:
        """Return the head scoring the student's crops in ``teacher_view -> student_view``."""
        if not self.view_heads:
            return None
        if teacher_view == student_view or not self.predictor_heads:
            return teacher_view
        return f"predict_{teacher_view}"

    def center_of(self, view: str | None = None) -> torch.Tensor:
        """Return the ``(1, K)`` center of ``view`` (the shared one unless ``view_centers``)."""
        if not self.view_centers:
            return self.center
        if view not in self.views:
            raise ValueError(
                f"view_centers=True needs the view of the logits, one of {list(self.views)}; "
                f"got {view!r}."
            )
        i = self.views.index(view)
        return self.center[i : i + 1]

    def teacher_probs(
        self, logits: torch.Tensor, teacher_temp: float, view: str | None = None
    ) -> torch.Tensor:
        """Centred, sharpened teacher distribution ``softmax((t - c) / T_t)`` (float32)."""
        c = self.center_of(view)
        return F.softmax((logits.detach().float() - c) / teacher_temp, dim=-1)

    @torch.no_grad()
    def sinkhorn_probs(self, logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Teacher distribution by Sinkhorn-Knopp equipartition over the batch.

        Parameters
        ----------
        logits
            ``(N, K)`` teacher logits of all crops of one view stacked along the batch axis.
        teacher_temp
            Teacher temperature ``T_t``.

        Returns
        -------
        ``(N, K)`` float32 rows summing to one, whose column sums are as equal as
        ``sinkhorn_iterations`` rounds make them (across all ranks under
        ``torch.distributed``).
        """
        x = logits.detach().float() / teacher_temp
        # subtract the global max before exp: the normalisation cancels it, overflow does not
        gmax = x.max()
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            dist.all_reduce(gmax, op=dist.ReduceOp.MAX)
        q = torch.exp(x - gmax).T  # (K, N)
        n = torch.tensor(float(q.shape[1]), device=q.device)
        total = q.sum()
        if distributed:
            dist.all_reduce(n)
            dist.all_reduce(total)
        q = q / total
        k = q.shape[0]
        for _ in range(self.sinkhorn_iterations):
            rows = q.sum(1, keepdim=True)
            if distributed:
                dist.all_reduce(rows)
            q = q / rows.clamp_min(1e-30) / k  # every prototype gets mass 1/K
            q = q / q.sum(0, keepdim=True).clamp_min(1e-30) / n  # every cell gets mass 1/N
        return (q * n).T

    def student_log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Student log-distribution ``log_softmax(s / T_s)`` (float32)."""
        return F.log_softmax(logits.float() / self.student_temp, dim=-1)

    def forward(
        self,
        student: dict[str, list[torch.Tensor]],
        teacher: dict[str, list[torch.Tensor]],
        teacher_temp: float,
    ) -> torch.Tensor:
        """Compute the loss.

        Parameters
        ----------
        student
            ``{view: [logits (B, K) of every student crop]}``, global crops first, in the
            same order as the teacher's.
        teacher
            ``{view: [logits (B, K) of every global crop]}``; gradients are not propagated.
        teacher_temp
            Teacher temperature ``T_t`` for this step.

        Returns
        -------
        Scalar loss (float32).
        """
        self._check(student, teacher)
        # The pairwise matmul below would run in bf16 under autocast: keep the loss in fp32.
        with torch.autocast(self.center.device.type, enabled=False):
            return self._forward(student, teacher, teacher_temp)

    def _forward(self, student, teacher, teacher_temp: float) -> torch.Tensor:
        own = {v: [self.head_logits(t, v) for t in teacher[v]] for v in self.views}
        if self.centering == "sinkhorn":
            t_probs = {
                v: self.sinkhorn_probs(torch.cat(own[v]), teacher_temp).reshape(
                    len(own[v]), *own[v][0].shape
                )
                for v in self.views
            }
        else:
            t_probs = {
                v: torch.stack([self.teacher_probs(t, teacher_temp, v) for t in own[v]])
                for v in self.views
            }
        self.last_teacher_probs = t_probs
        if self.view_heads:
            self.last_cross_teacher_probs = {
                (u, v): self.teacher_probs(
                    self.head_logits(teacher[v][0], self.term_head(u, v)), teacher_temp, u
                )
                for u in self.views
                for v in self.views
                if u != v
            }
        weights = self._weights()
        s_logp = {  # (head, view): one head's log-distribution of every crop of one view
            (h, v): torch.stack(
                [self.student_log_probs(self.head_logits(s, h)) for s in student[v]]
            )
            for h, v in {(self.term_head(u, v), v) for u, v in weights}
        }
        total = torch.zeros((), device=self.center.device, dtype=torch.float32)
        terms: dict[str, torch.Tensor] = {}
        for (u, v), weight in weights.items():
            tp = t_probs[u]  # (n_t, B, K)
            sl = s_logp[(self.term_head(u, v), v)]  # (n_s, B, K)
            n_t, b, k = tp.shape
            # all pairwise cross-entropies in one matmul: ce[i, j] = -mean_b sum_k tp[i] sl[j]
            ce = -(tp.reshape(n_t, b * k) @ sl.reshape(sl.shape[0], b * k).T) / b
            keep = torch.ones_like(ce, dtype=torch.bool)
            if u == v:  # never pair a student crop with the teacher output of the same crop
                idx = torch.arange(n_t, device=ce.device)
                keep[idx, idx] = False
            if not keep.any():
                raise ValueError(
                    f"view {u!r}: no valid teacher/student pairs (one global crop and no "
                    "local crops); use n_global >= 2 or n_local >= 1."
                )
            term = ce[keep].mean()
            terms[f"{u}->{v}"] = term.detach()
            total = total + weight * term
        self.last_terms = terms
        return total

    @torch.no_grad()
    def update_center(
        self, teacher_logits: list[torch.Tensor] | dict[str, list[torch.Tensor]]
    ) -> None:
        """EMA update of the center with the batch mean of the teacher logits.

        Parameters
        ----------
        teacher_logits
            Teacher logits of all global crops (a list, or the ``{view: [...]}`` dict passed
            to ``forward``; with ``view_centers=True`` it must be the dict and each view's
            center follows its own logits). Under ``torch.distributed`` the mean is over
            all ranks.
        """
        if self.view_centers:
            if not isinstance(teacher_logits, dict):
                raise ValueError(
                    "view_centers=True: pass the teacher logits as {view: [tensors]} so each "
                    "view's center is updated with its own logits."
                )
            for i, view in enumerate(self.views):
                batch_center = self._batch_mean(
                    [self.head_logits(t, view) for t in teacher_logits[view]]
                )
                self.center[i : i + 1].mul_(self.center_momentum).add_(
                    batch_center, alpha=1 - self.center_momentum
                )
            return
        if isinstance(teacher_logits, dict):
            teacher_logits = [t for v in teacher_logits.values() for t in v]
        batch_center = self._batch_mean(teacher_logits)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def _batch_mean(self, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        logits = torch.cat([t.detach().float() for t in teacher_logits])
        stats = torch.cat(
            [
                logits.sum(0),
                torch.tensor([logits.shape[0]], dtype=torch.float32, device=logits.device),
            ]
        )
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        return (stats[:-1] / stats[-1]).to(self.center.device)[None]


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo regulariser (DINOv2): ``-mean_i log(min_{j != i} ||x_i - x_j||)`` on L2-normalised rows.

    Spreads the batch's features uniformly over the sphere. DINOv2 applies it with weight
    0.1 to the student's class tokens of each global crop.

    Parameters
    ----------
    x
        ``(B, D)`` features, ``B >= 2``.
    eps
        Numerical floor inside the log and the distance.

    Returns
    -------
    Scalar (float32).
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"koleo_loss needs (B >= 2, D) features, got shape {tuple(x.shape)}.")
    with torch.autocast(x.device.type, enabled=False):
        x = F.normalize(x.float(), p=2, dim=-1, eps=eps)
        with torch.no_grad():
            sim = x @ x.T
            sim.fill_diagonal_(-2.0)  # exclude self-matches
            nn_idx = sim.argmax(dim=1)
        dist_nn = F.pairwise_distance(x, x[nn_idx], p=2, eps=eps)
        return -torch.log(dist_nn + eps).mean()
