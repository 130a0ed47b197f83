"""Smoke tests of the science benchmark's building blocks (benchmarks/bench_science.py).

No pretraining here (the benchmark's ``--quick`` run covers it end to end): the
baselines on the shared tiny tissue, and the scoring helpers on hand-made inputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import _science_baselines
        import bench_science

        yield bench_science, _science_baselines
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def tissue_with_views(tissue_views):
    """The shared tissue with 28 / 56 px views (conftest's ``tissue_views``) and its store."""
    import madspatial as mad

    return tissue_views, mad.io.read_views(tissue_views)


def test_baselines_shapes_and_balance(bench, tissue_with_views):
    bs, _ = bench
    sdata, store = tissue_with_views
    n = sdata.tables["table"].n_obs
    emb = bs.baselines_for(sdata, store, n_neighbors=10, n_morph_clusters=4, n_components=8)
    assert emb["pixel_pca"].shape == (n, 16)
    hand = emb["handcrafted"]
    # own features (7 shape + 4 means + 4 sds + nuclear fraction + 4 nuclear means = 20),
    # 4 composition columns, 20 neighbour means
    assert hand.shape == (n, 44)
    for x in emb.values():
        assert np.isfinite(x).all() and x.dtype == np.float32
    # each block carries total variance 1 (z-scored columns scaled by 1/sqrt(width))
    own, comp = hand[:, :20], hand[:, 20:24]
    assert own.var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    assert comp.var(axis=0).sum() == pytest.approx(1.0, rel=1e-3)
    # lymphocytes are the smallest class: the area feature must reflect that
    obs = sdata.tables["table"].obs
    lym = (obs["morph_class"] == "lymphocyte").to_numpy()
    assert own[lym, 0].mean() < own[~lym, 0].mean()


def test_cell_features_on_hand_made_labels(bench):
    _, base = bench
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[2:6, 2:6] = 7  # 16 px square
    labels[10:18, 10:12] = 3  # 8 x 2 bar
    nuclei = np.where(labels == 7, 0, labels)
    nuclei[3:5, 3:5] = 7  # 4 of the 16 px
    image = np.zeros((2, 20, 20), dtype=np.float32)
    image[0][labels == 7] = 0.5
    image[1][labels == 3] = 1.0
    feats, names = base.cell_features(image, labels, np.array([3, 7, 99]), nuclei)
    f = pd.DataFrame(feats, columns=names, index=[3, 7, 99])
    assert f.loc[7, "area"] == 16 and f.loc[3, "area"] == 16
    assert f.loc[7, "nuclear_fraction"] == pytest.approx(0.25)
    assert f.loc[3, "nuclear_fraction"] == pytest.approx(1.0)
    assert f.loc[7, "mean_c0"] == pytest.approx(0.5) and f.loc[3, "mean_c1"] == pytest.approx(1.0)
    assert f.loc[3, "eccentricity"] > f.loc[7, "eccentricity"]
    assert np.isnan(f.loc[99]).all()  # absent from the labels


def test_summary_helpers(bench):
    bs, _ = bench
    m, lo, hi = bs.t_interval(np.array([1.0, 2.0, 3.0]))
    # t(0.975, 2) = 4.303; sd = 1; half width 4.303 / sqrt(3)
    assert m == 2.0 and hi - m == pytest.approx(4.3027 / np.sqrt(3), rel=1e-3)
    assert m - lo == pytest.approx(hi - m)
    rows = pd.DataFrame(
        dict(
            split="blocks",
            rep=["MAD"] * 3 + ["separate"] * 3,
            metric="louvain_ari",
            seed=[0, 1, 2] * 2,
            value=[0.5, 0.6, 0.7, 0.4, 0.65, 0.5],
        )
    )
    d = bs.paired(rows, "blocks", "louvain_ari", "MAD", "separate")
    assert d["diff"] == pytest.approx(np.mean([0.1, -0.05, 0.2])) and d["wins"] == 2
    assert d["n"] == 3 and d["holds"] is False  # the interval crosses 0: no claim
    ahead = rows.assign(value=[0.5, 0.6, 0.7, 0.4, 0.5, 0.6])
    assert bs.paired(ahead, "blocks", "louvain_ari", "MAD", "separate")["holds"] is True
    summary = bs.summarise(rows.assign(ci_low=np.nan, ci_high=np.nan))
    assert summary.set_index("rep").loc["MAD", "mean"] == pytest.approx(0.6)


def test_a_run_trained_after_scoring_is_scored_not_left_out(bench, tmp_path, monkeypatch):
    """Resuming after a wider sweep: the score file of a seed is topped up with the new
    runs (the stale file once hid three trained alpha/recipe runs from the report), and a
    metric added after a file was written is scored for the embeddings it holds."""
    bs, _ = bench
    for name in ("MAD", "morphology", "microenvironment", "MAD_alpha0.5"):
        np.savez(tmp_path / f"emb_{name}_seed1.npz", all=np.zeros((4, 2)))
    np.savez(tmp_path / "emb_MAD_seed2.npz", all=np.zeros((4, 2)))  # another seed: ignored
    args = SimpleNamespace(workdir=str(tmp_path), seeds=[1], jobs=1)
    base = {"pixel_pca": np.zeros((4, 2))}
    expected = {"MAD", "morphology", "microenvironment", "MAD_alpha0.5", "separate"}
    expected |= {"untrained_data", "untrained_fixed", "pixel_pca"}
    assert bs.seed_rep_names(args, 1, base) == expected

    np.savez(tmp_path / "baselines.npz", **base)
    witnesses = list(bs.GROUP_WITNESS.values())
    old = pd.DataFrame(
        [dict(rep=r, metric=m, value=0.0) for r in sorted(expected - {"MAD_alpha0.5"})
         for m in witnesses]
    )  # fmt: skip
    old.to_csv(tmp_path / "scores_seed1_random.csv", index=False)
    # the blocks file was written before kNN regression was scored: every embedding lacks it
    old_blocks = pd.DataFrame(
        [dict(rep=r, metric=m, value=0.0) for r in sorted(expected) for m in witnesses[:-1]]
    )
    old_blocks.to_csv(tmp_path / "scores_seed1_blocks.csv", index=False)
    scored = []

    def fake_score(args, table, reps, split, seed, *, only=None, metrics=bs.SCORED_METRICS):
        scored.append((tuple(metrics), set(only)))
        wrote = [bs.GROUP_WITNESS[g] for g in metrics]
        return pd.DataFrame([dict(rep=r, metric=m, value=1.0) for r in sorted(only) for m in wrote])

    monkeypatch.setattr(
        bs, "setup", lambda a: (None, None, None, None, {1: {"random": None, "blocks": None}})
    )
    monkeypatch.setattr(bs, "seed_controls", lambda *a: base)
    monkeypatch.setattr(bs, "score_split", fake_score)
    bs.stage_score(args, 0)
    # random: the new run on every group; blocks: only the new group, for every embedding
    assert scored == [
        (tuple(bs.SCORED_METRICS), {"MAD_alpha0.5"}),
        (("knn_expression",), expected),
    ]
    after = pd.read_csv(tmp_path / "scores_seed1_random.csv")
    assert sorted(set(after["rep"])) == sorted(expected) and len(after) == len(expected) * 8
    assert (after[after.rep == "MAD_alpha0.5"]["value"] == 1.0).all()
    blocks = pd.read_csv(tmp_path / "scores_seed1_blocks.csv")
    knn_r = blocks[blocks.metric == "knn_expression_pearson"]
    assert set(knn_r["rep"]) == expected and (knn_r["value"] == 1.0).all()
    assert (blocks[blocks.metric != "knn_expression_pearson"]["value"] == 0.0).all()
    bs.stage_score(args, 0)  # complete now: nothing scored again
    assert len(scored) == 2
    # the benchmark imports madspatial lazily (after configure()), so it spells the groups
    # it scores itself: they must stay tl.evaluate's groups, minus recall
    from madspatial.tl._evaluate import METRIC_GROUPS

    assert bs.SCORED_METRICS == [g for g in METRIC_GROUPS if g != "recall"]
    assert list(bs.GROUP_WITNESS) == bs.SCORED_METRICS


def test_each_view_token_is_scored_against_its_single_view_model(bench, tmp_path):
    """MAD's morphology / microenvironment class tokens become their own embeddings,
    compared with the single-view model of that view only (not as extra MAD recipes)."""
    bs, _ = bench
    rng = np.random.default_rng(0)
    morph, micro = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    np.savez(
        tmp_path / "emb_MAD_seed0.npz",
        all=np.c_[morph, micro],
        morphology=morph,
        microenvironment=micro,
    )
    for name in ("morphology", "microenvironment"):
        np.savez(tmp_path / f"emb_{name}_seed0.npz", all=np.zeros((4, 2)))
    args = SimpleNamespace(workdir=str(tmp_path))
    reps = bs.seed_reps(args, None, 0, {})
    np.testing.assert_array_equal(reps["MAD_morphology_token"], morph)
    np.testing.assert_array_equal(reps["MAD_microenvironment_token"], micro)
    tokens = ["MAD_morphology_token", "MAD_microenvironment_token"]
    assert set(tokens) <= bs.seed_rep_names(args, 0, {})
    assert bs.parse_token("MAD_teacher_temp0.01_microenvironment_token") == (
        "MAD_teacher_temp0.01",
        "microenvironment",
    )
    assert bs.parse_token("MAD") is None and not bs.has_tokens("MAD_alpha0.5")

    names = ["MAD", "separate", *tokens, "morphology", "microenvironment"]
    rows = pd.DataFrame(
        [
            dict(
                split=sp,
                metric=m,
                rep=r,
                seed=s,
                value=0.5 + 0.1 * s + (0.05 if "token" in r else 0),
            )
            for sp in bs.SPLITS
            for m in bs.TARGET_METRICS
            for r in names
            for s in range(3)
        ]
    )
    claims = bs.claims_for(rows, names, ["separate"])
    pairs = set(zip(claims.a, claims.b))
    assert ("MAD_morphology_token", "morphology") in pairs
    assert ("MAD_microenvironment_token", "microenvironment") in pairs
    assert not any(b == "MAD" for a, b in pairs if a in tokens)  # not an extra recipe
    tok = claims[claims.a == "MAD_morphology_token"]
    assert tok["diff"].to_numpy() == pytest.approx(0.05) and tok["holds"].all()
    text = "\n".join(bs.token_section(claims))
    assert "| MAD | **+0.050" in text and "morphology token - morphology" in text


def test_a_recipe_is_paired_with_the_separate_control_trained_with_its_options(bench, tmp_path):
    """``--extra-separate``: the single-view runs get the recipe's one-view options (KoLeo,
    teacher temperature) but not the two-view ones, become ``separate_<recipe>``, and the
    recipe and its tokens are compared with them as well as with the plain controls."""
    bs, _ = bench
    v = "koleo+teacher_temp0.02"
    args = SimpleNamespace(
        seeds=[0], sweep_seeds=None, alphas=[], recipe="paper", also_paper=False,
        extra=["teacher_temp0.01", v], extra_separate=[v],
    )  # fmt: skip
    jobs = {name: (mode, o) for _, name, mode, o in bs.jobs_for(args)}
    assert jobs[f"morphology_{v}"] == (
        "morphology",
        {"koleo_weight": 0.1, "teacher_temp": (0.02, 0.04)},
    )
    assert jobs[f"microenvironment_{v}"][0] == "microenvironment"
    assert "morphology_teacher_temp0.01" not in jobs  # not asked for
    shared = SimpleNamespace(**{**vars(args), "extra": ["koleo", "predictor_heads+koleo"]})
    shared.extra_separate = []  # all: the second has the first's one-view options (KoLeo)
    assert {n for _, n, _, _ in bs.jobs_for(shared)} >= {"morphology_koleo"}
    assert not any("predictor_heads" in n and "MAD" not in n for _, n, _, _ in bs.jobs_for(shared))
    assert bs.own_control("MAD_predictor_heads+koleo", "separate", ["separate_koleo"]) == (
        "separate_koleo"
    )
    assert bs.single_view_overrides("view_centers") == {}  # a two-view option only
    with pytest.raises(SystemExit, match="not among --extra"):
        bs.jobs_for(SimpleNamespace(**{**vars(args), "extra_separate": ["koleo"]}))

    for name in ("morphology", "microenvironment", f"morphology_{v}", f"microenvironment_{v}"):
        np.savez(tmp_path / f"emb_{name}_seed0.npz", all=np.full((3, 2), len(name), float))
    z = np.ones((3, 2))
    np.savez(tmp_path / f"emb_MAD_{v}_seed0.npz", all=np.c_[z, z], morphology=z, microenvironment=z)
    reps = bs.seed_reps(SimpleNamespace(workdir=str(tmp_path)), None, 0, {})
    assert reps["separate"] == ["morphology", "microenvironment"]
    assert reps[f"separate_{v}"] == [f"morphology_{v}", f"microenvironment_{v}"]
    assert f"separate_{v}" in bs.seed_rep_names(SimpleNamespace(workdir=str(tmp_path)), 0, {})

    names = [f"MAD_{v}", "MAD", "separate", f"separate_{v}", "untrained_data",
             f"MAD_{v}_morphology_token", "morphology", f"morphology_{v}"]  # fmt: skip
    rows = pd.DataFrame(
        [
            dict(split=sp, metric=m, rep=r, seed=s, value=s + (1.0 if r.startswith("MAD") else 0))
            for sp in bs.SPLITS
            for m in bs.TARGET_METRICS
            for r in names
            for s in range(3)
        ]
    )
    pairs = set(zip(*(bs.claims_for(rows, names, ["separate"])[k] for k in ("a", "b"))))
    assert {(f"MAD_{v}", "separate"), (f"MAD_{v}", f"separate_{v}")} <= pairs
    assert {(f"MAD_{v}_morphology_token", c) for c in ("morphology", f"morphology_{v}")} <= pairs
    built_on = [*names, "MAD_koleo", "MAD_koleo+teacher_temp0.02+x"]
    more = pd.concat([rows, rows.assign(rep="MAD_koleo"), rows.assign(rep=built_on[-1])])
    pairs = set(zip(*(bs.claims_for(more, built_on, ["separate"])[k] for k in ("a", "b"))))
    # each recipe built on others is paired with every one of them, and not the reverse
    assert {(f"MAD_{v}", "MAD_koleo"), (built_on[-1], f"MAD_{v}"), (built_on[-1], "MAD_koleo")} <= (
        pairs
    )
    assert ("MAD_koleo", f"MAD_{v}") not in pairs
    text = "\n".join(bs.token_section(bs.claims_for(rows, names, ["separate"])))
    assert f"| MAD_{v} (own) |" in text


def test_a_sharper_recipe_is_also_held_to_its_own_single_view_runs(bench):
    """The collapse goal compares a recipe's teachers with the plain single-view runs and,
    when it has them, with single-view runs trained with its own one-view options: a
    colder teacher that passes the first can fail the second."""
    bs, _ = bench

    def info(name, morph, micro, collapsed=False):
        return dict(
            name=name, collapsed=collapsed, entropy_morphology=morph,
            entropy_microenvironment=micro,
        )  # fmt: skip

    v = "cold"
    infos = [
        info("MAD", 6.5, 6.5, collapsed=True),
        info("morphology", 4.0, np.nan), info("microenvironment", np.nan, 5.0),
        info(f"MAD_{v}", 3.5, 4.5), info(f"MAD_{v}", 3.9, 4.9),
        info(f"morphology_{v}", 3.0, np.nan), info(f"microenvironment_{v}", np.nan, 4.0),
        info("MAD_other", 3.0, 4.0),
    ]  # fmt: skip
    lines = {ln.split(" (")[0]: ln for ln in bs.collapse_goal_lines(infos) if "goal" in ln}
    assert lines["- Collapse goal for MAD"].endswith("NOT reached.")
    cold = lines[f"- Collapse goal for MAD_{v}"]
    assert "on every seed): reached." in cold
    assert cold.endswith("Against its own single-view runs (3.00 / 4.00): NOT reached.")
    assert "own" not in lines["- Collapse goal for MAD_other"]  # it has no own runs


def test_cosmx_pairs_the_recipe_with_its_controls_and_trains_their_crops(bench, tmp_path):
    """On CosMx the single-view runs get the recipe's crops, ``--also-paper`` adds the
    paper's loss, and the section pairs MAD with the separate pair over seeds."""
    bs, _ = bench
    args = SimpleNamespace(recipe="predictor_heads+centred_micro_crops", also_paper=True)
    assert bs.recipe_one_view(args) == {"augment": {"microenvironment_center_jitter": 0.1}}
    assert bs.recipe_one_view(SimpleNamespace(recipe="paper")) == {}
    rows = [
        dict(rep=r, metric=m, seed=s, test_fov=f, value=base + 0.01 * s + (0.1 if f == "b" else 0))
        for r, base in (("MAD", 0.3), ("separate", 0.2), ("MAD_paper", 0.25))
        for m in ("hest_pearson", "expression_pearson")
        for s in range(3)
        for f in ("a", "b")
    ]
    meta = dict(n_cells=120, fov_sizes={"a": 60, "b": 60}, n_genes=9, window_px=380.0,
                runs=[dict(train_s=1.0)])  # fmt: skip
    text = "\n".join(bs.cosmx_section(pd.DataFrame(rows), meta))
    assert "| metric | MAD - separate | MAD - MAD_paper |" in text
    # every seed's difference is the same: the interval collapses onto it
    assert "+0.100 [+0.100, +0.100] | +0.050 [+0.050, +0.050] |" in text

    # --cosmx-only reports runs already in the work folder without training again
    work, results = tmp_path / "work", tmp_path / "results"
    work.mkdir()
    pd.DataFrame(rows).to_csv(work / "cosmx_scores.csv", index=False)
    run = dict(train_s=2.0, collapsed=False, entropy_morphology=4.0, entropy_microenvironment=5.0)
    meta.update(seconds=60.0, runs=[dict(name="MAD", **run), dict(name="MAD", **run)])
    (work / "cosmx_meta.json").write_text(json.dumps(meta))
    args = SimpleNamespace(out="cx", cosmx_steps=7, seeds=[0, 1, 2], **vars(args))
    bs.cosmx_report(args, ["--cosmx-only"], work, results)
    report = (results / "cx.md").read_text()
    assert "| MAD | 2 | 0/2 | 4.00 | 5.00 |" in report
    assert "7 steps per run" in report and "+0.100 [+0.100, +0.100]" in report


def test_the_report_names_the_runs_every_seed_gets(bench):
    """The set-up line lists what ``jobs_for`` trains on every seed: no alpha 0 without
    ``--alphas 0``, ``MAD_paper`` with ``--also-paper``."""
    bs, _ = bench
    args = SimpleNamespace(
        seeds=[0, 1], sweep_seeds=None, alphas=[], recipe="predictor_heads", also_paper=True,
        extra=[], extra_separate=None,
    )  # fmt: skip
    per_seed = {n for s, n, _, _ in bs.jobs_for(args) if s == 1}
    assert per_seed == {"MAD", "MAD_paper", "morphology", "microenvironment"}
    assert bs.core_runs(args) == [
        "MAD", "the two single-view models", "MAD_paper (the paper's loss)"
    ]  # fmt: skip
    plain = SimpleNamespace(**{**vars(args), "recipe": "paper", "alphas": [0.0, 0.5]})
    assert "MAD_alpha0" in {n for _, n, _, _ in bs.jobs_for(plain)}
    assert bs.core_runs(plain) == ["MAD", "the two single-view models", "alpha 0"]


def test_a_rescoring_keeps_the_training_command_and_adds_its_own(bench):
    """``--skip-train`` on a trained work folder: the meta keeps the command, machine and
    wall time of the training and lists each rescoring after it (a rescoring once
    replaced the training command in the report)."""
    bs, _ = bench
    trained = {"argv": ["--steps", "1000"], "wall_s": 1920.0, "machine": "2 CPUs", "x": 1}
    first = bs.rescored_meta(trained, {"argv": ["--skip-train"], "wall_s": 120.0, "machine": "m"})
    again = bs.rescored_meta(first, {"argv": ["--skip-train", "-v"], "wall_s": 6.0, "machine": "m"})
    assert again["argv"] == ["--steps", "1000"] and again["wall_s"] == 1920.0 and again["x"] == 1
    assert [r["argv"] for r in again["rescored"]] == [["--skip-train"], ["--skip-train", "-v"]]
    assert "rescored" not in trained  # the training's meta is not changed in place


def test_view_information_scores_each_factor_separately(bench):
    """An embedding that encodes the morphological class only predicts the class
    perfectly and the partner within a niche-only pair at chance; one that encodes the
    subtype predicts both."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_view_information as bvi
    finally:
        sys.path.remove(str(BENCH))
    from madspatial.datasets import NICHE_ONLY_PAIRS

    rng = np.random.default_rng(0)
    pair = NICHE_ONLY_PAIRS[0]
    n = 400
    ct = np.array([pair[i % 2] for i in range(n)] + ["tumour_quiescent"] * n)
    obs = pd.DataFrame(
        {
            "cell_type": ct,
            "morph_class": np.where(np.isin(ct, pair), "a", "b"),
            "niche": rng.choice(["x", "y"], size=2 * n),
        }
    )
    train = rng.random(2 * n) < 0.7
    is_a = (obs["morph_class"] == "a").to_numpy()
    klass = np.c_[is_a, ~is_a].astype(float) + rng.normal(0, 0.01, (2 * n, 2))  # 2 directions
    s = bvi.factor_scores(klass, obs, train, ~train)
    assert s["morph_class"] == 1.0 and s["morph_class_linear"] == 1.0
    assert 0.35 < s["niche_linear"] < 0.65  # the niche was drawn at random
    assert 0.35 < s["niche_only_pairs"] < 0.65  # one pair: the partner is a coin flip
    subtype = np.c_[klass, 5.0 * (ct == pair[0])]
    assert bvi.factor_scores(subtype, obs, train, ~train)["niche_only_pairs"] == 1.0
    # the centre pixels: the middle 24 px of each microenvironment view, pooled 2 x 2
    micro = np.zeros((2, 1, 40, 40), np.uint8)
    micro[1, 0, 8:32, 8:32] = 4
    micro[1, 0, 8:10, 8:10] = 8  # the top-left pooled pixel of the centre crop
    px = bvi.centre_pixels(SimpleNamespace(microenvironment=micro))
    assert px.shape == (2, 144) and px[0].max() == 0
    assert px[1, 0] == 8 and np.all(px[1, 1:] == 4)


def test_token_ceiling_trains_the_microenvironment_backbone_on_labels(tissue_with_views):
    """The supervised reference gives one class token per cell, and training moves it."""
    sys.path.insert(0, str(BENCH))
    try:
        import bench_token_ceiling as btc
    finally:
        sys.path.remove(str(BENCH))
    sdata, store = tissue_with_views
    labels = sdata["table"].obs["morph_class"].astype(str).to_numpy()
    train = np.arange(len(labels)) % 4 != 0
    z0 = btc.train_supervised(store, labels, train, steps=0, jitter=None, seed=0, batch_size=8)
    z = btc.train_supervised(store, labels, train, steps=3, jitter=0.1, seed=0, batch_size=8)
    assert z.shape == z0.shape == (len(labels), 48) and np.isfinite(z).all()
    assert not np.allclose(z, z0)  # the steps changed the backbone


def test_ground_truth_reads_back_the_activities_the_counts_were_drawn_from(bench):
    from madspatial.datasets._tissue_slide import render_slide

    bs_main, bs = bench
    obs0 = pd.DataFrame({"cell_type": ["a"]})  # not a synthetic tissue: no ceiling
    rngs = [np.random.default_rng(s) for s in range(5)]
    sl = render_slide(rngs, (320, 320), 160, noise=1.0)
    w = bs.ground_truth_activities(sl.obs)
    caf = (sl.obs["cell_type"] == "CAF").to_numpy()
    assert caf.any() and (~caf).any()
    for name, drawn in sl.activities.items():
        if name == "MYOFIBROBLAST_ACTIVATION":  # obs records stromal fibroblasts' only
            np.testing.assert_array_equal(w[name][~caf], drawn[~caf])
            assert (w[name][caf] == 0).all() and (drawn[caf] > 0).any()
        else:
            # obs keeps the nest distance in float32: equal to its precision
            np.testing.assert_allclose(w[name], drawn, rtol=1e-6, err_msg=name)
    feats = bs.ground_truth_features(sl.obs.assign(area=np.arange(1.0, len(sl.obs) + 1)))
    assert feats.shape == (len(sl.obs), len(w) + 1) and np.isfinite(feats).all()
    table = SimpleNamespace(obs=sl.obs.assign(area=100.0))
    assert list(bs_main.ceiling_for(table)) == [bs_main.CEILING]
    assert bs_main.ceiling_for(None) == {} and bs_main.ceiling_for(SimpleNamespace(obs=obs0)) == {}
    with pytest.raises(ValueError, match="not synthetic-tissue values"):
        bs.ground_truth_activities(sl.obs.assign(niche="lymph_node"))


def test_expression_room_factors_and_the_window_reading(bench):
    sys.path.insert(0, str(BENCH))
    try:
        import bench_expression_room as ber
    finally:
        sys.path.remove(str(BENCH))
    # two clusters far apart: 30 tumour cells in a nest, 30 B cells in an aggregate
    n = 30
    obs = pd.DataFrame(
        {
            "cell_type": ["tumour_proliferative", "tumour_quiescent"] * (n // 2) + ["B_cell"] * n,
            "morph_class": ["epithelial"] * n + ["lymphocyte"] * n,
            "niche": ["tumour"] * n + ["immune"] * n,
            "trajectory": np.nan,
            "tumour_distance": np.r_[-np.arange(n, dtype=float), np.full(n, 50.0)],
            "area": np.r_[np.full(n, 200.0), np.full(n, 60.0)],
        }
    )
    xy = np.c_[np.r_[np.arange(n), 1000 + np.arange(n)], np.zeros(2 * n)].astype(float)
    blocks = ber.factor_blocks(obs)
    assert list(blocks) == list(ber.FACTORS)
    # the tumour pair alternates within the nest: its block is balanced and not constant
    assert blocks["tumour pair (morphology-only)"].var(axis=0).sum() == pytest.approx(1.0)
    assert not blocks["fibroblast activation"].any()  # no fibroblasts: a zero block
    win = ber.window_truth(obs, xy, k=25)
    own_cols = 2 + 2 + 1  # two classes present, the tumour pair, log area
    comp = win[:, own_cols:]
    assert win.shape == (2 * n, own_cols + 2)
    # every cell's 25 nearest neighbours are its own cluster: one composition per cluster
    np.testing.assert_allclose(comp[:n], comp[0][None].repeat(n, 0), atol=1e-6)
    assert np.abs(comp[0] - comp[n]).min() > 1.0
    # no niche label or niche program leaks in: moving every cell's niche changes nothing
    moved = obs.assign(niche="stroma", tumour_distance=80.0)
    np.testing.assert_array_equal(ber.window_truth(moved, xy, k=25), win)
    names = ber.with_factors({"x": np.zeros((2 * n, 3))}, blocks)
    assert set(names) == {"x"} | {f"x + {f}" for f in ber.FACTORS}


def test_the_benchmarked_variant_is_the_library_recipe():
    """The numbers docs/concepts.md gives for recipe="predictor_heads" were measured as
    bench_collapse's ``predictor_heads+centred_micro_crops``: they must stay one thing."""
    from madspatial.train import RECIPES

    sys.path.insert(0, str(BENCH))
    try:
        import bench_collapse as bc
    finally:
        sys.path.remove(str(BENCH))
    mode, options, _ = bc.VARIANTS["predictor_heads+centred_micro_crops"]
    assert (mode, options) == ("mad", RECIPES["predictor_heads"])
    # the library's recipe="auto" would turn a long MAD_paper run into the recipe: every
    # benchmark run names the paper's loss and adds its variant's options to it
    assert bc.BASE["recipe"] == "paper"
