"""Light decoders on frozen embeddings: cell types and virtual gene expression.

The paper's recipe: a two-layer MLP (hidden width 2x-4x the embedding), AdamW,
Smooth L1 loss, early stopping on a validation split, class balancing for
categorical targets. The embedding is frozen; only the decoder learns, so its
held-out score measures what the embedding holds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from sklearn.metrics import balanced_accuracy_score, f1_score

from .._constants import (
    LAYER_PRED,
    MODEL_CONFIG_FILE,
    MODEL_WEIGHTS_FILE,
    OBS_IN_SAMPLE_SUFFIX,
    OBS_PRED_PREFIX,
    OBSM_MAD,
    UNS_DECODER_PREFIX,
)
from .._docs import doc_copy, doc_params
from .._logging import added, logger, progress
from .._serialize import atomic_write as _atomic_write
from .._serialize import json_default as _jsonable
from .._settings import settings
from .._version import __version__
from .._warnings import user_stacklevel as _user_stacklevel
from ..metrics import mae_per_gene, pearson_per_gene
from ._decoder_split import SPLITS as _SPLITS
from ._decoder_split import check_class_sizes, make_folds, make_split, split_from_obs
from ._inputs import EXPRESSION, get_expression, get_obs, get_rep, looks_like_counts

if TYPE_CHECKING:  # torch is imported where it is used: `import madspatial` stays light
    from torch import nn

DECODER_TYPE = "madspatial.Decoder"
#: Version of the saved decoder layout; 1 = files written before it was recorded.
DECODER_FORMAT_VERSION = 2
_ACTIVATIONS = ("gelu", "relu")
_TENSORS = ("x_mean", "x_scale", "y_mean", "y_scale")
_ARCH = (
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
    value_range
        ``(low, high)`` bounds predictions are clipped to (``None``: unbounded side), or
        ``None``. Expression decoders whose training values are all >= 0 (counts,
        log1p-normalized expression) get ``(0.0, None)``: a negative "expression" would
        flip the sign of downstream fold changes.
    metrics
        Held-out scores from fitting (test split; the validation split when there is no
        test split); with ``cross_fit``, also ``cross_fit_*`` scores of the out-of-fold
        predictions of all cells.
    history
        Per-epoch training and validation loss, and the epoch kept.
    split
        ``{"train": [...], "val": [...], "test": [...]}`` obs names used in fitting.
    folds
        With ``cross_fit=k``: the ``k`` fold decoders, each trained without the cells of
        ``fold_cells[i]``, which it predicts in :func:`predict`.
    fold_cells
        With ``cross_fit=k``: the obs names each fold decoder held out.
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
        value_range: Sequence[float | None] | None = None,
    ):
        import torch

        self.kind = kind
        self.target = target
        self.in_dim, self.out_dim, self.hidden_dim = int(in_dim), int(out_dim), int(hidden_dim)
        self.dropout, self.activation = float(dropout), activation
        self.classes = None if classes is None else [str(c) for c in classes]
        self.genes = None if genes is None else [str(g) for g in genes]
        self.use_rep, self.normalize, self.target_sum = use_rep, normalize, float(target_sum)
        self.loss = loss
        self.params = dict(params or {})
        self.value_range = _check_range(value_range)
        self.metrics: dict = {}
        self.history: dict = {}
        self.split: dict[str, list[str]] = {}
        self.folds: list[Decoder] = []
        self.fold_cells: list[list[str]] = []
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
        folds = f", cross_fit={len(self.folds)}" if self.folds else ""
        return (
            f"Decoder({self.kind} {self.target!r}: {self.in_dim} -> {self.hidden_dim} -> {what}, "
            f"use_rep={self.use_rep!r}{folds})"
        )

    # -- inference ----------------------------------------------------------------
    def _forward(self, X, batch_size: int = 8192) -> np.ndarray:
        import torch

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
        import torch

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
        ``normalize="log1p"``), clipped to :attr:`value_range`.
        """
        out = self._forward(X)
        if self.kind == "categorical":
            return np.asarray(self.classes, dtype=object)[out.argmax(axis=1)]
        vals = (out * self.y_scale.numpy() + self.y_mean.numpy()).astype(np.float32)
        if self.value_range is not None:
            lo, hi = self.value_range
            vals = np.clip(vals, lo, hi)  # a bound of None leaves that side open
        return vals

    # -- persistence ----------------------------------------------------------------
    def _config(self) -> dict:
        return {
            "type": DECODER_TYPE,
            "format_version": DECODER_FORMAT_VERSION,
            "madspatial": __version__,
            **{k: getattr(self, k) for k in _ARCH},
            "value_range": None if self.value_range is None else list(self.value_range),
            "metrics": self.metrics,
            "history": self.history,
            "split": self.split,
            "folds": [
                {"cells": cells, "history": fold.history}
                for fold, cells in zip(self.folds, self.fold_cells, strict=True)
            ],
        }

    def _tensors(self) -> dict:
        out = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        for name in _TENSORS:
            out[name] = getattr(self, name).contiguous()
        for i, fold in enumerate(self.folds):
            out.update({f"fold{i}.{k}": v for k, v in fold._tensors().items()})
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (no pickle) into ``directory``.

        Each file is written beside its final name and renamed over it (atomic on POSIX),
        with the permissions the umask gives (typically 0644), so an interrupted save never
        leaves a half-written file under the final name. ``config.json`` records the
        format version and the sha256 of the weights; :meth:`load` checks both.
        """
        from safetensors.torch import save

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / MODEL_WEIGHTS_FILE
        meta = {"type": DECODER_TYPE, "format_version": str(DECODER_FORMAT_VERSION)}
        tensors = self._tensors()
        # bytes written with a plain open: safetensors' save_file makes 0600 files
        blob = save(tensors, metadata=meta)
        _atomic_write(weights, lambda p: p.write_bytes(blob))
        cfg = self._config()
        cfg["weights_sha256"] = _sha256(weights)
        text = json.dumps(cfg, indent=1, default=_jsonable)
        _atomic_write(directory / MODEL_CONFIG_FILE, lambda p: p.write_text(text))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Decoder:
        """Load a decoder written by :meth:`save` (checks its format version and checksum)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, weights = directory / MODEL_CONFIG_FILE, directory / MODEL_WEIGHTS_FILE
        if not cfg_path.is_file() or not weights.is_file():
            raise FileNotFoundError(
                f"{directory} is not a saved Decoder (expected {MODEL_CONFIG_FILE} and "
                f"{MODEL_WEIGHTS_FILE})."
            )
        try:
            cfg = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{cfg_path} is not valid JSON ({err}): the file is damaged or truncated; "
                "save the decoder again (Decoder.save) or re-fit it."
            ) from err
        if not isinstance(cfg, dict) or cfg.get("type") != DECODER_TYPE:
            what = cfg.get("type", "MADModel") if isinstance(cfg, dict) else type(cfg).__name__
            raise ValueError(
                f"{cfg_path} describes a {what!r}, not a decoder; load models with "
                "mad.nn.MADModel.load."
            )
        fmt = cfg.get("format_version", 1)  # files written before versioning are format 1
        if (
            isinstance(fmt, bool)
            or not isinstance(fmt, int)
            or not 1 <= fmt <= (DECODER_FORMAT_VERSION)
        ):
            raise ValueError(
                f"{cfg_path} has decoder format_version={fmt!r} (written by madspatial "
                f"{cfg.get('madspatial', 'unknown')}), but madspatial {__version__} reads "
                f"format_version 1 to {DECODER_FORMAT_VERSION}; install the madspatial that "
                "wrote it, or re-fit the decoder with this one."
            )
        expected = cfg.get("weights_sha256")
        if expected is not None and _sha256(weights) != expected:
            raise ValueError(
                f"{weights} does not match the sha256 recorded in {cfg_path}: the weights are "
                "damaged or come from another save; save the decoder again or re-fit it."
            )
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"{weights} cannot be read ({err}): the file is damaged or truncated; save "
                "the decoder again or re-fit it."
            ) from err
        arch = {k: cfg[k] for k in _ARCH}
        if fmt == 1:  # no recorded range: log1p expression is >= 0 by construction
            rng = (
                [0.0, None]
                if arch["kind"] == "expression" and arch["normalize"] == "log1p"
                else None
            )
        else:
            rng = cfg.get("value_range")
        dec = cls._from_tensors(arch, rng, tensors, prefix="")
        dec.metrics, dec.history, dec.split = cfg["metrics"], cfg["history"], cfg.get("split", {})
        for i, fold in enumerate(cfg.get("folds", [])):
            sub = cls._from_tensors(arch, rng, tensors, prefix=f"fold{i}.")
            sub.history = fold.get("history", {})
            dec.folds.append(sub)
            dec.fold_cells.append([str(c) for c in fold["cells"]])
        return dec

    @classmethod
    def _from_tensors(cls, arch: dict, value_range, tensors: dict, *, prefix: str) -> Decoder:
        dec = cls(**arch, value_range=value_range)
        net = f"{prefix}net."
        dec.net.load_state_dict({k[len(net) :]: v for k, v in tensors.items() if k.startswith(net)})
        for name in _TENSORS:
            setattr(dec, name, tensors[f"{prefix}{name}"])
        return dec


