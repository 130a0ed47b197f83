"""Decoders never give a silently wrong result: NaN targets, in-sample predictions,
negative expression, damaged or interrupted saves, global state (issue 10 / 13)."""

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from madspatial.tl import _decoder as dm
from madspatial.tl._decoder_split import make_folds

FAST = {"max_epochs": 40, "patience": 8}


# --- item 4: NaN in expression targets -------------------------------------------------
def test_one_nan_in_counts_does_not_switch_off_log1p(toy_embedding_adata, mad_log):
    adata = toy_embedding_adata()
    adata.X[5, 0] = np.nan  # one missing count, in a gene outside the target
    dec = dm.fit_decoder(adata, target=["GENE1", "GENE3"], seed=0, **FAST)
    assert dec.normalize == "log1p"  # was "none": raw counts fitted as if normalized
    assert sum(len(v) for v in dec.split.values()) == adata.n_obs - 1
    assert "cell5" not in {c for v in dec.split.values() for c in v}
    assert "1 of 180 cells have NaN in adata.X (totals for normalization use every gene)" in (
        mad_log.text
    )
    # the same decoder as on the data without that cell
    clean = toy_embedding_adata()[[c != "cell5" for c in adata.obs_names]].copy()
    ref = dm.fit_decoder(clean, target=["GENE1", "GENE3"], seed=0, **FAST)
    assert ref.normalize == "log1p"
    np.testing.assert_allclose(dec.y_mean.numpy(), ref.y_mean.numpy(), rtol=1e-5)


def test_nan_in_a_target_gene_of_normalized_data_drops_only_that_cell(toy_embedding_adata):
    adata = toy_embedding_adata()
    adata.X = np.log1p(adata.X)  # already normalized: the other genes do not matter
    adata.X[3, 7] = np.nan
    adata.X[4, 1] = np.nan
    dec = dm.fit_decoder(adata, target=["GENE1", "GENE2"], seed=0, **FAST)
    assert dec.normalize == "none"
    seen = {c for v in dec.split.values() for c in v}
    assert "cell4" not in seen and "cell3" in seen and len(seen) == adata.n_obs - 1


def test_all_nan_gene_is_a_clear_error(toy_embedding_adata):
    adata = toy_embedding_adata()
    adata.X[:, 2] = np.nan
    # before: "only 0 cell(s) have a target value; nothing to fit."
    with pytest.raises(
        ValueError, match=r"1 gene\(s\) of adata.X are NaN in every cell: \['GENE2'\]"
    ):
        dm.fit_decoder(adata, target=["GENE1", "GENE2"], **FAST)
    # outside the target, it still makes every total (normalize="log1p") undefined
    with pytest.raises(ValueError, match=r"NaN in every cell \(\['GENE2'\]\), so no cell's total"):
        dm.fit_decoder(adata, target=["GENE1"], **FAST)
    adata.X[:, 2] = 1.0
    scattered = adata.copy()
    scattered.X[np.arange(180), np.arange(180) % 20] = np.nan  # a NaN in every cell
    with pytest.raises(ValueError, match=r"every cell has a NaN in some gene of adata.X"):
        dm.fit_decoder(scattered, target=["GENE1"], **FAST)
    adata.X[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"adata.X holds 1 infinite value"):
        dm.fit_decoder(adata, target=["GENE1"], **FAST)


# --- item 7: in-sample marks and cross-fitting -------------------------------------------
def test_predict_marks_in_sample_cells(toy_embedding_adata):
    adata = toy_embedding_adata()
    dec = dm.fit_decoder(adata, target="cell_type", seed=0, **FAST)
    dm.predict(dec, adata)
    flag = adata.obs["mad_pred_cell_type_in_sample"]
    assert flag.dtype == bool
    assert set(adata.obs_names[flag]) == set(dec.split["train"]) | set(dec.split["val"])
    info = adata.uns["mad_decoder_cell_type"]["prediction"]
    assert info["source"] == "single" and info["n_in_sample"] == flag.sum() == 153


