"""Training curves of MAD pretraining: loss against ln(K), schedules, held-out Recall@K."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._constants import MODEL_HISTORY_FILE
from .._docs import doc_params, doc_show
from ._utils import finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..nn import MADModel

#: Series that identify a mapping as one training history (not a dict of models).
_HISTORY_KEYS = ("loss", "step", "lr", "teacher_temp", "eval_step", "recall@1", "recall@5")
PANELS = ("loss", "lr", "teacher_temp", "recall", "entropy")
DEFAULT_PANELS = ("loss", "lr", "teacher_temp", "recall")
_TITLES = {
    "loss": "loss",
    "lr": "learning rate",
    "teacher_temp": "teacher temperature",
    "recall": "Recall@K (held out)",
    "entropy": "teacher entropy",
}
_RECALL = re.compile(r"^recall@(\d+)$")


def _load_one(obj, name: str) -> dict[str, Any]:
    """Read a history dict from a model, ``History``, dict or path (file or model directory)."""
    if isinstance(obj, str | Path):
        path = Path(obj)
        if path.is_dir():
            path = path / MODEL_HISTORY_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no training history at {path}: pass a model directory holding "
                f"{MODEL_HISTORY_FILE}, the file itself, a MADModel or a history dict."
            )
        return json.loads(path.read_text())
    if hasattr(obj, "history") and not isinstance(obj, Mapping):
        hist = obj.history
        if hist is None:
            raise ValueError(
                f"{name}: the model carries no training history (model.history is None); "
                "models trained with mad.tl.pretrain have one, or pass history.json."
            )
        return _load_one(hist, name)
    if hasattr(obj, "to_dict") and hasattr(obj, "data"):  # train._history.History
        return obj.to_dict()
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(
        f"{name}: cannot read a training history from a {type(obj).__name__}; pass a MADModel, "
        "a history dict, or a path to history.json / a model directory."
    )


def _is_history(obj) -> bool:
    return isinstance(obj, Mapping) and any(k in obj for k in _HISTORY_KEYS)


def load_histories(model_or_history) -> dict[str, dict[str, Any]]:
    """Name -> history dict for one model/history or a mapping name -> model/history/path."""
    if isinstance(model_or_history, Mapping) and not _is_history(model_or_history):
        if not model_or_history:
            raise ValueError("an empty dict of models: nothing to plot.")
        return {str(k): _load_one(v, str(k)) for k, v in model_or_history.items()}
    return {"": _load_one(model_or_history, "model")}


def _series(h: Mapping, key: str, x_key: str = "step") -> tuple[np.ndarray, np.ndarray] | None:
    y = h.get(key)
    if y is None or len(y) == 0:
        return None
    y = np.asarray(y, dtype=float)
    x = h.get(x_key)
    x = np.asarray(x, dtype=float) if x is not None and len(x) == len(y) else np.arange(len(y))
    return x, y


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    # 'valid' part, padded at the start with the expanding mean so lengths match
    head = np.cumsum(y[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(y, kernel, mode="valid")])


def _recall_keys(h: Mapping) -> list[str]:
    keys = [k for k in h if _RECALL.match(k) and h[k] is not None and len(h[k])]
    return sorted(keys, key=lambda k: int(_RECALL.match(k).group(1)))


@doc_params(doc_show=doc_show)
def training_curves(
    model_or_history: MADModel | Mapping[str, Any] | str | Path,
    *,
    panels: Sequence[str] = DEFAULT_PANELS,
    recall_ks: Sequence[int] | None = None,
    smooth: int = 1,
    palette: Mapping[str, str] | None = None,
    title: str | None = None,
    panel_size: float = 3.4,
    show: bool | None = None,
    return_fig: bool = False,
) -> Figure | Axes | np.ndarray | None:
    """Plot pretraining curves over steps: loss, learning rate, temperature, Recall@K.

    The loss with the ln K collapse level, the learning rate, the teacher temperature and
    the held-out cross-view Recall@K (with chance level).

    Several models (e.g. MAD and its single-view ablations) are overlaid, one colour each.
    Series a history lacks are skipped; panels no model has data for are left out.

    Parameters
    ----------
    model_or_history
        A :class:`~madspatial.nn.MADModel` with ``.history``, a history dict (as saved in
        ``history.json``), a path to ``history.json`` or to a saved model directory, or a dict
        name -> any of these to overlay several runs.
    panels
        Which panels, in order: ``"loss"``, ``"lr"``, ``"teacher_temp"``, ``"recall"`` and
        ``"entropy"`` (teacher per-cell and batch-mean entropy against ln K).
    recall_ks
        Which Recall@K to draw (default: all recorded).
    smooth
        Running-mean window for the loss (1: raw; the raw curve stays visible, faint).
    palette
        Model name -> colour.
    title
        Figure title.
    panel_size
        Width of one panel in inches.
    {doc_show}

    Returns
    -------
    The Axes (one panel) or array of Axes (``show=False``), the Figure (``return_fig=True``) or
    None.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    bad = [p for p in panels if p not in PANELS]
    if bad:
        raise ValueError(f"unknown panels {bad}; choose from {PANELS}")
    hists = load_histories(model_or_history)
    names = list(hists)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {n: cycle[k % len(cycle)] for k, n in enumerate(names)}
    colors.update(palette or {})

    shown = [p for p in panels if _has_panel(hists, p)]
    if not shown:
        raise ValueError(
            f"the history has none of the series for panels {list(panels)} (keys found: "
            f"{sorted({k for h in hists.values() for k in h})})."
        )
    fig, axs = plt.subplots(
        1, len(shown), figsize=(panel_size * len(shown), 3.3), layout="constrained", squeeze=False
    )
    axs = axs[0]
    multi = len(names) > 1
    for ax, panel in zip(axs, shown, strict=True):
        _draw_panel(ax, panel, hists, colors, smooth=smooth, recall_ks=recall_ks, multi=multi)
    if multi:
        fig.legend(
            handles=[Line2D([], [], color=colors[n], lw=2, label=n) for n in names],
            loc="outside right upper",
            frameon=False,
            fontsize=8,
        )
    if title:
        fig.suptitle(title)
    out = axs[0] if len(axs) == 1 else axs
    return finish(fig, out, show=show, return_fig=return_fig)