def _check_range(value_range) -> tuple[float | None, float | None] | None:
    if value_range is None:
        return None
    lo, hi = value_range
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    if lo is not None and hi is not None and hi < lo:
        raise ValueError(f"value_range must be (low, high) with low <= high, got {value_range}.")
    return lo, hi


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    cross_fit: int | None = None,
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
    for the loss (Smooth L1), and predictions are returned in log-normalized units,
    clipped at 0 when the training values are all >= 0 (counts, log1p expression), so
    a prediction is never a negative expression (:attr:`Decoder.value_range`).
    Cells whose target is missing (NaN) are left out of fitting (for expression, with a
    logged count; ``normalize="auto"`` then judges counts on the other cells, and when
    normalizing, a NaN in any gene leaves the cell out since its total is undefined). A
    gene that is NaN in every cell, or an infinite value, is an error.

    Predictions of a decoder for the cells it trained on are in-sample (optimistic).
    ``cross_fit=k`` also fits ``k`` fold decoders, each on all labelled cells but one
    fold (whole groups per fold with ``groupby``), so :func:`predict` can give every
    labelled cell an out-of-fold prediction; this costs ``k`` more fits.

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
    cross_fit
        Number of cross-fitting folds (an int >= 2, e.g. 5), or ``None``. With ``k``,
        every cell with a target is predicted by :func:`predict` with a fold decoder that
        never saw it (not in training nor in early stopping), and ``metrics`` gains
        ``cross_fit_*`` scores over these out-of-fold predictions of all cells.
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
    y, keep, classes, genes, applied, value_range = _build_target(
        adata, kind, name, layer=layer, genes=genes, normalize=normalize, target_sum=target_sum
    )
    if keep.sum() < 3:
        raise ValueError(f"only {int(keep.sum())} cell(s) have a target value; nothing to fit.")

    # split
    sub = np.flatnonzero(keep)
    groups = None if groupby is None else get_obs(adata, groupby).astype(str).to_numpy()[sub]
    if isinstance(split, str):
        assign = split_from_obs(adata, split)
    else:
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
    folds = None
    if cross_fit is not None:  # before training: a bad cross_fit fails fast
        _need_unique_names(adata.obs_names, "fit_decoder(cross_fit=...)")
        folds = make_folds(
            len(sub),
            cross_fit,
            labels=y[sub] if kind == "categorical" else None,
            groups=groups,
            seed=seed,
        )

    # the options of the fit, also recorded in the decoder's params
    fit_opts = {
        "balance": balance,
        "max_epochs": max_epochs,
        "patience": patience,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
    }
    hidden = max(1, round(hidden_factor * X.shape[1]))
    out_dim = len(classes) if kind == "categorical" else y.shape[1]
    arch = {
        "kind": kind,
        "target": name,
        "in_dim": X.shape[1],
        "out_dim": out_dim,
        "hidden_dim": hidden,
        "dropout": dropout,
        "activation": activation,
        "classes": classes,
        "genes": genes,
        "use_rep": use_rep,
        "normalize": applied,
        "target_sum": target_sum,
        "loss": loss if kind == "categorical" else "smooth_l1",
        "params": {
            "hidden_factor": hidden_factor,
            **fit_opts,
            "groupby": groupby,
            "split": split if isinstance(split, str) else list(split),
            "layer": layer,
            "cross_fit": cross_fit,
        },
        "value_range": value_range,
    }
    train_opts = {**fit_opts, "device": device}
    dec = Decoder(**arch)
    dec.split = {s: adata.obs_names[idx[s]].tolist() for s in _SPLITS}
    _train(dec, X, y, idx, **train_opts)

    eval_on = "test" if len(idx["test"]) else "val" if len(idx["val"]) else "train"
    if eval_on == "train":
        warnings.warn(
            "no validation or test cells: the decoder's metrics are training scores.",
            stacklevel=_user_stacklevel(),
        )
    e = idx[eval_on]
    dec.metrics = _score(dec, dec.predict(X[e]), y[e])
    dec.metrics.update({"evaluated_on": eval_on, "n_cells": len(e)})
    if folds is not None:
        val_share = 0.15 if isinstance(split, str) else split[1] / (split[0] + split[1])
        _cross_fit(
            dec,
            arch,
            X,
            y,
            sub,
            folds,
            groups=groups,
            val_share=val_share,
            names=adata.obs_names,
            train_opts=train_opts,
        )
    key = key_added or f"{UNS_DECODER_PREFIX}{name}"
    adata.uns[key] = _uns_entry(dec)
    added(key, "uns")
    _log_metrics(dec)
    return dec


