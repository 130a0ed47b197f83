from __future__ import annotations

import math

import pytest
import torch

from madspatial.nn import MADLoss, koleo_loss

M, E = "morphology", "microenvironment"
K = 7
B = 3


def _logits(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, K, generator=g, dtype=torch.float64) * 2 for _ in range(n)]


def _hand_ce(t_list, s_list, same_view, center, tt, st):
    """Explicit loops over (teacher crop, student crop, cell)."""
    vals = []
    for i, t in enumerate(t_list):
        for j, s in enumerate(s_list):
            if same_view and i == j:
                continue
            for b in range(t.shape[0]):
                p = torch.softmax((t[b] - center[0]) / tt, dim=-1)
                logq = torch.log_softmax(s[b] / st, dim=-1)
                vals.append(float(-(p * logq).sum()))
    return sum(vals) / len(vals)


def _hand_loss(student, teacher, mode, alpha, center, tt=0.05, st=0.1):
    if mode == "mad":
        out = _hand_ce(teacher[M], student[M], True, center, tt, st)
        out += _hand_ce(teacher[E], student[E], True, center, tt, st)
        if alpha:
            out += alpha * _hand_ce(teacher[M], student[E], False, center, tt, st)
            out += alpha * _hand_ce(teacher[E], student[M], False, center, tt, st)
        return out
    return _hand_ce(teacher[mode], student[mode], True, center, tt, st)


def _inputs(n_global=2, n_local=3):
    teacher = {M: _logits(n_global, 1), E: _logits(n_global, 2)}
    # student global crops are different logits (the student is another network)
    student = {M: _logits(n_global + n_local, 3), E: _logits(n_global + n_local, 4)}
    return student, teacher


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.5])
def test_mad_loss_matches_hand_computation(alpha):
    student, teacher = _inputs()
    loss_fn = MADLoss(K, alpha=alpha, student_temp=0.1)
    loss_fn.center.copy_(torch.linspace(-0.3, 0.4, K)[None])
    got = loss_fn(student, teacher, teacher_temp=0.05)
    want = _hand_loss(student, teacher, "mad", alpha, loss_fn.center.double())
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert (f"{M}->{E}" in loss_fn.last_terms) == (alpha != 0)


def test_alpha_zero_is_sum_of_single_view_losses():
    student, teacher = _inputs()
    total = MADLoss(K, alpha=0.0)(student, teacher, 0.05)
    morph = MADLoss(K, mode=M)(student, teacher, 0.05)
    micro = MADLoss(K, mode=E)(student, teacher, 0.05)
    assert float(total) == pytest.approx(float(morph) + float(micro), rel=1e-6)
    # and the cross terms carry real weight when alpha > 0
    assert float(MADLoss(K, alpha=1.0)(student, teacher, 0.05)) > float(total) + 1e-3


@pytest.mark.parametrize("mode", [M, E])
def test_single_view_modes_match_hand_and_ignore_other_view(mode):
    student, teacher = _inputs()
    got = MADLoss(K, mode=mode)(student, teacher, 0.05)
    want = _hand_loss(student, teacher, mode, 1.0, torch.zeros(1, K, dtype=torch.float64))
    assert float(got) == pytest.approx(want, rel=1e-5)
    # the other view may be absent entirely
    only = {mode: student[mode]}
    got2 = MADLoss(K, mode=mode)(only, {mode: teacher[mode]}, 0.05)
    assert float(got2) == pytest.approx(float(got), rel=1e-6)


def test_student_crop_never_paired_with_its_own_teacher_crop():
    # Two global crops, no locals: only the pairs (t0, s1) and (t1, s0) count.
    t = _logits(2, 5)
    s = [t[0].clone(), _logits(1, 6)[0]]
    loss_fn = MADLoss(K, mode=M)
    got = float(loss_fn({M: s}, {M: t}, 0.05))
    z = torch.zeros(1, K, dtype=torch.float64)
    want = (
        _hand_ce([t[0]], [s[1]], False, z, 0.05, 0.1)
        + _hand_ce([t[1]], [s[0]], False, z, 0.05, 0.1)
    ) / 2
    assert got == pytest.approx(want, rel=1e-5)
    # The student's own-crop output does not influence the loss through the diagonal: the
    # gradient w.r.t. s0 is that of the single pair (t1, s0).
    s0 = s[0].clone().float().requires_grad_(True)
    MADLoss(K, mode=M)({M: [s0, s[1].float()]}, {M: [x.float() for x in t]}, 0.05).backward()
    s0b = s[0].clone().float().requires_grad_(True)
    p = torch.softmax(t[1].float() / 0.05, -1)
    (-(p * torch.log_softmax(s0b / 0.1, -1)).sum(-1).mean() / 2).backward()
    torch.testing.assert_close(s0.grad, s0b.grad)