def test_cross_fit_predicts_every_cell_out_of_fold_group_aware(toy_embedding_adata):
    adata = toy_embedding_adata()  # 4 slides
    dec = dm.fit_decoder(adata, target="cell_type", groupby="slide", cross_fit=4, seed=0, **FAST)
    assert len(dec.folds) == 4 and dec.metrics["cross_fit_k"] == 4
    held = [c for cells in dec.fold_cells for c in cells]
    assert sorted(held) == sorted(adata.obs_names)  # every cell in exactly one fold
    slide = adata.obs["slide"]
    for fold, cells in zip(dec.folds, dec.fold_cells, strict=True):
        seen = set(fold.split["train"]) | set(fold.split["val"])
        assert not seen & set(cells) and fold.split["test"] == []
        assert not set(slide[list(seen)]) & set(slide[cells])  # whole slides held out
    assert dec.metrics["cross_fit_accuracy"] > 0.9 and dec.metrics["cross_fit_n_cells"] == 180
    dm.predict(dec, adata)
    assert not adata.obs["mad_pred_cell_type_in_sample"].any()
    X = adata.obsm["X_mad"]
    for fold, cells in zip(dec.folds, dec.fold_cells, strict=True):
        pos = adata.obs_names.get_indexer(cells)
        np.testing.assert_array_equal(
            adata.obs["mad_pred_cell_type"].to_numpy()[pos].astype(str), fold.predict(X[pos])
        )
    info = adata.uns["mad_decoder_cell_type"]["prediction"]
    assert info["source"] == "cross_fit" and info["n_out_of_fold"] == 180
    # new cells (names the decoder never saw) get the full decoder's prediction
    other = adata.copy()
    other.obs_names = [f"new{i}" for i in range(other.n_obs)]
    dm.predict(dec, other)
    np.testing.assert_array_equal(other.obs["mad_pred_cell_type"].astype(str), dec.predict(X))


def test_cross_fit_bad_values(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=20)
    with pytest.raises(ValueError, match=r"cross_fit must be an int >= 2 .*got 1"):
        dm.fit_decoder(adata, target="cell_type", cross_fit=1, **FAST)
    with pytest.raises(ValueError, match=r"cross_fit=5 with groupby .* groupby has 4"):
        dm.fit_decoder(adata, target="cell_type", groupby="slide", cross_fit=5, **FAST)
    twice = adata.copy()
    twice.obs_names = ["a", "a", *twice.obs_names[2:]]
    with pytest.raises(ValueError, match=r"obs_names, which repeat \(e.g. \['a'\]\).*make_unique"):
        dm.fit_decoder(twice, target="cell_type", cross_fit=3, **FAST)


def test_make_folds_balances_classes_and_groups():
    labels = np.repeat([0, 1], [40, 10])
    f = make_folds(50, 5, labels=labels, seed=0)
    assert (np.bincount(f[labels == 1], minlength=5) == 2).all()
    groups = np.repeat(["a", "b", "c", "d", "e", "f"], [30, 5, 5, 5, 5, 10])
    g = make_folds(60, 3, groups=groups, seed=0)
    for name in set(groups):
        assert len(set(g[groups == name])) == 1
    assert sorted(np.bincount(g)) == [15, 15, 30]


# --- item 8: predictions never below the target's valid range ---------------------------
def test_expression_predictions_are_clipped_at_zero(toy_embedding_adata):
    adata = toy_embedding_adata()
    adata.X[:, 4] = 0.0
    adata.X[:20, 4] = 50.0  # a sparse gene: a regression undershoots 0 for most cells
    dec = dm.fit_decoder(adata, target=["GENE4", "GENE5"], seed=0, **FAST)
    assert dec.value_range == (0.0, None)
    X = adata.obsm["X_mad"]
    raw = dec._forward(X) * dec.y_scale.numpy() + dec.y_mean.numpy()
    assert (raw < 0).any()  # before: these went to layers["mad_pred"] as they are
    pred = dec.predict(X)
    assert pred.min() == 0.0
    np.testing.assert_allclose(pred, np.maximum(raw, 0), rtol=1e-6, atol=1e-6)


def test_signed_targets_are_not_clipped():
    rng = np.random.default_rng(0)
    import anndata as ad

    adata = ad.AnnData(rng.normal(size=(120, 3)).astype(np.float32))
    adata.obsm["X_mad"] = adata.X @ rng.normal(size=(3, 6)).astype(np.float32)
    dec = dm.fit_decoder(adata, target="expression", seed=0, **FAST)
    assert dec.value_range is None and dec.predict(adata.obsm["X_mad"]).min() < 0


# --- item 6: versioned, checked, atomic saves ---------------------------------------------
def _expr_decoder(adata, **kw):
    return dm.fit_decoder(adata, target=["GENE1", "GENE3"], seed=0, **FAST, **kw)


