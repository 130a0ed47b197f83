from __future__ import annotations

import numpy as np
import pytest
import torch

from madspatial.nn import MultiCropAugment, cosine_schedule, teacher_temperature_schedule

from .conftest import NO_AUGMENT


def _views(b=4, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    morph = torch.zeros(b, c, 70, 70, dtype=torch.uint8)
    # a "cell": a bright disc at the centre, zeros outside (masked)
    yy, xx = torch.meshgrid(torch.arange(70), torch.arange(70), indexing="ij")
    disc = ((yy - 34.5) ** 2 + (xx - 34.5) ** 2) < 12**2
    morph[:, :, disc] = torch.randint(
        50, 256, (b, c, int(disc.sum())), dtype=torch.uint8, generator=g
    )
    micro = torch.randint(0, 256, (b, c, 224, 224), dtype=torch.uint8, generator=g)
    return morph, micro


def test_shapes_dtype_range():
    morph, micro = _views()
    aug = MultiCropAugment(n_global=2, n_local=3)
    out = aug(morph, micro, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"morphology", "microenvironment"}
    for view, (gs, ls) in {"morphology": (70, 28), "microenvironment": (224, 98)}.items():
        assert [t.shape for t in out[view]["global"]] == [(4, 3, gs, gs)] * 2
        assert [t.shape for t in out[view]["local"]] == [(4, 3, ls, ls)] * 3
        for t in out[view]["global"] + out[view]["local"]:
            assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 1


def test_deterministic_for_a_seed_and_varies_across_seeds():
    morph, micro = _views()
    aug = MultiCropAugment(n_local=2)
    a = aug(morph, micro, generator=torch.Generator().manual_seed(3))
    b = aug(morph, micro, generator=torch.Generator().manual_seed(3))
    c = aug(morph, micro, generator=torch.Generator().manual_seed(4))
    for view in a:
        for kind in ("global", "local"):
            for x, y, z in zip(a[view][kind], b[view][kind], c[view][kind]):
                assert torch.equal(x, y)
                assert not torch.equal(x, z)
    # per-sample randomness: identical cells get different crops within one batch
    same = micro[:1].expand(4, -1, -1, -1)
    crops = aug(None, same, generator=torch.Generator().manual_seed(0))["microenvironment"]
    assert not torch.equal(crops["global"][0][0], crops["global"][0][1])


@pytest.mark.parametrize("c", [1, 7])
def test_any_channel_count_and_single_view(c):
    morph, _ = _views(b=2, c=c)
    out = MultiCropAugment(n_local=1)(morph, None, generator=torch.Generator().manual_seed(0))
    assert list(out) == ["morphology"]
    assert out["morphology"]["global"][0].shape == (2, c, 70, 70)
    with pytest.raises(ValueError, match="at least one"):
        MultiCropAugment()(None, None, generator=torch.Generator())


def test_morphology_zeros_stay_zero_and_crops_stay_on_the_cell():
    morph, micro = _views(b=8)
    aug = MultiCropAugment(n_local=4, jitter=0.4, noise_std=0.1, blur_p=0.0)
    out = aug(morph, micro, generator=torch.Generator().manual_seed(0))
    for crop in out["morphology"]["global"] + out["morphology"]["local"]:
        # corners of a 70-px cell view are masked background: still exactly zero
        assert torch.all(crop[..., 0, 0] == 0) or crop.shape[-1] == 28
        # every crop, even the zoomed-in local ones, shows the cell
        assert torch.all(crop.flatten(1).amax(1) > 0.1)
    empty = torch.zeros(3, 2, 70, 70, dtype=torch.uint8)
    out = MultiCropAugment(noise_std=0.2, noise_p=1.0, jitter=0.5, blur_p=1.0)(
        empty, None, generator=torch.Generator()
    )
    assert all(torch.all(t == 0) for t in out["morphology"]["global"] + out["morphology"]["local"])
    # the microenvironment gets noise everywhere
    flat = torch.full((2, 2, 224, 224), 128, dtype=torch.uint8)
    noisy = MultiCropAugment(noise_std=0.05, noise_p=1.0, jitter=0.0, blur_p=0.0)(
        None, flat, generator=torch.Generator()
    )
    assert noisy["microenvironment"]["global"][0].std() > 0.03


def test_flips_cover_the_dihedral_group():
    img = torch.arange(70 * 70, dtype=torch.float32).reshape(1, 1, 70, 70) / (70 * 70)
    batch = img.expand(64, -1, -1, -1)
    aug = MultiCropAugment(
        n_global=1,
        n_local=0,
        global_scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        jitter=0.0,
        blur_p=0.0,
        noise_std=0.0,
    )
    out = aug(batch, None, generator=torch.Generator().manual_seed(0))["morphology"]["global"][0]
    base = img[0, 0]
    d4 = [torch.rot90(base, k, (0, 1)) for k in range(4)]
    d4 += [t.flip(-1) for t in d4]
    seen = set()
    for x in out[:, 0]:
        idx = [i for i, t in enumerate(d4) if torch.allclose(x, t)]
        assert len(idx) == 1
        seen.add(idx[0])
    assert len(seen) == 8


def test_blur_preserves_constant_and_mass():
    flat = torch.full((3, 2, 98, 98), 100, dtype=torch.uint8)
    aug = MultiCropAugment(
        **NO_AUGMENT, microenvironment_size=98, blur_p=1.0, blur_sigma=(2.0, 4.0)
    )
    out = aug(None, flat, generator=torch.Generator())["microenvironment"]["global"][0]
    torch.testing.assert_close(out, torch.full_like(out, 100 / 255))
    spot = torch.zeros(1, 1, 98, 98, dtype=torch.uint8)
    spot[..., 49, 49] = 255
    blurred = aug(None, spot, generator=torch.Generator())["microenvironment"]["global"][0]
    assert blurred[..., 49, 49] < 0.5 and blurred.sum() == pytest.approx(1.0, rel=1e-4)


def test_augment_validation():
    with pytest.raises(ValueError, match="multiple of the patch size"):
        MultiCropAugment(local_morphology_size=30)
    with pytest.raises(ValueError, match="local_scale"):
        MultiCropAugment(local_scale=(0.5, 0.1))
    with pytest.raises(TypeError, match="uint8 or float"):
        MultiCropAugment()(
            torch.zeros(1, 1, 70, 70, dtype=torch.int32), None, generator=torch.Generator()
        )


# ------------------------------------------------------------------ schedules
def test_cosine_schedule_values():
    s = cosine_schedule(1.0, 0.0, 10, warmup_steps=3, warmup_start=0.1)
    assert s.shape == (10,)
    np.testing.assert_allclose(s[:3], [0.1, 0.4, 0.7])
    np.testing.assert_allclose(s[3:], 0.5 * (1 + np.cos(np.pi * np.arange(7) / 6)))
    assert s[3] == 1.0 and s[-1] == 0.0
    wd = cosine_schedule(0.04, 0.4, 5)
    assert wd[0] == pytest.approx(0.04) and wd[-1] == pytest.approx(0.4) and np.all(np.diff(wd) > 0)
    mom = cosine_schedule(0.992, 1.0, 100)
    assert mom[0] == pytest.approx(0.992) and mom[-1] == 1.0 and np.all(np.diff(mom) >= 0)
    np.testing.assert_allclose(cosine_schedule(1.0, 0.0, 2, warmup_steps=5), [0.0, 0.2])
    assert cosine_schedule(1.0, 0.5, 1).tolist() == [0.5]
    with pytest.raises(ValueError):
        cosine_schedule(1.0, 0.0, -1)


def test_teacher_temperature_schedule():
    t = teacher_temperature_schedule(6, warmup_steps=3)
    np.testing.assert_allclose(t, [0.04, 0.05, 0.06, 0.07, 0.07, 0.07])
    np.testing.assert_allclose(teacher_temperature_schedule(3, warmup_steps=0), [0.07] * 3)
