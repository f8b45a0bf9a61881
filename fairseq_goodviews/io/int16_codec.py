"""A record's millivolts as int16 ADC steps with a per-lead gain, only where that is exact.

Preparers store float32 millivolts computed from the source's digital samples: the WFDB reader
writes ``float32((adc - baseline) / gain)`` (PhysioNet 2021, PTB-XL, MIMIC-IV-ECG: 16-bit
samples, mostly 1000 steps per mV), the Chapman preparer ``float32(microvolts / 1000)``. The
records do not carry the gain, so :func:`encode_int16` infers it from the values, per lead:

* the gain is the smallest one under which every value is a whole number of steps. Tried in
  turn: the previous record's gain of the lead, the gains of the record's other leads, the usual
  ECG gains (:data:`COMMON_GAINS`), and last an estimate from the values (the smallest gap between
  two of them, refined by least squares and rounded to at most six decimals: header gains are
  short decimals). The first that decodes exactly is divided by the greatest common divisor of
  its steps (1000 also fits a 200-per-mV record, as five times its steps);
* a lead whose steps span more than 65,536 values (24-bit sources) or whose decoded values are
  not exactly the stored float32 values (resampled or filtered records, fairseq-signals'
  standardised files, Chapman's decimals) makes the record ``None``: the pack stores it as
  float32.

The test is the decoder itself: :func:`decode` of the encoded steps must give the record's
float32 values exactly (as numbers: a stored -0.0 reads back as 0.0, the only bit pattern that
may change), so a record stored as int16 reads back as its ``.mat`` file does.
``decode`` divides in float32 by a float32 gain; for a gain that float32 holds exactly (1000,
200, 500, ...) that equals the preparer's float64 division rounded to float32, since rounding a
float64 quotient to float32 is the correctly rounded float32 quotient. Where the source's
baseline is 0 (every PhysioNet 2021, PTB-XL and MIMIC-IV-ECG header) the stored value is the
source's ADC value; where it is not, it is the ADC value less its baseline. A lead whose steps
do not fit int16 as they are, but span at most 65,536 values, is stored shifted, with that shift
as its ``baseline``: ``mV = (stored - baseline) / gain``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
# Rounded to this many decimals at most, an inferred gain becomes the header's decimal.
_MAX_GAIN_DECIMALS = 6
# Steps per mV of the usual ECG sources, tried before an estimate from the values: 1000 (PhysioNet
# 2020-2021, PTB-XL, microvolt sources), 200 (MIMIC-IV-ECG, the MIT-BIH family), 2000 (PTB), ...
COMMON_GAINS = tuple(np.float32(g) for g in (1000, 200, 2000, 500, 400, 100))


@dataclass(frozen=True)
class Int16Record:
    """One record as int16 steps: ``mV = (steps - baseline) / gain`` per lead."""

    steps: np.ndarray  # int16 [12, T], C-contiguous
    gain: np.ndarray  # float32 [12]: steps per mV
    baseline: np.ndarray  # float32 [12]: the step value of 0 mV (whole numbers, mostly 0)


def decode(steps: np.ndarray, gain: np.ndarray | np.float32, baseline: np.ndarray | None) -> np.ndarray:
    """Millivolts of ``steps`` int16 [12, L] (a view is fine): a new C-contiguous float32 [12, L].

    ``gain`` is float32 [12], or one float32 scalar shared by every lead (:func:`shared_gain`: the
    same values, faster); ``baseline`` float32 [12], None meaning all zero.
    """
    out = steps.astype(np.float32)
    if baseline is not None:
        out -= baseline[:, None]
    out /= gain[:, None] if gain.ndim else gain
    return out


def shared_gain(gain: np.ndarray) -> np.ndarray | np.float32:
    """``gain`` float32 [12] as :func:`decode` divides by it fastest: its one value (a float32
    scalar) where every lead has the same gain, the usual case, else ``gain`` itself."""
    return gain[0] if (gain == gain[0]).all() else gain


def _steps_at(lead: np.ndarray, gain: np.float32) -> np.ndarray | None:
    """``lead`` (float32 [T]) as whole steps of ``gain`` (float64 [T]) when they decode to it exactly."""
    if not (math.isfinite(gain) and gain > 0):
        return None
    steps = np.rint(lead * np.float64(gain))
    if np.abs(steps).max() >= 2**24:  # beyond float32's whole numbers (and far beyond 16 bits)
        return None
    decoded = steps.astype(np.float32)
    decoded /= gain
    return steps if np.array_equal(decoded, lead) else None


def _smallest(lead: np.ndarray, gain: np.float32, steps: np.ndarray) -> tuple[np.float32, np.ndarray]:
    """The gain divided by the steps' greatest common divisor, when that gain still decodes exactly."""
    divisor = int(np.gcd.reduce(np.abs(steps).astype(np.int64)))
    if divisor > 1:
        smaller = np.float32(float(gain) / divisor)
        fewer = _steps_at(lead, smaller)
        if fewer is not None:
            return smaller, fewer
    return gain, steps