def _build_target(adata, kind, name, *, layer, genes, normalize, target_sum):
    """(y, has-target mask, classes, genes, transform, value range) of a decoder target."""
    classes = None
    applied = "none"
    value_range = None
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
        y, genes, applied = _expression_target(
            adata, layer=layer, genes=genes, normalize=normalize, target_sum=target_sum
        )
        keep = np.isfinite(y).all(axis=1)
        if applied == "log1p" or (keep.any() and (y[keep] >= 0).all()):
            value_range = (0.0, None)  # expression is never negative: clip predictions at 0
    return y, keep, classes, genes, applied, value_range


def _cross_fit(dec, arch, X, y, sub, folds, *, groups, val_share, names, train_opts) -> None:
    """Fit one decoder per fold on the other folds' cells; score their out-of-fold predictions.

    Each fold model gets its own train/validation split (for early stopping) of the cells
    outside its fold, group-aware when ``groups`` is given, so it never sees the cells it
    predicts, not even for choosing the epoch.
    """
    k = int(folds.max()) + 1
    categorical = dec.kind == "categorical"
    fractions = (1.0 - val_share, val_share, 0.0)
    oof = np.empty(len(sub), dtype=object) if categorical else np.zeros((len(sub), dec.out_dim))
    for f in progress(range(k), desc=f"cross-fit {dec.target}"):
        held, rest = sub[folds == f], sub[folds != f]
        inner = make_split(
            len(rest),
            fractions=fractions,
            labels=y[rest] if categorical else None,
            groups=None if groups is None else groups[folds != f],
            seed=train_opts["seed"] + 1 + f,
        )
        fold = Decoder(**arch)
        fold_idx = {s: rest[inner == s] for s in _SPLITS}
        fold.split = {s: names[fold_idx[s]].tolist() for s in _SPLITS}  # in memory only
        _train(fold, X, y, fold_idx, **train_opts)
        oof[folds == f] = fold.predict(X[held])
        dec.folds.append(fold)
        dec.fold_cells.append(names[held].tolist())
    scores = _score(dec, oof, y[sub])
    dec.metrics.update(
        {f"cross_fit_{m}": v for m, v in scores.items() if not isinstance(v, dict)},
    )
    dec.metrics.update({"cross_fit_k": k, "cross_fit_n_cells": len(sub)})


