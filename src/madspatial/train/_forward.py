"""One forward call for all crops of a step (what DDP and FSDP2 want to see)."""

from __future__ import annotations

import torch
from torch import nn


class MultiCropForward(nn.Module):
    """Runs a :class:`~madspatial.nn.MADModel` over lists of crops, batching equal shapes.

    Crops of the same shape (e.g. the two global microenvironment crops) are
    concatenated and go through the backbone in one call; the head runs once over all
    class tokens. Wrapping the whole step's forward in one module call lets DDP
    synchronise gradients once per backward and lets FSDP2 treat the wrapper as its
    root unit.

    ``forward(crops, with_head=True)`` takes ``{view: [tensor (B, C, H, W), ...]}`` and
    returns ``(features, logits)``, each ``{view: [tensor, ...]}`` in the input order
    (``logits`` is ``None`` when ``with_head=False``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, crops: dict[str, list[torch.Tensor]], with_head: bool = True
    ) -> tuple[dict[str, list[torch.Tensor]], dict[str, list[torch.Tensor]] | None]:
        flat = [(v, i, x) for v, xs in crops.items() for i, x in enumerate(xs)]
        groups: dict[tuple, list[int]] = {}
        for n, (_, _, x) in enumerate(flat):
            groups.setdefault(tuple(x.shape[1:]), []).append(n)
        feats: list[torch.Tensor | None] = [None] * len(flat)
        for members in groups.values():
            x = (
                torch.cat([flat[n][2] for n in members])
                if len(members) > 1
                else flat[members[0]][2]
            )
            f = self.model.forward_features(x)
            for n, part in zip(members, f.split([flat[n][2].shape[0] for n in members])):
                feats[n] = part
        features = {v: [None] * len(xs) for v, xs in crops.items()}
        for (v, i, _), f in zip(flat, feats):
            features[v][i] = f
        if not with_head:
            return features, None
        sizes = [f.shape[0] for f in feats]
        out = self.model.head(torch.cat(feats)).split(sizes)
        logits = {v: [None] * len(xs) for v, xs in crops.items()}
        for (v, i, _), z in zip(flat, out):
            logits[v][i] = z
        return features, logits