def _estimated_gains(lead: np.ndarray) -> Iterator[np.float32]:
    """Candidate gains from the values' spacing, rounded to 0..6 decimals.

    The smallest gap between distinct values is one step where the lead uses two adjacent codes;
    least squares of ``value = steps / gain`` then refine it over ever larger values (within 64,
    512, ... steps of zero), where a wrong step would need a larger error than the previous round
    leaves. A lead with a single distinct value has none.
    """
    values = np.unique(lead).astype(np.float64)
    if values.size < 2:
        return
    gain = 1.0 / np.diff(values).min()
    magnitudes = np.abs(values)
    limit = 64.0 / gain
    while True:
        subset = values[magnitudes <= limit]
        steps = np.rint(subset * gain)
        scale = float(np.dot(steps, subset))
        if scale <= 0:
            return
        gain = float(np.dot(steps, steps)) / scale
        if limit >= magnitudes.max():
            break
        limit *= 8
    for decimals in range(_MAX_GAIN_DECIMALS + 1):
        yield np.float32(round(gain, decimals))


def _candidates(lead: np.ndarray, first: list[np.float32]) -> Iterator[np.float32]:
    """``first``, then :data:`COMMON_GAINS`, then the estimates, each once (the values are only
    estimated from when every other candidate failed)."""
    seen: set[float] = set()
    for candidate in itertools.chain(first, COMMON_GAINS, _estimated_gains(lead)):
        if float(candidate) not in seen:
            seen.add(float(candidate))
            yield candidate


def encode_int16(feats: np.ndarray, previous_gain: np.ndarray | None = None) -> Int16Record | None:
    """``feats`` float32 [12, T] (any memory order) as int16 steps, or None where that is not exact.

    ``previous_gain`` (float32 [12], the last record's) is tried first for each lead: a folder's
    records mostly share their gains, and trying it costs one pass instead of an estimate.
    """
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    n_leads = feats.shape[0]
    gain = np.ones(n_leads, dtype=np.float32)
    baseline = np.zeros(n_leads, dtype=np.float32)
    steps = np.zeros(feats.shape, dtype=np.int16)
    found: list[np.float32] = []
    zero_leads = []
    for lead in range(n_leads):
        values = feats[lead]
        if not values.any():
            zero_leads.append(lead)
            continue
        tried = [] if previous_gain is None else [np.float32(previous_gain[lead])]
        lead_gain, lead_steps = None, None
        for candidate in _candidates(values, tried + found):
            lead_steps = _steps_at(values, candidate)
            if lead_steps is not None:
                lead_gain = candidate
                break
        if lead_gain is None:
            return None
        lead_gain, lead_steps = _smallest(values, lead_gain, lead_steps)
        low, high = int(lead_steps.min()), int(lead_steps.max())
        if high - low > INT16_MAX - INT16_MIN:
            return None
        shift = 0 if low >= INT16_MIN and high <= INT16_MAX else INT16_MIN - low
        steps[lead] = (lead_steps + shift).astype(np.int16)
        gain[lead], baseline[lead] = lead_gain, shift
        if lead_gain not in found:
            found.append(lead_gain)
    if found:  # a zero-filled lead takes the record's first gain, so records share their gains
        gain[zero_leads] = found[0]
    decoded = decode(steps, gain, baseline if baseline.any() else None)
    if not np.array_equal(decoded, feats):
        return None
    return Int16Record(steps=steps, gain=gain, baseline=baseline)