def _expression_target(adata, *, layer, genes, normalize, target_sum):
    """(values, genes, transform) of an expression target; NaN rows for cells left out.

    Missing values (NaN) are never allowed to change the transform: ``normalize="auto"``
    judges counts on the cells without NaN, cells with a NaN in the genes used are left
    out (logged with their number), a gene that is NaN in every cell is an error naming
    it, and inf is an error.
    """
    if normalize not in ("auto", "log1p", None, "none"):
        raise ValueError(f"normalize must be 'auto', 'log1p' or None, got {normalize!r}.")
    raw = adata.X if layer is None or layer == "X" else adata.layers.get(layer)
    if raw is None:  # get_expression names the problem (no .X, unknown layer)
        return get_expression(
            adata, layer=layer, genes=genes, normalize=normalize, target_sum=target_sum
        )
    where = "adata.X" if layer is None or layer == "X" else f"adata.layers[{layer!r}]"
    nan_cells, nan_per_gene, n_inf = _scan_missing(raw)
    if n_inf:
        raise ValueError(
            f"{where} holds {n_inf} infinite value(s); expression must be finite (NaN marks a "
            "missing value). Replace them, e.g. x[~np.isfinite(x)] = np.nan, or drop the cells."
        )
    names = adata.var_names.astype(str)
    all_nan = nan_per_gene == adata.n_obs
    if not nan_per_gene.any():
        return get_expression(
            adata, layer=layer, genes=genes, normalize=normalize, target_sum=target_sum
        )
    cols = np.arange(len(names)) if genes is None else names.get_indexer(list(genes))
    cols = cols[cols >= 0]  # unknown genes: get_expression raises its KeyError below
    dead = names[cols][all_nan[cols]].tolist()
    if dead:
        raise ValueError(
            f"{len(dead)} gene(s) of {where} are NaN in every cell: {dead[:10]}"
            f"{' ...' if len(dead) > 10 else ''}; there is nothing to learn for them. Drop "
            f"them (adata = adata[:, ~adata.var_names.isin({dead[:3]!r})].copy()) or pass "
            "target= a list of the other genes."
        )
    if normalize == "auto":
        normalize = "log1p" if _counts_apart_from_nan(raw) else None
        if normalize:
            logger.info(
                "    %s looks like raw counts (NaN aside): normalizing to %g per cell and log1p",
                where,
                target_sum,
            )
    if normalize == "log1p":
        if all_nan.any():
            bad = names[all_nan].tolist()
            raise ValueError(
                f"{len(bad)} gene(s) of {where} are NaN in every cell ({bad[:10]}), so no "
                "cell's total count is defined for normalize='log1p'. Drop them "
                f"(adata = adata[:, ~adata.var_names.isin({bad[:3]!r})].copy())."
            )
        drop = nan_cells(np.arange(len(names)))  # totals use every gene
        if drop.all():
            worst = names[np.argsort(-nan_per_gene, kind="stable")[:5]].tolist()
            raise ValueError(
                f"every cell has a NaN in some gene of {where}, so no cell's total count is "
                f"defined for normalize='log1p' (most NaN in {worst}). Fill the missing "
                "counts (e.g. with 0) or drop the genes holding them."
            )
    else:
        drop = nan_cells(cols)
    logger.warning(
        "    %d of %d cells have NaN in %s%s and are left out of fitting",
        int(drop.sum()),
        adata.n_obs,
        where,
        " (totals for normalization use every gene)" if normalize == "log1p" else "",
    )
    vals, out_genes, applied = get_expression(
        adata[~drop], layer=layer, genes=genes, normalize=normalize, target_sum=target_sum
    )
    y = np.full((adata.n_obs, vals.shape[1]), np.nan, dtype=np.float32)
    y[~drop] = vals
    return y, out_genes, applied


