"""Sample-rate conversion shared by the readers and the synthetic layouts."""

import functools
from fractions import Fraction

import numpy as np
import scipy.signal

# scipy.signal.resample_poly's default window, and its filter length in units of max(up, down).
_WINDOW = ("kaiser", 5.0)
_HALF_LENGTH_PER_FACTOR = 10


def rational_ratio(source_rate: float, target_rate: float) -> tuple[int, int]:
    """``(up, down)`` with ``target/source = up/down`` in lowest terms (rates may be non-integer)."""
    ratio = Fraction(target_rate).limit_denominator(10_000) / Fraction(source_rate).limit_denominator(10_000)
    return ratio.numerator, ratio.denominator


@functools.lru_cache(maxsize=64)
def _lowpass(up: int, down: int) -> np.ndarray:
    """The anti-aliasing FIR filter [2 * 10 * max(up, down) + 1] that ``resample_poly`` designs
    for ``up``/``down`` with its default window; designed once per ratio (read-only)."""
    factor = max(up, down)
    taps = scipy.signal.firwin(2 * _HALF_LENGTH_PER_FACTOR * factor + 1, 1.0 / factor, window=_WINDOW)
    taps.setflags(write=False)
    return taps


def resample(signal: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Resample ``signal`` [C, T] along time with an anti-aliasing polyphase filter.

    The same values as ``scipy.signal.resample_poly(signal, up, down, axis=1, padtype="line")``
    (its default filter, designed once per ratio instead of once per call); each row is
    resampled on its own, so stacking rows does not change any of them.
    """
    up, down = rational_ratio(source_rate, target_rate)
    if up == down:
        return signal
    taps = _lowpass(up, down)
    dtype = np.asarray(signal).dtype
    if np.issubdtype(dtype, np.inexact):  # resample_poly's own filter takes a float signal's dtype
        taps = taps.astype(dtype)
    return scipy.signal.resample_poly(signal, up, down, axis=1, window=taps, padtype="line")