def _has_panel(hists: Mapping[str, Mapping], panel: str) -> bool:
    """Whether any history has the series ``panel`` draws."""
    for h in hists.values():
        if panel == "recall" and _recall_keys(h):
            return True
        if panel == "entropy" and _series(h, "teacher_entropy"):
            return True
        if panel in ("loss", "lr", "teacher_temp") and _series(h, panel):
            return True
    return False


def _draw_panel(
    ax,
    panel: str,
    hists: Mapping[str, Mapping],
    colors: Mapping[str, str],
    *,
    smooth: int,
    recall_ks: Sequence[int] | None,
    multi: bool,
) -> None:
    """Draw one panel: every model's series, the axis labels and the legend of line styles."""
    extra_handles: list = []
    for name, h in hists.items():
        c = colors[name]
        if panel == "loss":
            _draw_loss(ax, h, name, c, smooth=smooth, extra_handles=extra_handles)
        elif panel in ("lr", "teacher_temp"):
            s = _series(h, panel)
            if s is not None:
                ax.plot(*s, color=c, lw=1.5)
            ax.set_ylabel("lr" if panel == "lr" else "temperature")
        elif panel == "entropy":
            _draw_entropy(ax, h, c, extra_handles=extra_handles)
        elif panel == "recall":
            _draw_recall(ax, h, c, recall_ks=recall_ks, multi=multi, extra_handles=extra_handles)
    ax.set_xlabel("step")
    ax.set_title(_TITLES[panel], fontsize=10)
    if panel == "lr":
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if extra_handles:
        ax.legend(handles=extra_handles, fontsize=7, frameon=False, loc="best")


def _draw_loss(ax, h: Mapping, name: str, c: str, *, smooth: int, extra_handles: list) -> None:
    """Draw the loss (smoothed, the raw curve faint), the ln K level and a collapse mark."""
    from matplotlib.lines import Line2D

    s = _series(h, "loss")
    if s is None:
        return
    x, y = s
    if smooth > 1:
        ax.plot(x, y, color=c, alpha=0.25, lw=0.8)
    ax.plot(x, _smooth(y, smooth), color=c, lw=1.5)
    ln_k = h.get("ln_k")
    if ln_k is None and h.get("n_prototypes"):
        ln_k = float(np.log(h["n_prototypes"]))
    if ln_k is not None:
        ax.axhline(ln_k, color=c, ls=":", lw=1)
        if not extra_handles:
            extra_handles.append(
                Line2D([], [], color="grey", ls=":", label="ln K (uniform output)")
            )
    if h.get("collapsed"):
        ax.text(
            0.98,
            0.95,
            f"{name or 'run'}: collapsed",
            color=c,
            ha="right",
            va="top",
            transform=ax.transAxes,
            fontsize=8,
        )
    ax.set_ylabel("loss")


def _draw_entropy(ax, h: Mapping, c: str, *, extra_handles: list) -> None:
    """Draw the teacher's per-cell and batch-mean entropy against ln K."""
    from matplotlib.lines import Line2D

    for key, ls in (("teacher_entropy", "-"), ("teacher_batch_entropy", "--")):
        s = _series(h, key)
        if s is not None:
            ax.plot(*s, color=c, ls=ls, lw=1.3)
    if h.get("ln_k") is not None:
        ax.axhline(h["ln_k"], color=c, ls=":", lw=1)
    ax.set_ylabel("teacher entropy (nats)")
    if not extra_handles:
        extra_handles.extend(
            [
                Line2D([], [], color="grey", ls="-", label="per cell"),
                Line2D([], [], color="grey", ls="--", label="batch mean"),
                Line2D([], [], color="grey", ls=":", label="ln K"),
            ]
        )


def _draw_recall(
    ax,
    h: Mapping,
    c: str,
    *,
    recall_ks: Sequence[int] | None,
    multi: bool,
    extra_handles: list,
) -> None:
    """Draw the held-out Recall@K curves, one line style per K, and chance for one model."""
    from matplotlib.lines import Line2D

    keys = _recall_keys(h)
    if recall_ks is not None:
        keys = [k for k in keys if int(_RECALL.match(k).group(1)) in set(recall_ks)]
    styles = ["-", "--", "-.", ":"]
    chance = h.get("recall_chance") or {}
    for i, k in enumerate(keys):
        s = _series(h, k, x_key="eval_step")
        ax.plot(*s, color=c, ls=styles[i % len(styles)], marker="o", ms=3, lw=1.3)
        if k in chance and not multi:
            ax.axhline(chance[k], color="grey", ls=styles[i % len(styles)], lw=0.8, alpha=0.6)
        if len(extra_handles) < len(keys):
            extra_handles.append(
                Line2D(
                    [],
                    [],
                    color="grey",
                    ls=styles[i % len(styles)],
                    marker="o",
                    ms=3,
                    label=k.replace("recall@", "Recall@"),
                )
            )
    if chance and not multi and not any(h_.get_label() == "chance (grey)" for h_ in extra_handles):
        extra_handles.append(Line2D([], [], color="grey", lw=0.8, alpha=0.6, label="chance (grey)"))
    ax.set_ylabel("cross-view recall")
    ax.set_ylim(-0.02, 1.02)