def _counts_apart_from_nan(x) -> bool:
    """Judge :func:`looks_like_counts` with NaN read as 0 (a valid count).

    So one missing value no longer turns the normalization off.
    """
    sub = x[: min(x.shape[0], 2000)]
    if sparse.issparse(sub):
        sub = sub.astype(np.float64, copy=True)
        sub.data[np.isnan(sub.data)] = 0.0
    else:
        sub = np.nan_to_num(np.asarray(sub, dtype=np.float64), nan=0.0)
    return looks_like_counts(sub)


def _scan_missing(x):
    """(cells-with-NaN-in(columns) function, NaN count per gene, number of infs) of a matrix."""
    if sparse.issparse(x):
        x = x.tocsr()
        data = np.asarray(x.data, dtype=np.float64)
        nan = np.isnan(data)
        rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[nan]
        cols = x.indices[nan]
        per_gene = np.bincount(cols, minlength=x.shape[1])
        n_inf = int(np.isinf(data).sum())

        def cells(use):
            hit = np.zeros(x.shape[0], dtype=bool)
            hit[rows[np.isin(cols, use)]] = True
            return hit

        return cells, per_gene, n_inf
    x = np.asarray(x)
    nan = np.isnan(x) if np.issubdtype(x.dtype, np.floating) else np.zeros(x.shape, bool)
    n_inf = int(np.isinf(x).sum()) if np.issubdtype(x.dtype, np.floating) else 0
    return (lambda use: nan[:, use].any(axis=1)), nan.sum(axis=0), n_inf


