import numpy as np
import pytest

from fairseq_goodviews.data.augment import (
    AugmentationConfig, augment, permute_leads, random_lead_mask, time_warp,
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
        masked, lead_mask = random_lead_mask(x, present, 1.0, rng)
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
    cfg = AugmentationConfig(jitter_prob=1, scaling_prob=1, flip_prob=1, permute_prob=1, time_warp_prob=1, magnitude_warp_prob=1)
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