def test_cross_view_pairs_include_same_index():
    # mad mode, one global crop per view and no locals: the same-view terms have no pairs
    t = {M: _logits(1, 7), E: _logits(1, 8)}
    with pytest.raises(ValueError, match="no valid teacher/student pairs"):
        MADLoss(K)({M: _logits(1, 9), E: _logits(1, 10)}, t, 0.05)


def test_teacher_gets_no_gradient_and_student_does():
    student, teacher = _inputs()
    s = {v: [x.float().requires_grad_(True) for x in xs] for v, xs in student.items()}
    tt = {v: [x.float().requires_grad_(True) for x in xs] for v, xs in teacher.items()}
    MADLoss(K)(s, tt, 0.05).backward()
    assert all(x.grad is None for xs in tt.values() for x in xs)
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for xs in s.values() for x in xs)


def test_bad_inputs_raise_clearly():
    student, teacher = _inputs()
    with pytest.raises(ValueError, match="microenvironment"):
        MADLoss(K)({M: student[M]}, teacher, 0.05)
    with pytest.raises(ValueError, match=r"\(B, 7\)"):
        MADLoss(K)({M: [torch.zeros(B, 5)] * 3, E: student[E]}, teacher, 0.05)
    with pytest.raises(ValueError, match="student crops"):
        MADLoss(K, mode=M)({M: student[M][:1]}, teacher, 0.05)
    with pytest.raises(ValueError, match="mode"):
        MADLoss(K, mode="both")


def test_center_update_momentum():
    loss_fn = MADLoss(K, center_momentum=0.9)
    a, b = _logits(2, 11)
    loss_fn.update_center([a, b])
    c1 = 0.1 * torch.cat([a, b]).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, c1.float())
    c = _logits(1, 12)[0]
    loss_fn.update_center({M: [c]})  # dict form
    torch.testing.assert_close(loss_fn.center, (0.9 * c1 + 0.1 * c.mean(0, keepdim=True)).float())


def test_center_update_under_torch_distributed(tmp_path):
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group already exists")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loss_fn = MADLoss(K)
        a = _logits(1, 13)[0]
        loss_fn.update_center([a])
        torch.testing.assert_close(loss_fn.center, 0.1 * a.mean(0, keepdim=True).float())
    finally:
        dist.destroy_process_group()


def test_koleo_hand_computation():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    d01, d02, d12 = math.sqrt(2), math.sqrt(0.4**2 + 0.8**2), math.sqrt(0.6**2 + 0.2**2)
    nn_dists = [min(d01, d02), min(d01, d12), min(d02, d12)]
    want = -sum(math.log(d) for d in nn_dists) / 3
    assert float(koleo_loss(x)) == pytest.approx(want, rel=1e-5)
    # invariant to row scaling (features are L2-normalised first)
    assert float(koleo_loss(x * torch.tensor([[3.0], [0.5], [7.0]]))) == pytest.approx(
        want, rel=1e-5
    )
    # spreading points apart lowers it
    assert float(koleo_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))) < want
    with pytest.raises(ValueError, match="B >= 2"):
        koleo_loss(torch.ones(1, 3))


def test_center_update_averages_over_ranks(monkeypatch):
    """With a process group, the batch center is the mean over all ranks' cells."""
    import torch.distributed as dist

    other = _logits(1, 14)[0][:2]  # the other rank holds 2 cells, this one 3
    other_stats = torch.cat([other.sum(0), torch.tensor([2.0], dtype=torch.float64)]).float()

    def fake_all_reduce(t):
        t.add_(other_stats)

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    loss_fn = MADLoss(K)
    mine = _logits(1, 15)[0]
    loss_fn.update_center([mine])
    want = 0.1 * torch.cat([mine, other]).mean(0, keepdim=True)
    torch.testing.assert_close(loss_fn.center, want.float())