def _natural(s: str):
    return (0, float(s), s) if _is_number(s) else (1, 0.0, s)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _train(
    dec,
    X,
    y,
    idx,
    *,
    balance,
    max_epochs,
    patience,
    batch_size,
    lr,
    weight_decay,
    seed,
    device,
):
    """Fit ``dec.net`` on ``idx["train"]``, early-stopped on ``idx["val"]``."""
    import torch

    tr, va = idx["train"], idx["val"]
    _set_scales(dec, X, y, tr)
    x_tr, y_tr = _tensors(dec, X, y, tr, device)
    val = _tensors(dec, X, y, va, device) if len(va) else None
    class_w, sample_p = _class_balance(dec, y[tr], balance, device)
    loss_fn = _loss_fn(dec, class_w)
    with torch.random.fork_rng(devices=[]), _threads_for(dec):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        dec.net = _build_net(dec).to(device)
        opt = torch.optim.AdamW(dec.net.parameters(), lr=lr, weight_decay=weight_decay)
        history = _epochs(
            dec,
            opt,
            loss_fn,
            (x_tr, y_tr),
            val,
            sample_p,
            gen,
            device,
            max_epochs=max_epochs,
            patience=patience,
            batch_size=batch_size,
        )
    dec.net = dec.net.cpu().eval()
    history["epochs"] = len(history["train_loss"])
    dec.history = history


# ---------------------------------------------------------------- steps of _train
def _set_scales(dec, X, y, tr) -> None:
    """Standardisation of the inputs (and of continuous targets) from the training rows."""
    import torch

    xm = X[tr].mean(axis=0)
    xs = X[tr].std(axis=0)
    dec.x_mean = torch.from_numpy(xm.astype(np.float32))
    dec.x_scale = torch.from_numpy(np.where(xs > 0, xs, 1.0).astype(np.float32))
    if dec.kind != "categorical":
        ym, ys = y[tr].mean(axis=0), y[tr].std(axis=0)
        dec.y_mean = torch.from_numpy(ym.astype(np.float32))
        dec.y_scale = torch.from_numpy(np.where(ys > 0, ys, 1.0).astype(np.float32))


def _tensors(dec, X, y, rows, device):
    """Standardised inputs and targets of ``rows`` as tensors on ``device``."""
    import torch

    xb = (torch.from_numpy(X[rows].astype(np.float32)) - dec.x_mean) / dec.x_scale
    if dec.kind == "categorical":
        yb = torch.from_numpy(y[rows])
    else:
        yb = (torch.from_numpy(y[rows].astype(np.float32)) - dec.y_mean) / dec.y_scale
    return xb.to(device), yb.to(device)