def test_save_is_versioned_checksummed_and_respects_the_umask(tmp_path, toy_embedding_adata):
    adata = toy_embedding_adata(n_per=30)
    dec = _expr_decoder(adata, cross_fit=3)
    old = os.umask(0o027)
    try:
        path = dec.save(tmp_path / "dec")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes == {"config.json": 0o640, "model.safetensors": 0o640}  # no temp files left
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["format_version"] == dm.DECODER_FORMAT_VERSION == 2
    assert cfg["value_range"] == [0.0, None] and len(cfg["weights_sha256"]) == 64
    loaded = dm.Decoder.load(path)
    assert loaded.value_range == (0.0, None) and len(loaded.folds) == 3
    assert loaded.fold_cells == dec.fold_cells
    a, b = adata.copy(), adata.copy()
    dm.predict(dec, a)
    dm.predict(loaded, b)
    np.testing.assert_array_equal(a.layers["mad_pred"], b.layers["mad_pred"])


def test_load_refuses_newer_damaged_or_mismatched_files(tmp_path, toy_embedding_adata):
    adata = toy_embedding_adata(n_per=20)
    path = _expr_decoder(adata).save(tmp_path / "dec")
    cfg_file, weights = path / "config.json", path / "model.safetensors"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "format_version": 99, "madspatial": "9.0"}))
    with pytest.raises(ValueError, match=r"format_version=99 \(written by madspatial 9.0\).*reads"):
        dm.Decoder.load(path)
    cfg_file.write_text(json.dumps(cfg)[:100])
    with pytest.raises(ValueError, match=r"config.json is not valid JSON.*damaged or truncated"):
        dm.Decoder.load(path)
    cfg_file.write_text(json.dumps(cfg))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.safetensors does not match the sha256"):
        dm.Decoder.load(path)


def test_files_from_before_versioning_still_load(tmp_path, toy_embedding_adata):
    adata = toy_embedding_adata(n_per=20)
    dec = _expr_decoder(adata)
    path = dec.save(tmp_path / "dec")
    cfg = json.loads((path / "config.json").read_text())
    for k in ("format_version", "weights_sha256", "value_range", "folds"):
        cfg.pop(k)
    (path / "config.json").write_text(json.dumps(cfg))
    legacy = dm.Decoder.load(path)
    assert legacy.value_range == (0.0, None)  # log1p expression: >= 0 by construction
    X = adata.obsm["X_mad"]
    np.testing.assert_array_equal(legacy.predict(X), dec.predict(X))


def test_an_interrupted_save_leaves_the_previous_files_intact(
    tmp_path, toy_embedding_adata, monkeypatch
):
    adata = toy_embedding_adata(n_per=20)
    dec = _expr_decoder(adata)
    path = dec.save(tmp_path / "dec")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    real_write = Path.write_bytes

    def crash(self, data):  # the weights file is half written when the disk fills up
        real_write(self, data[:10])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", crash)
    with pytest.raises(OSError, match="disk full"):
        dec.save(path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # before: half a file
    dm.Decoder.load(path)


# --- item 5 and 7 (issue 13): global state and warnings ---------------------------------
def test_fit_decoder_leaves_the_torch_thread_count_alone(toy_embedding_adata):
    adata = toy_embedding_adata(n_per=20)
    before = torch.get_num_threads()
    target = 2 if before != 2 else 3
    torch.set_num_threads(target)
    try:
        dm.fit_decoder(adata, target="cell_type", seed=0, max_epochs=3)
        assert torch.get_num_threads() == target
        with pytest.raises(RuntimeError, match="boom"), dm.torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
        assert torch.get_num_threads() == target
    finally:
        torch.set_num_threads(before)


def test_torch_is_imported_only_inside_functions():
    tree = ast.parse(Path(dm.__file__).read_text())
    top = [
        n
        for n in tree.body
        if isinstance(n, ast.Import | ast.ImportFrom)
        and any(
            (a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0] == "torch"
            for a in n.names
        )
    ]
    assert top == []


def test_warnings_point_at_the_callers_line(toy_embedding_adata):
    adata = toy_embedding_adata()
    adata.obs["slide"] = adata.obs["slide"].astype(str)
    adata.obs.loc[adata.obs["cell_type"] == "type2", "slide"] = "s3"  # one slide holds type2
    with pytest.warns(UserWarning) as rec:
        dm.fit_decoder(adata, target="cell_type", groupby="slide", cross_fit=4, seed=0, **FAST)
    assert any("absent from the training split" in str(w.message) for w in rec)
    assert {w.filename for w in rec} == {__file__}
    with pytest.warns(UserWarning, match="training scores") as rec:
        dm.fit_decoder(adata, target="cell_type", split=(1.0, 0.0, 0.0), max_epochs=2)
    assert rec[0].filename == __file__
