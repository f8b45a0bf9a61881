"""Sample-rate conversion shared by the readers and the synthetic layouts."""

from fractions import Fraction

import numpy as np
import scipy.signal


def rational_ratio(source_rate: float, target_rate: float) -> tuple[int, int]:
    """``(up, down)`` with ``target/source = up/down`` in lowest terms (rates may be non-integer)."""
    ratio = Fraction(target_rate).limit_denominator(10_000) / Fraction(source_rate).limit_denominator(10_000)
    return ratio.numerator, ratio.denominator


def resample(signal: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Resample ``signal`` [C, T] along time with an anti-aliasing polyphase filter."""
    up, down = rational_ratio(source_rate, target_rate)
    if up == down:
        return signal
    return scipy.signal.resample_poly(signal, up, down, axis=1, padtype="line")