def _class_balance(dec, y_train, balance, device):
    """``(class weights, sampling probabilities)`` per ``balance`` (None, None: unbalanced)."""
    import torch

    if dec.kind != "categorical":
        return None, None
    counts = np.bincount(y_train, minlength=dec.out_dim).astype(np.float64)
    missing = [c for c, n in zip(dec.classes, counts) if n == 0]
    if missing:
        warnings.warn(
            f"classes absent from the training split (never predicted): {missing}; with "
            "groupby, some groups hold all cells of these classes.",
            stacklevel=_user_stacklevel(),
        )
    inv = np.divide(
        counts.sum() / max(1, (counts > 0).sum()),
        counts,
        out=np.zeros_like(counts),
        where=counts > 0,
    )
    if balance == "weights":
        return torch.tensor(inv, dtype=torch.float32, device=device), None
    if balance == "sampler":
        return None, torch.tensor(inv[y_train], dtype=torch.float64)
    if balance is not None:
        raise ValueError(f"balance must be 'weights', 'sampler' or None, got {balance!r}.")
    return None, None


def _loss_fn(dec, class_w):
    """Return the (class-weighted) training loss of ``dec``'s kind and ``loss``."""
    import torch
    from torch.nn import functional as F

    def loss_fn(out, target):
        if dec.kind != "categorical":
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

    return loss_fn


