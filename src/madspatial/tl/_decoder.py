"""Light decoders on frozen embeddings: cell types and virtual gene expression.

The paper's recipe: a two-layer MLP (hidden width 2x-4x the embedding), AdamW,
Smooth L1 loss, early stopping on a validation split, class balancing for
categorical targets. The embedding is frozen; only the decoder learns, so its
held-out score measures what the embedding holds.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from sklearn.metrics import balanced_accuracy_score, f1_score
from torch import nn
from torch.nn import functional as F

from .._constants import (
    LAYER_PRED,
    MODEL_CONFIG_FILE,
    MODEL_WEIGHTS_FILE,
    OBS_PRED_PREFIX,
    OBSM_MAD,
    UNS_DECODER_PREFIX,
)
from .._logging import added, logger, progress
from .._settings import settings
from .._version import __version__
from ..metrics import mae_per_gene, pearson_per_gene
from ._decoder_split import SPLITS as _SPLITS
from ._decoder_split import check_class_sizes, make_split, split_from_obs
from ._inputs import EXPRESSION, get_expression, get_obs, get_rep

DECODER_TYPE = "madspatial.Decoder"
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class Decoder:
    """A fitted two-layer MLP from an embedding to a target (returned by :func:`fit_decoder`).

    Attributes
    ----------
    kind
        ``"categorical"`` (an ``.obs`` label), ``"continuous"`` (a numeric ``.obs``
        column) or ``"expression"`` (genes).
    target
        Name of the target: the ``.obs`` column, or ``"expression"``.
    classes
        Class names (categorical), in output order.
    genes
        Gene names (expression), in output order.
    use_rep
        The ``.obsm`` key the decoder was trained on.
    normalize
        Transform applied to expression targets before training (``"log1p"``: counts
        scaled to ``target_sum`` per cell then log1p; ``"none"``); predictions live in
        that space.
    metrics
        Held-out scores from fitting (test split; the validation split when there is no
        test split).
    history
        Per-epoch training and validation loss, and the epoch kept.
    split
        ``{"train": [...], "val": [...], "test": [...]}`` obs names used in fitting.
    """

    def __init__(
        self,
        *,
        kind: str,
        target: str,
        in_dim: int,
        out_dim: int,
        hidden_dim: int,
        dropout: float = 0.1,
        activation: str = "gelu",
        classes: Sequence[str] | None = None,
        genes: Sequence[str] | None = None,
        use_rep: str = OBSM_MAD,
        normalize: str = "none",
        target_sum: float = 1e4,
        loss: str = "smooth_l1",
        params: dict | None = None,
    ):
        self.kind = kind
        self.target = target
        self.in_dim, self.out_dim, self.hidden_dim = int(in_dim), int(out_dim), int(hidden_dim)
        self.dropout, self.activation = float(dropout), activation
        self.classes = None if classes is None else [str(c) for c in classes]
        self.genes = None if genes is None else [str(g) for g in genes]
        self.use_rep, self.normalize, self.target_sum = use_rep, normalize, float(target_sum)
        self.loss = loss
        self.params = dict(params or {})
        self.metrics: dict = {}
        self.history: dict = {}
        self.split: dict[str, list[str]] = {}
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}.")
        with torch.random.fork_rng(devices=[]):  # placeholder weights: leave the global RNG alone
            self.net = _build_net(self)
        # standardization of inputs (and of regression targets), fitted on the train split
        self.x_mean = torch.zeros(self.in_dim)
        self.x_scale = torch.ones(self.in_dim)
        self.y_mean = torch.zeros(self.out_dim)
        self.y_scale = torch.ones(self.out_dim)

    def __repr__(self) -> str:
        what = f"{len(self.classes)} classes" if self.classes else f"{self.out_dim} output(s)"
        return (
            f"Decoder({self.kind} {self.target!r}: {self.in_dim} -> {self.hidden_dim} -> {what}, "
            f"use_rep={self.use_rep!r})"
        )

    # -- inference ----------------------------------------------------------------
    def _forward(self, X, batch_size: int = 8192) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.in_dim:
            raise ValueError(
                f"the decoder expects embeddings with {self.in_dim} dimensions "
                f"(trained on {self.use_rep!r}), got shape {X.shape}."
            )
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} embedding row(s) hold NaN/inf; drop those cells.")
        self.net.eval()
        outs = []
        with torch.no_grad():
            for start in range(0, len(X), batch_size):
                xb = (torch.from_numpy(X[start : start + batch_size]) - self.x_mean) / self.x_scale
                outs.append(self.net(xb).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.out_dim), np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (cells x classes) for embeddings ``X`` (categorical only)."""
        if self.kind != "categorical":
            raise TypeError(
                f"predict_proba needs a categorical decoder, this one is {self.kind!r}."
            )
        logits = torch.from_numpy(self._forward(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """Predictions for embeddings ``X`` (cells x dimensions).

        Class labels for a categorical decoder; values (cells x outputs) in the
        training target's units otherwise (log-normalized expression for
        ``normalize="log1p"``).
        """
        out = self._forward(X)
        if self.kind == "categorical":
            return np.asarray(self.classes, dtype=object)[out.argmax(axis=1)]
        return (out * self.y_scale.numpy() + self.y_mean.numpy()).astype(np.float32)

    # -- persistence ----------------------------------------------------------------
    def _config(self) -> dict:
        return {
            "type": DECODER_TYPE,
            "madspatial": __version__,
            "kind": self.kind,
            "target": self.target,
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "hidden_dim": self.hidden_dim,
            "dropout": self.dropout,
            "activation": self.activation,
            "classes": self.classes,
            "genes": self.genes,
            "use_rep": self.use_rep,
            "normalize": self.normalize,
            "target_sum": self.target_sum,
            "loss": self.loss,
            "params": self.params,
            "metrics": self.metrics,
            "history": self.history,
            "split": self.split,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (no pickle) into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()
        }
        for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
            tensors[name] = getattr(self, name).contiguous()
        save_file(tensors, str(directory / MODEL_WEIGHTS_FILE), metadata={"type": DECODER_TYPE})
        (directory / MODEL_CONFIG_FILE).write_text(
            json.dumps(self._config(), indent=1, default=_jsonable)
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Decoder:
        """Load a decoder written by :meth:`save`."""
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path = directory / MODEL_CONFIG_FILE
        if not cfg_path.is_file() or not (directory / MODEL_WEIGHTS_FILE).is_file():
            raise FileNotFoundError(
                f"{directory} is not a saved Decoder (expected {MODEL_CONFIG_FILE} and "
                f"{MODEL_WEIGHTS_FILE})."
            )
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("type") != DECODER_TYPE:
            raise ValueError(
                f"{cfg_path} describes a {cfg.get('type', 'MADModel')!r}, not a decoder; load "
                "models with mad.nn.MADModel.load."
            )
        dec = cls(
            **{
                k: cfg[k]
                for k in (
                    "kind",
                    "target",
                    "in_dim",
                    "out_dim",
                    "hidden_dim",
                    "dropout",
                    "activation",
                    "classes",
                    "genes",
                    "use_rep",
                    "normalize",
                    "target_sum",
                    "loss",
                    "params",
                )
            }
        )
        dec.metrics, dec.history, dec.split = cfg["metrics"], cfg["history"], cfg.get("split", {})
        tensors = load_file(str(directory / MODEL_WEIGHTS_FILE))
        dec.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
            setattr(dec, name, tensors[name])
        return dec


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# --- targets -------------------------------------------------------------------------
def _resolve_target(adata: AnnData, target, kind: str, layer: str | None):
    """(kind, name, layer, genes) for a target spec; see fit_decoder's docstring."""
    if kind not in ("auto", "categorical", "continuous", "expression"):
        raise ValueError(
            f"kind must be 'auto', 'categorical', 'continuous' or 'expression', got {kind!r}."
        )
    if not isinstance(target, str):
        return "expression", EXPRESSION, layer, list(target)
    if target in adata.obs.columns:
        col = adata.obs[target]
        if kind == "auto":
            numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            kind = "continuous" if numeric else "categorical"
        if kind == "expression":
            raise ValueError(f"target={target!r} is an .obs column; kind='expression' needs genes.")
        return kind, target, None, None
    if target == EXPRESSION:
        return "expression", EXPRESSION, layer, None
    if target in adata.layers:
        return "expression", EXPRESSION, target, None
    if target in adata.var_names:
        return "expression", EXPRESSION, layer, [target]
    raise KeyError(
        f"target={target!r} is neither an adata.obs column ({list(adata.obs.columns)}), "
        f"'expression', a layer ({list(adata.layers)}) nor a gene in adata.var_names."
    )


# --- fitting ---------------------------------------------------------------------------
def fit_decoder(
    adata: AnnData,
    *,
    target: str | Sequence[str],
    use_rep: str = OBSM_MAD,
    kind: Literal["auto", "categorical", "continuous", "expression"] = "auto",
    layer: str | None = None,
    normalize: Literal["auto", "log1p"] | None = "auto",
    target_sum: float = 1e4,
    hidden_factor: float = 2,
    dropout: float = 0.1,
    activation: Literal["gelu", "relu"] = "gelu",
    loss: Literal["smooth_l1", "cross_entropy"] = "smooth_l1",
    balance: Literal["weights", "sampler"] | None = "weights",
    split: tuple[float, float, float] | str = (0.7, 0.15, 0.15),
    groupby: str | None = None,
    max_epochs: int = 200,
    patience: int = 20,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    seed: int | None = None,
    device: str | None = None,
    key_added: str | None = None,
) -> Decoder:
    """Fit a two-layer MLP decoder from a frozen embedding to cell labels or expression.

    ``Linear(d, h) -> GELU -> Dropout -> Linear(h, out)`` with ``h = hidden_factor * d``,
    trained with AdamW on mini-batches. The embedding is standardized with the
    training cells' mean and standard deviation. Each epoch ends with the validation
    loss; training stops after ``patience`` epochs without improvement and the best
    epoch's weights are kept. Metrics are then computed on the test split.

    Categorical targets: the paper trains classifiers with Smooth L1 loss; here that
    is Smooth L1 between the softmax output and the one-hot label (summed over
    classes, i.e. a Brier-type loss), the default. ``loss="cross_entropy"`` is the
    usual alternative and often trains faster. Class imbalance is handled by loss
    weights inversely proportional to class frequency (``balance="weights"``) or by
    class-balanced sampling (``balance="sampler"``).

    Expression targets: counts are normalized to ``target_sum`` per cell and
    log1p-transformed (``normalize="auto"`` does so only when the values look like
    raw counts, i.e. non-negative integers, and uses already-normalized data as is).
    Each gene is standardized with the training cells' mean and standard deviation
    for the loss (Smooth L1), and predictions are returned in log-normalized units.
    Cells whose target is missing (NaN) are left out of fitting.

    Parameters
    ----------
    adata
        Annotated data matrix with the embedding in ``.obsm[use_rep]``.
    target
        What to predict: an ``.obs`` column (cell type: categorical; a numeric column:
        continuous), ``"expression"`` (all genes of ``.X`` or of ``layer``), a layer
        name (all genes of that layer), a gene name, or a list of gene names.
    use_rep
        Key of the embedding in ``.obsm``.
    kind
        ``"auto"`` (from the target), ``"categorical"``, ``"continuous"`` or ``"expression"``.
    layer
        Layer holding expression for ``target="expression"`` or gene names (default ``.X``).
    normalize
        Expression transform: ``"auto"``, ``"log1p"`` (always normalize + log1p) or ``None``.
    target_sum
        Counts per cell after normalization.
    hidden_factor
        Hidden width as a multiple of the embedding dimension (the paper uses 2 or 4).
    dropout
        Dropout rate after the hidden layer.
    activation
        ``"gelu"`` or ``"relu"``.
    loss
        Categorical loss: ``"smooth_l1"`` (paper) or ``"cross_entropy"``. Regression
        always uses Smooth L1.
    balance
        Class balancing for categorical targets: ``"weights"``, ``"sampler"`` or ``None``.
    split
        ``(train, val, test)`` fractions, or an ``.obs`` column whose values are
        ``"train"``, ``"val"`` (or ``"validation"``) and ``"test"`` (other values are
        left out). With a zero validation fraction there is no early stopping; with a
        zero test fraction the metrics come from the validation split.
    groupby
        ``.obs`` column of groups (slide, patient) kept whole within one split, so the
        metrics measure transfer to unseen groups. Otherwise categorical targets are
        split stratified by class.
    max_epochs
        Upper bound on training epochs.
    patience
        Epochs without validation improvement before stopping.
    batch_size
        Cells per optimisation step.
    lr
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    seed
        Seed of the split, the initialisation, dropout and batch order (default
        ``mad.settings.seed``); the global torch RNG is left untouched.
    device
        Torch device (default ``mad.settings.device``).
    key_added
        ``.uns`` key for the held-out metrics (default ``"mad_decoder_<target>"``).

    Returns
    -------
    The fitted :class:`Decoder`. Also writes ``.uns[key_added]``: ``{"metrics": {...},
    "params": {...}}`` (for expression, ``"per_gene"``: a DataFrame of held-out Pearson r
    and MAE per gene).
    """
    seed = settings.seed if seed is None else seed
    device = settings.resolve_device(device)
    X = get_rep(adata, use_rep)
    kind, name, layer, genes = _resolve_target(adata, target, kind, layer)
    classes = None
    applied = "none"
    if kind == "categorical":
        col = adata.obs[name]
        keep = ~col.isna().to_numpy()
        labels = col.astype(str).to_numpy()
        present = set(labels[keep])
        if isinstance(col.dtype, pd.CategoricalDtype):  # keep the user's category order
            classes = [str(c) for c in col.cat.categories if str(c) in present]
        else:
            classes = sorted(present, key=_natural)
        if len(classes) < 2:
            raise ValueError(
                f"target {name!r} has {len(classes)} class(es); a classifier needs 2+."
            )
        y = np.full(len(labels), -1, dtype=np.int64)
        y[keep] = pd.Index(classes).get_indexer(labels[keep])
    elif kind == "continuous":
        vals = pd.to_numeric(adata.obs[name], errors="coerce").to_numpy(dtype=np.float32)
        keep = np.isfinite(vals)
        y = vals[:, None]
    else:
        y, genes, applied = get_expression(
            adata, layer=layer, genes=genes, normalize=normalize, target_sum=target_sum
        )
        keep = np.isfinite(y).all(axis=1)
    if keep.sum() < 3:
        raise ValueError(f"only {int(keep.sum())} cell(s) have a target value; nothing to fit.")

    # split
    if isinstance(split, str):
        assign = split_from_obs(adata, split)
    else:
        sub = np.flatnonzero(keep)
        if groupby is not None:
            groups = get_obs(adata, groupby).astype(str).to_numpy()[sub]
        else:
            groups = None
        if kind == "categorical" and groups is None:
            check_class_sizes(y[sub], classes, split)
        assign = np.full(adata.n_obs, None, dtype=object)
        assign[sub] = make_split(
            len(sub),
            fractions=tuple(split),
            labels=y[sub] if kind == "categorical" else None,
            groups=groups,
            seed=seed,
        )
    assign[~keep] = None
    idx = {s: np.flatnonzero(assign == s) for s in _SPLITS}
    if len(idx["train"]) == 0:
        raise ValueError("no training cells after the split; check split= and the target's NaNs.")

    hidden = max(1, round(hidden_factor * X.shape[1]))
    out_dim = len(classes) if kind == "categorical" else y.shape[1]
    dec = Decoder(
        kind=kind,
        target=name,
        in_dim=X.shape[1],
        out_dim=out_dim,
        hidden_dim=hidden,
        dropout=dropout,
        activation=activation,
        classes=classes,
        genes=genes,
        use_rep=use_rep,
        normalize=applied,
        target_sum=target_sum,
        loss=loss if kind == "categorical" else "smooth_l1",
        params={
            "hidden_factor": hidden_factor,
            "balance": balance,
            "groupby": groupby,
            "split": split if isinstance(split, str) else list(split),
            "max_epochs": max_epochs,
            "patience": patience,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
            "seed": seed,
            "layer": layer,
        },
    )
    dec.split = {s: adata.obs_names[idx[s]].tolist() for s in _SPLITS}
    _train(
        dec,
        X,
        y,
        idx,
        balance=balance,
        max_epochs=max_epochs,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        device=device,
    )

    eval_on = "test" if len(idx["test"]) else "val" if len(idx["val"]) else "train"
    if eval_on == "train":
        warnings.warn(
            "no validation or test cells: the decoder's metrics are training scores.", stacklevel=2
        )
    e = idx[eval_on]
    dec.metrics = _score(dec, X[e], y[e])
    dec.metrics.update({"evaluated_on": eval_on, "n_cells": len(e)})
    key = key_added or f"{UNS_DECODER_PREFIX}{name}"
    adata.uns[key] = _uns_entry(dec)
    added(key, "uns")
    _log_metrics(dec)
    return dec


def _natural(s: str):
    return (0, float(s), s) if _is_number(s) else (1, 0.0, s)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _train(
    dec, X, y, idx, *, balance, max_epochs, patience, batch_size, lr, weight_decay, seed, device
):
    categorical = dec.kind == "categorical"
    tr, va = idx["train"], idx["val"]
    xm = X[tr].mean(axis=0)
    xs = X[tr].std(axis=0)
    dec.x_mean = torch.from_numpy(xm.astype(np.float32))
    dec.x_scale = torch.from_numpy(np.where(xs > 0, xs, 1.0).astype(np.float32))
    if not categorical:
        ym, ys = y[tr].mean(axis=0), y[tr].std(axis=0)
        dec.y_mean = torch.from_numpy(ym.astype(np.float32))
        dec.y_scale = torch.from_numpy(np.where(ys > 0, ys, 1.0).astype(np.float32))

    def tensors(rows):
        xb = (torch.from_numpy(X[rows].astype(np.float32)) - dec.x_mean) / dec.x_scale
        if categorical:
            yb = torch.from_numpy(y[rows])
        else:
            yb = (torch.from_numpy(y[rows].astype(np.float32)) - dec.y_mean) / dec.y_scale
        return xb.to(device), yb.to(device)

    x_tr, y_tr = tensors(tr)
    x_va, y_va = tensors(va) if len(va) else (None, None)
    class_w = None
    sample_p = None
    if categorical:
        counts = np.bincount(y[tr], minlength=dec.out_dim).astype(np.float64)
        missing = [c for c, n in zip(dec.classes, counts) if n == 0]
        if missing:
            warnings.warn(
                f"classes absent from the training split (never predicted): {missing}; with "
                "groupby, some groups hold all cells of these classes.",
                stacklevel=3,
            )
        inv = np.divide(
            counts.sum() / max(1, (counts > 0).sum()),
            counts,
            out=np.zeros_like(counts),
            where=counts > 0,
        )
        if balance == "weights":
            class_w = torch.tensor(inv, dtype=torch.float32, device=device)
        elif balance == "sampler":
            sample_p = torch.tensor(inv[y[tr]], dtype=torch.float64)
        elif balance is not None:
            raise ValueError(f"balance must be 'weights', 'sampler' or None, got {balance!r}.")

    def loss_fn(out, target):
        if not categorical:
            return F.smooth_l1_loss(out, target)
        w = class_w[target] if class_w is not None else torch.ones(len(target), device=out.device)
        if dec.loss == "cross_entropy":
            per = F.cross_entropy(out, target, reduction="none")
        elif dec.loss == "smooth_l1":
            onehot = F.one_hot(target, dec.out_dim).to(out.dtype)
            per = F.smooth_l1_loss(torch.softmax(out, dim=1), onehot, reduction="none").sum(dim=1)
        else:
            raise ValueError(f"loss must be 'smooth_l1' or 'cross_entropy', got {dec.loss!r}.")
        return (per * w).sum() / w.sum().clamp_min(1e-12)

    history = {"train_loss": [], "val_loss": [], "best_epoch": None}
    with torch.random.fork_rng(devices=[]), _threads_for(dec):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        dec.net = _build_net(dec).to(device)
        opt = torch.optim.AdamW(dec.net.parameters(), lr=lr, weight_decay=weight_decay)
        best, best_state, waited = np.inf, None, 0
        n = len(tr)
        for epoch in progress(range(max_epochs), desc=f"decoder {dec.target}"):
            dec.net.train()
            order = (
                torch.multinomial(sample_p, n, replacement=True, generator=gen)
                if sample_p is not None
                else torch.randperm(n, generator=gen)
            )
            total = 0.0
            for start in range(0, n, batch_size):
                b = order[start : start + batch_size].to(device)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(dec.net(x_tr[b]), y_tr[b])
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            history["train_loss"].append(total / n)
            if x_va is None:
                continue
            dec.net.eval()
            with torch.no_grad():
                val = loss_fn(dec.net(x_va), y_va).item()
            history["val_loss"].append(val)
            if val < best - 1e-6:
                best, waited, history["best_epoch"] = val, 0, epoch
                best_state = {k: v.detach().clone() for k, v in dec.net.state_dict().items()}
            else:
                waited += 1
                if waited >= patience:
                    break
        if best_state is not None:
            dec.net.load_state_dict(best_state)
    dec.net = dec.net.cpu().eval()
    history["epochs"] = len(history["train_loss"])
    dec.history = history


@contextlib.contextmanager
def _threads_for(dec: Decoder):
    """One torch thread for small decoders: thread start-up and contention (shared cores)
    cost far more than their matmuls (50x slower measured with 2 threads on 2 busy
    cores); large decoders keep torch's setting."""
    before = torch.get_num_threads()
    small = dec.in_dim * dec.hidden_dim + dec.hidden_dim * dec.out_dim < 200_000
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def _build_net(dec: Decoder) -> nn.Sequential:
    """The two-layer MLP; its initialisation draws from the (caller-seeded) torch RNG."""
    return nn.Sequential(
        nn.Linear(dec.in_dim, dec.hidden_dim),
        _ACTIVATIONS[dec.activation](),
        nn.Dropout(dec.dropout),
        nn.Linear(dec.hidden_dim, dec.out_dim),
    )


def _score(dec: Decoder, X: np.ndarray, y: np.ndarray) -> dict:
    if len(X) == 0:
        return {}
    if dec.kind == "categorical":
        pred = dec.predict(X)
        true = np.asarray(dec.classes, dtype=object)[y]
        return {
            "accuracy": float(np.mean(pred == true)),
            "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
            "macro_f1": float(
                f1_score(true, pred, average="macro", labels=dec.classes, zero_division=0)
            ),
        }
    pred = dec.predict(X)
    r = pearson_per_gene(y, pred)
    mae = mae_per_gene(y, pred)
    out = {
        "mean_pearson": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
        "median_pearson": float(np.nanmedian(r)) if np.isfinite(r).any() else float("nan"),
        "n_undefined_pearson": int(np.isnan(r).sum()),
        "mean_mae": float(mae.mean()),
    }
    if dec.kind == "expression":
        out["pearson_per_gene"] = dict(zip(dec.genes, r.tolist()))
        out["mae_per_gene"] = dict(zip(dec.genes, mae.tolist()))
    return out


def _uns_entry(dec: Decoder) -> dict:
    scalars = {k: v for k, v in dec.metrics.items() if not isinstance(v, dict)}
    entry = {
        "metrics": scalars,
        "params": {
            "kind": dec.kind,
            "target": dec.target,
            "use_rep": dec.use_rep,
            "normalize": dec.normalize,
            "loss": dec.loss,
            "epochs": dec.history.get("epochs"),
            "best_epoch": dec.history.get("best_epoch"),
            **dec.params,
        },
    }
    # .uns must stay writable to h5ad/zarr, which has no None
    entry["params"] = {k: ("none" if v is None else v) for k, v in entry["params"].items()}
    if "pearson_per_gene" in dec.metrics:
        entry["per_gene"] = pd.DataFrame(
            {"pearson": dec.metrics["pearson_per_gene"], "mae": dec.metrics["mae_per_gene"]}
        )
    return entry


def _log_metrics(dec: Decoder) -> None:
    m = dec.metrics
    if dec.kind == "categorical":
        logger.info(
            "    decoder %r: held-out accuracy %.3f (balanced %.3f) on %d cells",
            dec.target,
            m.get("accuracy", np.nan),
            m.get("balanced_accuracy", np.nan),
            m.get("n_cells", 0),
        )
    else:
        logger.info(
            "    decoder %r: held-out mean Pearson %.3f on %d cells",
            dec.target,
            m.get("mean_pearson", np.nan),
            m.get("n_cells", 0),
        )


def predict(
    decoder: Decoder,
    adata: AnnData,
    *,
    use_rep: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Write a decoder's predictions for every cell into ``adata``.

    Parameters
    ----------
    decoder
        A :class:`Decoder` from :func:`fit_decoder` or :meth:`Decoder.load`.
    adata
        Annotated data matrix with the embedding the decoder was trained on.
    use_rep
        Key of the embedding in ``.obsm`` (default: the decoder's ``use_rep``).
    key_added
        Where predictions go (default ``"mad_pred_<target>"`` in ``.obs`` for labels and
        continuous targets, ``"mad_pred"`` in ``.layers`` for expression).
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Writes

    - categorical: ``.obs[key_added]``, categorical with the decoder's classes;
    - continuous: ``.obs[key_added]``, float;
    - expression: ``.layers[key_added]`` (float32, log-normalized units) for the genes
      of ``adata.var_names`` the decoder predicts; other genes of ``adata`` are NaN. If
      some decoder genes are not in ``adata.var_names`` (e.g. an imaging-only table),
      all predictions also go to ``.obsm[key_added]`` as a DataFrame with one column per
      decoder gene;
    - ``.uns["mad_decoder_<target>"]``: the decoder's held-out metrics and parameters.
    """
    if not isinstance(decoder, Decoder):
        raise TypeError(f"decoder must be a madspatial Decoder, got {type(decoder).__name__}.")
    adata = adata.copy() if copy else adata
    rep = use_rep or decoder.use_rep
    pred = decoder.predict(get_rep(adata, rep))
    if decoder.kind == "categorical":
        key = key_added or f"{OBS_PRED_PREFIX}{decoder.target}"
        adata.obs[key] = pd.Categorical(pred, categories=decoder.classes)
        added(key, "obs")
    elif decoder.kind == "continuous":
        key = key_added or f"{OBS_PRED_PREFIX}{decoder.target}"
        adata.obs[key] = pred[:, 0]
        added(key, "obs")
    else:
        key = key_added or LAYER_PRED
        names = adata.var_names.astype(str)
        pos = names.get_indexer(decoder.genes)
        found = pos >= 0
        if found.any():
            layer = np.full(adata.shape, np.nan, dtype=np.float32)
            layer[:, pos[found]] = pred[:, found]
            adata.layers[key] = layer
            added(key, "layers")
        if not found.all():
            logger.info(
                "    %d of %d decoder genes are not in adata.var_names", (~found).sum(), len(found)
            )
            adata.obsm[key] = pd.DataFrame(pred, index=adata.obs_names, columns=decoder.genes)
            added(key, "obsm")
    uns_key = f"{UNS_DECODER_PREFIX}{decoder.target}"
    adata.uns[uns_key] = _uns_entry(decoder)
    added(uns_key, "uns")
    return adata if copy else None
