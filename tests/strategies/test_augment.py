import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from fairseq_goodviews.strategies.augment import (
    AugmentationConfig,
    augment,
    jitter,
    magnitude_warp,
    permute_leads,
    random_lead_mask,
    time_warp,
)


@pytest.mark.parametrize("n_leads", [1, 2, 3, 6, 12, 15])
def test_lead_mask_zeroes_exactly_the_masked_leads(n_leads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_leads, 200)).astype(np.float32) + 3.0
    for _ in range(50):
        masked, lead_mask = random_lead_mask(x, np.ones(n_leads, bool), 0.5, rng)
        assert lead_mask.shape == (n_leads,)
        assert np.all(masked[lead_mask] == 0)
        np.testing.assert_array_equal(masked[~lead_mask], x[~lead_mask])
        assert (~lead_mask).any(), "at least one lead always survives"


def test_lead_mask_when_every_lead_would_be_masked_keeps_one_present_lead():
    rng = np.random.default_rng(1)
    x = np.ones((12, 10), np.float32)
    present = np.zeros(12, bool)
    present[[1, 7]] = True
    x[~present] = 0
    kept = set()
    for _ in range(40):
        _, lead_mask = random_lead_mask(x, present, 1.0, rng)
        survivors = np.flatnonzero(~lead_mask & present)
        assert len(survivors) == 1 and survivors[0] in (1, 7)
        assert not lead_mask[~present].any(), "absent leads are never reported as masked"
        kept.add(int(survivors[0]))
    assert kept == {1, 7}


def test_lead_mask_probability_is_respected():
    rng = np.random.default_rng(2)
    x = np.ones((12, 4), np.float32)
    rate = np.mean([random_lead_mask(x, np.ones(12, bool), 0.3, rng)[1].mean() for _ in range(2000)])
    assert abs(rate - 0.3) < 0.02


def test_lead_mask_with_no_present_lead_does_not_crash():
    masked, lead_mask = random_lead_mask(np.zeros((3, 5), np.float32), np.zeros(3, bool), 1.0, np.random.default_rng(0))
    assert not lead_mask.any() and not masked.any()


def test_augment_is_deterministic_given_the_generator_and_keeps_shape():
    cfg = AugmentationConfig(
        jitter_prob=1, scaling_prob=1, flip_prob=1, permute_prob=1, time_warp_prob=1, magnitude_warp_prob=1
    )
    x = np.random.default_rng(0).normal(size=(12, 1000)).astype(np.float32)
    a = augment(x, np.random.default_rng(5), cfg)
    b = augment(x, np.random.default_rng(5), cfg)
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32
    assert not np.allclose(a, x)


def test_permutation_keeps_absent_leads_zero():
    x = np.arange(12 * 4, dtype=np.float32).reshape(12, 4) + 1
    present = np.ones(12, bool)
    present[[0, 5]] = False
    x[~present] = 0
    out = permute_leads(x, np.random.default_rng(0), present)
    assert not out[~present].any()
    assert sorted(map(tuple, out[present])) == sorted(map(tuple, x[present]))


def test_time_warp_keeps_endpoints_and_is_monotone():
    ramp = np.tile(np.linspace(0, 1, 500, dtype=np.float32), (3, 1))
    out = time_warp(ramp, np.random.default_rng(3), 0.3, 4)
    assert out[0, 0] == pytest.approx(0) and out[0, -1] == pytest.approx(1)
    assert np.all(np.diff(out[0]) >= -1e-6)


def _reference_curves(rng, n_curves, length, sigma, knots):
    """The warps' curves as scipy evaluates them: a cubic spline through N(1, sigma) knots."""
    knot_x = np.linspace(0, length - 1, knots + 2)
    knot_y = rng.normal(1.0, sigma, size=(n_curves, knots + 2)).astype(np.float32)
    return CubicSpline(knot_x, knot_y.astype(np.float64), axis=1)(np.arange(length))


def test_magnitude_warp_is_the_scipy_cubic_spline_gain_curve():
    x = np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32)
    out = magnitude_warp(x, np.random.default_rng(7), 0.2, 4)
    reference = x * _reference_curves(np.random.default_rng(7), 12, 5000, 0.2, 4)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


def test_time_warp_is_np_interp_along_the_scipy_spline_warp():
    x = np.random.default_rng(1).normal(size=(12, 5000)).astype(np.float32)
    out = time_warp(x, np.random.default_rng(8), 0.2, 4)
    speed = np.clip(_reference_curves(np.random.default_rng(8), 1, 5000, 0.2, 4)[0], 0.1, None)
    warped = np.cumsum(speed)
    warped = (warped - warped[0]) * 4999 / (warped[-1] - warped[0])
    reference = np.stack([np.interp(warped, np.arange(5000), lead) for lead in x])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference, atol=1e-4)


def test_jitter_adds_float32_noise_of_the_given_sigma():
    x = np.full((12, 5000), 2.0, np.float32)
    out = jitter(x, np.random.default_rng(3), 0.03)
    noise = out - x
    assert out.dtype == np.float32 and np.all(x == 2.0), "input untouched"
    assert abs(noise.mean()) < 0.002 and abs(noise.std() - 0.03) < 0.001
    np.testing.assert_array_equal(out, jitter(x, np.random.default_rng(3), 0.03))
    assert not np.array_equal(out, jitter(x, np.random.default_rng(4), 0.03))


@pytest.mark.parametrize("length", [2, 3, 500])
def test_warps_handle_short_views(length):
    x = np.random.default_rng(2).normal(size=(3, length)).astype(np.float32)
    for out in (time_warp(x, np.random.default_rng(0), 0.2, 4), magnitude_warp(x, np.random.default_rng(0), 0.2, 4)):
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
