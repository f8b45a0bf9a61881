"""Resampling: the values of scipy's resample_poly with its default filter, designed once per ratio."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from fairseq_goodviews.io.signal import rational_ratio, resample


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize("source", [1000.0, 250.0, 257.0, 360.0, 249.88, 5000.0])
def test_resample_gives_resample_polys_values_bit_for_bit(dtype, source):
    signal = (np.random.default_rng(int(source)).normal(size=(3, 4000)) * 500).astype(dtype)
    up, down = rational_ratio(source, 500.0)
    expected = scipy.signal.resample_poly(signal, up, down, axis=1, padtype="line")
    got = resample(signal, source, 500.0)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
    # Rows resampled together are each the row resampled alone (what the WFDB reader relies on).
    alone = np.concatenate([resample(signal[row : row + 1], source, 500.0) for row in range(3)])
    assert alone.tobytes() == got.tobytes()


def test_the_same_rate_returns_the_signal_itself():
    signal = np.ones((2, 10))
    assert resample(signal, 500.0, 500.0) is signal
