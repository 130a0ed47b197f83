"""DINO projection head: MLP -> bottleneck -> L2-normalise -> weight-normalised prototypes."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ._config import MADConfig  # the defaults, written once


class DINOHead(nn.Module):
    """The DINO/DINOv2 projection head.

    ``n_layers`` linear layers (GELU between them) map the class token to a
    ``bottleneck_dim`` vector, which is L2-normalised and scored against ``n_prototypes``
    prototypes by a weight-normalised linear layer without bias. The prototype norms
    (weight-norm magnitudes) are frozen at 1, as in DINO, so the logits are cosine
    similarities; the trainer freezes :attr:`last_layer` entirely during the first epoch.

    Parameters
    ----------
    in_dim
        Backbone embedding width.
    n_layers
        Number of linear layers before the bottleneck normalisation (``1``: a single
        linear map ``in_dim -> bottleneck_dim``).
    hidden_dim
        Width of the hidden layers.
    bottleneck_dim
        Width of the normalised bottleneck.
    n_prototypes
        Number of prototypes ``K`` (output logits).
    """

    def __init__(
        self,
        in_dim: int,
        *,
        n_layers: int = MADConfig.head_layers,
        hidden_dim: int = MADConfig.head_hidden_dim,
        bottleneck_dim: int = MADConfig.head_bottleneck_dim,
        n_prototypes: int = MADConfig.n_prototypes,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}.")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if i < n_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        last = nn.Linear(bottleneck_dim, n_prototypes, bias=False)
        nn.init.trunc_normal_(last.weight, std=0.02)
        self.last_layer = weight_norm(last, dim=0)
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(False)  # prototype norms fixed at 1 (DINO's norm_last_layer)
        self.in_dim = in_dim
        self.n_prototypes = n_prototypes

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim)`` features to ``(B, n_prototypes)`` logits."""
        x = self.mlp(x)
        # eps sized for bf16 too: the bottleneck vector must not blow up when tiny
        x = F.normalize(x, dim=-1, p=2, eps=1e-6 if x.dtype == torch.float32 else 1e-3)
        return self.last_layer(x)


class ViewHeads(nn.Module):
    """One :class:`DINOHead` per view (and optionally one predictor per view), side by side.

    ``forward`` maps ``(B, in_dim)`` class tokens to ``(B, len(head_names) * n_prototypes)``:
    the logits of every head in :attr:`head_names` order. The heads are the views' own
    (``views[0]``, ``views[1]``); with ``predictors=True`` also ``predict_<view>`` for each
    view, heads that only the student uses, to score a crop of the *other* view against
    that view's teacher. Every crop is scored by every head, so MAD's cross-view terms can
    ask a crop of one view to predict the other view's teacher in that view's own
    prototype space (``MADLoss(view_heads=True)``) instead of pulling both views into one
    shared space, and with predictors without moving the head that makes the target.

    Parameters
    ----------
    in_dim
        Backbone embedding width.
    views
        The views, in output order.
    predictors
        Add one predictor head per view.
    **head_kwargs
        :class:`DINOHead` options, the same for every head.
    """

    def __init__(
        self, in_dim: int, views: tuple[str, ...], *, predictors: bool = False, **head_kwargs
    ) -> None:
        super().__init__()
        if len(views) < 2:
            raise ValueError(f"ViewHeads needs at least two views, got {list(views)}.")
        self.views = tuple(views)
        self.head_names = head_names(self.views, predictors=predictors)
        self.heads = nn.ModuleDict({h: DINOHead(in_dim, **head_kwargs) for h in self.head_names})
        self.in_dim = in_dim
        self.n_prototypes = self.heads[self.views[0]].n_prototypes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_dim)`` features to ``(B, len(head_names) * n_prototypes)`` logits."""
        return torch.cat([self.heads[h](x) for h in self.head_names], dim=-1)


def head_names(views: tuple[str, ...], *, predictors: bool = False) -> tuple[str, ...]:
    """Names of :class:`ViewHeads`' heads in output order: the views, then ``predict_<view>``."""
    return tuple(views) + (tuple(f"predict_{v}" for v in views) if predictors else ())