def test_loss_stays_fp32_under_bf16_autocast():
    student, teacher = _inputs()
    s = {v: [x.float() for x in xs] for v, xs in student.items()}
    t = {v: [x.float() for x in xs] for v, xs in teacher.items()}
    ref = MADLoss(K)(s, t, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = MADLoss(K)(s, t, 0.05)
        kol = koleo_loss(s[M][0])
    assert got.dtype == torch.float32 and kol.dtype == torch.float32
    torch.testing.assert_close(got, ref)


def test_sinkhorn_probs_rows_normalised_and_columns_equalised():
    torch.manual_seed(0)
    logits = torch.randn(64, 16) * 0.05 + torch.randn(1, 16)  # a strong shared component
    loss_fn = MADLoss(16, centering="sinkhorn", sinkhorn_iterations=50)
    q = loss_fn.sinkhorn_probs(logits, 0.04)
    torch.testing.assert_close(q.sum(1), torch.ones(64))
    # equipartition: every prototype receives ~N/K of the mass despite the shared component
    torch.testing.assert_close(q.sum(0), torch.full((16,), 64 / 16), atol=1e-3, rtol=1e-3)
    # while the plain softmax puts (almost) everyone on the same prototype
    plain = torch.softmax(logits / 0.04, dim=-1)
    assert plain.sum(0).max() > 32


def test_sinkhorn_loss_matches_hand_computation():
    torch.manual_seed(1)
    K, B = 8, 6
    student = {v: [torch.randn(B, K) for _ in range(3)] for v in ("morphology", "microenvironment")}
    teacher = {v: [torch.randn(B, K) for _ in range(2)] for v in ("morphology", "microenvironment")}
    loss_fn = MADLoss(K, centering="sinkhorn", alpha=0.5)
    got = loss_fn(student, teacher, 0.07)
    probs = {
        v: loss_fn.sinkhorn_probs(torch.cat(teacher[v]), 0.07).reshape(2, B, K) for v in teacher
    }
    total = 0.0
    for (u, v), w in {
        ("morphology", "morphology"): 1.0,
        ("microenvironment", "microenvironment"): 1.0,
        ("morphology", "microenvironment"): 0.5,
        ("microenvironment", "morphology"): 0.5,
    }.items():
        ces = []
        for i in range(2):
            for j in range(3):
                if u == v and i == j:
                    continue
                logp = torch.log_softmax(student[v][j] / 0.1, dim=-1)
                ces.append(-(probs[u][i] * logp).sum(-1).mean())
        total += w * torch.stack(ces).mean()
    torch.testing.assert_close(got, total)


def test_unknown_centering_raises():
    with pytest.raises(ValueError, match="centering"):
        MADLoss(8, centering="mean")


def test_view_centers_center_each_view_with_its_own_mean():
    student, teacher = _inputs()
    loss_fn = MADLoss(K, view_centers=True, center_momentum=0.5)
    assert loss_fn.center.shape == (2, K)
    loss_fn.update_center(teacher)
    for i, v in enumerate((M, E)):
        want = 0.5 * torch.cat(teacher[v]).mean(0)
        torch.testing.assert_close(loss_fn.center[i], want.float())
    # each view's teacher is centred with its own row: equal to a shared-center loss whose
    # center is that row, view by view (alpha 0 separates the views)
    got = loss_fn(student, teacher, 0.05)
    want = 0.0
    for i, v in enumerate((M, E)):
        single = MADLoss(K, mode=v)
        single.center.copy_(loss_fn.center[i : i + 1])
        want += float(single(student, teacher, 0.05))
    loss_fn.alpha = 0.0  # alpha is a plain attribute (the trainer ramps it)
    assert float(loss_fn(student, teacher, 0.05)) == pytest.approx(want, rel=1e-6)
    assert float(got) > float(loss_fn(student, teacher, 0.05))  # cross terms add
    # the shared center (default) is the mean over both views
    default = MADLoss(K, center_momentum=0.5)
    default.update_center(teacher)
    both = torch.cat([*teacher[M], *teacher[E]]).mean(0)
    torch.testing.assert_close(default.center[0], (0.5 * both).float())


def test_view_centers_needs_the_view():
    loss_fn = MADLoss(K, view_centers=True)
    with pytest.raises(ValueError, match="pass the teacher logits as"):
        loss_fn.update_center([torch.zeros(B, K)])
    with pytest.raises(ValueError, match="needs the view of the logits"):
        loss_fn.teacher_probs(torch.zeros(B, K), 0.04)


def test_view_diagnostics_per_view_entropy_and_agreement():
    from madspatial.train._history import view_diagnostics

    loss_fn = MADLoss(4)
    sharp = torch.eye(4)[[0, 1, 2, 3]] * 50  # 4 cells, each on its own prototype
    teacher = {M: [sharp, sharp], E: [torch.zeros(4, 4), torch.zeros(4, 4)]}
    student = {M: [sharp, sharp], E: [sharp, sharp]}
    loss_fn(student, teacher, 1.0)
    d = view_diagnostics(loss_fn, (M, E))
    assert d[f"teacher_entropy_{M}"] == pytest.approx(0.0, abs=1e-6)
    assert d[f"teacher_entropy_{E}"] == pytest.approx(math.log(4), abs=1e-6)
    assert d[f"teacher_batch_entropy_{M}"] == pytest.approx(math.log(4), abs=1e-6)
    # the uniform view's argmax is prototype 0 for every cell: 1 of 4 cells agree
    assert d["view_agreement"] == pytest.approx(0.25)
    # CE(sharp, uniform) = ln 4; CE(uniform, sharp) is huge: the views disagree
    assert d["teacher_cross_ce"] > math.log(4)
    same = {M: [sharp, sharp], E: [sharp, sharp]}
    loss_fn(student, same, 1.0)
    d = view_diagnostics(loss_fn, (M, E))
    assert d["view_agreement"] == 1.0 and d["teacher_cross_ce"] == pytest.approx(0.0, abs=1e-5)
    single = MADLoss(4, mode=M)
    single(student, teacher, 1.0)
    assert set(view_diagnostics(single, (M,))) == {
        f"teacher_entropy_{M}",
        f"teacher_batch_entropy_{M}",
    }


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_trainer_ramps_alpha_and_logs_per_view_diagnostics(tissue_views, tmp_path):
    import madspatial as mad

    store = mad.io.read_views(tissue_views)
    model = mad.tl.pretrain(
        store,
        model="vit_pico",
        max_steps=4,
        batch_size=8,
        n_prototypes=16,
        head_hidden_dim=16,
        head_bottleneck_dim=8,
        n_local=1,
        n_holdout=8,
        alpha=0.5,
        alpha_warmup_steps=2,
        view_centers=True,
        precision="fp32",
        resume=False,
        checkpoint_dir=tmp_path / "m",
    )
    h = model.history
    assert h["alpha"] == [0.0, 0.25, 0.5, 0.5]
    for key in (
        f"teacher_entropy_{M}",
        f"teacher_entropy_{E}",
        "view_agreement",
        "teacher_cross_ce",
    ):
        assert len(h[key]) == 4 and all(math.isfinite(x) for x in h[key]), key
    assert all(0.0 <= a <= 1.0 for a in h["view_agreement"])
    with pytest.raises(ValueError, match="alpha_warmup_steps must be an int >= 0"):
        mad.tl.pretrain(store, model="vit_pico", max_steps=1, alpha_warmup_steps=-1)


def test_view_heads_score_each_term_in_its_teacher_views_head():
    """With one head per view, CE(u -> v) compares head u's teacher of view u with head
    u's student scores of view v's crops, centred with head u's own center."""
    g = torch.Generator().manual_seed(5)

    def wide(n):  # (B, 2K): morphology head's logits, then the microenvironment head's
        return [torch.randn(B, 2 * K, generator=g, dtype=torch.float64) * 2 for _ in range(n)]

    teacher = {M: wide(2), E: wide(2)}
    student = {M: wide(4), E: wide(4)}
    loss_fn = MADLoss(K, alpha=0.5, view_heads=True)
    assert loss_fn.view_centers and loss_fn.center.shape == (2, K)
    loss_fn.center.copy_(torch.stack([torch.linspace(-0.3, 0.4, K), torch.linspace(0.2, -0.1, K)]))
    got = loss_fn(student, teacher, teacher_temp=0.05)

    def head(xs, i):
        return [x[:, i * K : (i + 1) * K] for x in xs]

    c = loss_fn.center.double()
    want = 0.0
    for (u, v), w in {(M, M): 1.0, (E, E): 1.0, (M, E): 0.5, (E, M): 0.5}.items():
        i = (M, E).index(u)
        want += w * _hand_ce(
            head(teacher[u], i), head(student[v], i), u == v, c[i : i + 1], 0.05, 0.1
        )
    assert float(got) == pytest.approx(want, rel=1e-5)
    # the other head's scores of a view's own crops never enter its same-view term
    student2 = {M: [torch.cat([s[:, :K], s[:, K:] * 0 + 3], dim=1) for s in student[M]]}
    student2[E] = student[E]
    loss_fn.alpha = 0.0
    assert float(loss_fn(student2, teacher, 0.05)) == pytest.approx(
        float(loss_fn(student, teacher, 0.05)), rel=1e-6
    )
    # each head's center follows its own view's teacher logits, in its own slice
    loss_fn.center.zero_()
    loss_fn.center_momentum = 0.0
    loss_fn.update_center(teacher)
    torch.testing.assert_close(loss_fn.center[0], torch.cat(head(teacher[M], 0)).mean(0).float())
    torch.testing.assert_close(loss_fn.center[1], torch.cat(head(teacher[E], 1)).mean(0).float())


def test_view_heads_refuse_the_wrong_width_and_one_view():
    loss_fn = MADLoss(K, view_heads=True)
    student, teacher = _inputs()  # (B, K): one shared head's logits
    with pytest.raises(ValueError, match=r"\(B, 14\) \(2 heads x 7\)"):
        loss_fn(student, teacher, 0.05)
    with pytest.raises(ValueError, match="view_heads=True needs mode='mad'"):
        MADLoss(K, mode=M, view_heads=True)


def test_view_diagnostics_with_view_heads_compare_views_within_each_head():
    from madspatial.train._history import view_diagnostics

    loss_fn = MADLoss(4, view_heads=True)
    sharp = torch.eye(4) * 50
    # both heads put every cell of both views on the same prototype: full agreement,
    # although prototype k of one head has nothing to do with prototype k of the other
    same = torch.cat([sharp, sharp[[1, 2, 3, 0]]], dim=1)
    teacher = {M: [same, same], E: [same, same]}
    loss_fn(teacher, teacher, 1.0)
    d = view_diagnostics(loss_fn, (M, E))
    assert d["view_agreement"] == pytest.approx(1.0)
    # the microenvironment view's crops land elsewhere in the morphology head: half agree
    other = torch.cat([sharp[[1, 0, 2, 3]], sharp[[1, 2, 3, 0]]], dim=1)
    loss_fn(teacher, {M: [same, same], E: [other, other]}, 1.0)
    assert view_diagnostics(loss_fn, (M, E))["view_agreement"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("cross_terms", "kept"), [("to_microenvironment", (M, E)), ("to_morphology", (E, M))]
)
def test_one_cross_term_matches_hand_computation(cross_terms, kept):
    """``cross_terms`` keeps one direction: teacher view ``kept[0]`` -> student ``kept[1]``."""
    student, teacher = _inputs()
    loss_fn = MADLoss(K, alpha=0.5, cross_terms=cross_terms)
    got = loss_fn(student, teacher, 0.05)
    c = torch.zeros(1, K, dtype=torch.float64)
    want = _hand_loss(student, teacher, "mad", 0.0, c)
    want += 0.5 * _hand_ce(teacher[kept[0]], student[kept[1]], False, c, 0.05, 0.1)
    assert float(got) == pytest.approx(want, rel=1e-5)
    assert set(loss_fn.last_terms) == {f"{M}->{M}", f"{E}->{E}", f"{kept[0]}->{kept[1]}"}
    with pytest.raises(ValueError, match="cross_terms must be one of"):
        MADLoss(K, cross_terms="one")


def test_predictor_heads_score_cross_terms_with_the_predictor_not_the_teacher_head():
    """With predictor heads the logits are (B, 4K): morphology head, microenvironment head,
    predict_morphology, predict_microenvironment; CE(u -> v), u != v, scores v's crops
    with predict_u, and the own heads' slices of the other view's crops are never used."""
    g = torch.Generator().manual_seed(7)

    def wide(n):
        return [torch.randn(B, 4 * K, generator=g, dtype=torch.float64) * 2 for _ in range(n)]

    teacher, student = {M: wide(2), E: wide(2)}, {M: wide(4), E: wide(4)}
    loss_fn = MADLoss(K, view_heads=True, predictor_heads=True)

    def head(xs, i):
        return [x[:, i * K : (i + 1) * K] for x in xs]

    c = torch.zeros(1, K, dtype=torch.float64)
    want = _hand_ce(head(teacher[M], 0), head(student[M], 0), True, c, 0.05, 0.1)
    want += _hand_ce(head(teacher[E], 1), head(student[E], 1), True, c, 0.05, 0.1)
    want += _hand_ce(head(teacher[M], 0), head(student[E], 2), False, c, 0.05, 0.1)
    want += _hand_ce(head(teacher[E], 1), head(student[M], 3), False, c, 0.05, 0.1)
    assert float(loss_fn(student, teacher, 0.05)) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="predictor_heads=True needs view_heads=True"):
        MADLoss(K, predictor_heads=True)