def _epochs(
    dec, opt, loss_fn, train, val, sample_p, gen, device, *, max_epochs, patience, batch_size
):
    """Run the epoch loop and return the history.

    Minibatches over ``train``, early stopping on ``val`` (the best epoch's weights are
    restored).
    """
    import torch

    x_tr, y_tr = train
    x_va, y_va = val if val is not None else (None, None)
    history = {"train_loss": [], "val_loss": [], "best_epoch": None}
    best, best_state, waited = np.inf, None, 0
    n = len(x_tr)
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
            val_loss = loss_fn(dec.net(x_va), y_va).item()
        history["val_loss"].append(val_loss)
        if val_loss < best - 1e-6:
            best, waited, history["best_epoch"] = val_loss, 0, epoch
            best_state = {k: v.detach().clone() for k, v in dec.net.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    if best_state is not None:
        dec.net.load_state_dict(best_state)
    return history


def _threads_for(dec: Decoder):
    """Return a context of one torch thread for small decoders, else of torch's setting.

    For small decoders thread start-up and contention (shared cores) cost far more than their
    matmuls (50x slower measured with 2 threads on 2 busy cores).
    """
    small = dec.in_dim * dec.hidden_dim + dec.hidden_dim * dec.out_dim < 200_000
    return torch_threads(1) if small else contextlib.nullcontext()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads.

    The caller's count is restored afterwards, also on error, so library calls leave this
    process-wide setting alone.
    """
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _build_net(dec: Decoder) -> nn.Sequential:
    """Build the two-layer MLP; its initialisation draws from the (caller-seeded) torch RNG."""
    from torch import nn

    act = {"gelu": nn.GELU, "relu": nn.ReLU}[dec.activation]
    return nn.Sequential(
        nn.Linear(dec.in_dim, dec.hidden_dim),
        act(),
        nn.Dropout(dec.dropout),
        nn.Linear(dec.hidden_dim, dec.out_dim),
    )


def _score(dec: Decoder, pred: np.ndarray, y: np.ndarray) -> dict:
    """Scores of predictions ``pred`` (from ``dec.predict``) against targets ``y``."""
    if len(pred) == 0:
        return {}
    if dec.kind == "categorical":
        true = np.asarray(dec.classes, dtype=object)[y]
        return {
            "accuracy": float(np.mean(pred == true)),
            "balanced_accuracy": float(balanced_accuracy_score(true, pred)),
            "macro_f1": float(
                f1_score(true, pred, average="macro", labels=dec.classes, zero_division=0)
            ),
        }
    pred = np.asarray(pred, dtype=np.float64)
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
    if "cross_fit_k" in m:
        score = "accuracy" if dec.kind == "categorical" else "mean_pearson"
        logger.info(
            "    decoder %r: out-of-fold %s %.3f over all %d cells (cross_fit=%d)",
            dec.target,
            score.replace("_", " "),
            m.get(f"cross_fit_{score}", np.nan),
            m["cross_fit_n_cells"],
            m["cross_fit_k"],
        )


@doc_params(doc_copy=doc_copy)
def predict(
    decoder: Decoder,
    adata: AnnData,
    *,
    use_rep: str | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Write a decoder's predictions for every cell into ``adata``, marking in-sample ones.

    A decoder's predictions for the cells it was fitted on (its train and validation
    splits; validation cells chose the epoch) are in-sample: optimistic, and unfit for
    maps or tests meant to show what the embedding predicts. They are marked in
    ``.obs[key_added + "_in_sample"]``. A decoder fitted with ``cross_fit=k`` predicts
    every cell it has a fold for with the fold decoder that never saw it, so no cell is
    in-sample. Cells are matched to the decoder's split by ``obs_names``.

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
    {doc_copy}

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
    - ``.obs[key_added + "_in_sample"]``: bool, True for cells the predicting decoder
      trained on;
    - ``.uns["mad_decoder_<target>"]``: the decoder's held-out metrics and parameters,
      and under ``"prediction"`` where the predictions went and how many are in-sample.
    """
    if not isinstance(decoder, Decoder):
        raise TypeError(f"decoder must be a madspatial Decoder, got {type(decoder).__name__}.")
    adata = adata.copy() if copy else adata
    rep = use_rep or decoder.use_rep
    X = get_rep(adata, rep)
    pred, in_sample, n_oof = _predict_marked(decoder, X, adata.obs_names)
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
    flag = f"{key}{OBS_IN_SAMPLE_SUFFIX}"
    adata.obs[flag] = in_sample
    added(flag, "obs")
    n_in = int(in_sample.sum())
    if decoder.folds:
        logger.info(
            "    %d of %d cells predicted out-of-fold (cross_fit=%d), the others by the "
            "decoder that never saw them",
            n_oof,
            adata.n_obs,
            len(decoder.folds),
        )
    elif n_in:
        logger.info(
            "    %d of %d predictions are in-sample (the decoder trained on those cells; "
            "marked in obs[%r]); fit_decoder(..., cross_fit=5) gives out-of-fold predictions",
            n_in,
            adata.n_obs,
            flag,
        )
    uns_key = f"{UNS_DECODER_PREFIX}{decoder.target}"
    entry = _uns_entry(decoder)
    entry["prediction"] = {
        "key": key,
        "in_sample_key": flag,
        "source": "cross_fit" if decoder.folds else "single",
        "n_cells": int(adata.n_obs),
        "n_in_sample": n_in,
        "n_out_of_fold": int(n_oof),
    }
    adata.uns[uns_key] = entry
    added(uns_key, "uns")
    return adata if copy else None


def _predict_marked(decoder: Decoder, X: np.ndarray, obs_names: pd.Index):
    """(predictions, in-sample mask, number predicted out-of-fold) for cells ``obs_names``."""
    pred = decoder.predict(X)
    names = pd.Index(obs_names).astype(str)
    in_sample = np.zeros(len(names), dtype=bool)
    n_oof = 0
    if decoder.folds:
        _need_unique_names(names, "predict with a cross-fitted decoder")
        for fold, cells in zip(decoder.folds, decoder.fold_cells, strict=True):
            pos = names.get_indexer(cells)
            pos = pos[pos >= 0]
            if len(pos):
                pred[pos] = fold.predict(X[pos])
                n_oof += len(pos)
        return pred, in_sample, n_oof
    for split in ("train", "val"):
        # get_indexer_for: with repeated obs_names every cell of a training name is marked
        pos = names.get_indexer_for(decoder.split.get(split, []))
        in_sample[pos[pos >= 0]] = True
    return pred, in_sample, n_oof


def _need_unique_names(names: pd.Index, what: str) -> None:
    if not names.is_unique:
        dup = names[names.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"{what} matches cells to folds by obs_names, which repeat (e.g. {dup}); make "
            "them unique first: adata.obs_names_make_unique()."
        )
