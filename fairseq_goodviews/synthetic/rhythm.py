"""The synthetic record's rhythm: beat times and kinds, P waves and continuous atrial activity.

Sinus rhythms with respiratory heart-rate variability, ectopic or wandering atrial pacemakers,
re-entrant tachycardias, atrial fibrillation (irregularly irregular RR, a fibrillatory baseline)
and atrial flutter (sawtooth flutter waves, fixed or variable AV conduction); premature
ventricular and atrial beats and aberrant conduction. :func:`schedule` puts them together for one
record (:class:`Schedule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import sawtooth

from fairseq_goodviews.synthetic.dipole import FS, direction
from fairseq_goodviews.synthetic.fiducials import Calibration, beat_p
from fairseq_goodviews.synthetic.patient import Patient
from fairseq_goodviews.synthetic.targets import NO_P_WAVES, RETROGRADE, Targets

_MARGIN = 2.0  # s: beats are generated beyond the record so its edges look real
DOMINANT, VPB, ABERRANT, APB = 0, 1, 2, 3


@dataclass
class Schedule:
    """A record's events: R times and kinds [n_beats], P-wave centres, kinds and rotations [n_p], and
    the continuous atrial dipole [n_samples, 3] of fibrillation or flutter."""

    beat: np.ndarray  # R times (s)
    kind: np.ndarray  # DOMINANT, VPB, ABERRANT or APB (normal QRS after an ectopic P)
    p_times: np.ndarray  # P-wave centres (s), including non-conducted ones
    p_kind: np.ndarray  # 0 dominant P morphology, 1 ectopic
    p_angle_shift: np.ndarray  # extra frontal rotation of each P (wandering pacemaker)
    atrial: np.ndarray | None  # continuous atrial dipole (n_samples, 3) for fibrillation/flutter
    atrial_rate: float  # bpm, counted from the atrial events


def counted_beats(beat: np.ndarray, cal: Calibration, duration: float) -> np.ndarray:
    """Beats whose whole QRS lies inside the record (MUSE's QRSCount)."""
    return (beat - cal.onset >= 0.0) & (beat + cal.offset <= duration)


def _match_rate(times: list[np.ndarray], rr0: float, cal: Calibration, duration: float) -> list[np.ndarray]:
    """Scale the time axis about the record's centre so that the counted beats' mean RR is rr0.

    ``times[0]`` are the ventricular beats; the other arrays (atrial events) scale with them.
    """
    for _ in range(3):
        beat = times[0][counted_beats(times[0], cal, duration)]
        if len(beat) < 2:
            break
        factor = rr0 / ((beat[-1] - beat[0]) / (len(beat) - 1))
        times = [duration / 2 + (t - duration / 2) * factor for t in times]
    return times


def _sinus_times(rng: np.random.Generator, rr0: float, rhythm: str, resp_rate: float, duration: float) -> np.ndarray:
    """Beat times of a regular pacemaker with respiratory and low-frequency variability."""
    resp, lf, white = {
        "SA": (rng.uniform(0.08, 0.16), rng.uniform(0.01, 0.04), 0.01),
        "SAAWR": (rng.uniform(0.03, 0.07), rng.uniform(0.01, 0.03), 0.015),
        "ST": (rng.uniform(0.003, 0.012), rng.uniform(0.0, 0.01), 0.004),
        "SVT": (0.002, 0.0, 0.002),
        "AVNRT": (0.002, 0.0, 0.002),
        "AVRT": (0.002, 0.0, 0.002),
        "AT": (0.004, 0.003, 0.004),
    }.get(rhythm, (rng.uniform(0.01, 0.04), rng.uniform(0.0, 0.02), rng.uniform(0.003, 0.01)))
    n = int((duration + 2 * _MARGIN) / (rr0 * (1 - resp - lf - 0.05))) + 3
    k = np.arange(n) * rr0
    rr = rr0 * (
        1
        + resp * np.sin(2 * np.pi * resp_rate * k + rng.uniform(0, 2 * np.pi))
        + lf * np.sin(2 * np.pi * 0.1 * k + rng.uniform(0, 2 * np.pi))
        + white * rng.standard_normal(n)
    )
    t = -_MARGIN - rng.uniform(0, rr0) + np.cumsum(np.maximum(rr, 0.2))
    return t[t < duration + _MARGIN]


def _fibrillation_times(rng: np.random.Generator, rr0: float, codes: frozenset[str], duration: float) -> np.ndarray:
    """Irregularly irregular ventricular response: independent RRs above the AV refractory period."""
    n = int((duration + 2 * _MARGIN) / (0.3 * rr0)) + 5
    x = np.exp(rng.normal(0.0, rng.uniform(0.15, 0.3), n))
    rr = np.maximum(rr0 * x / x.mean(), 0.26)
    if "LRRI" in codes:  # one long RR interval (a pause) inside the record
        start = -_MARGIN + np.cumsum(rr)
        inside = np.flatnonzero((start > 1.0) & (start < duration - 3.0))
        if len(inside):
            rr[rng.choice(inside)] = max(1.6, rng.uniform(1.8, 2.5) * rr0)
    t = -_MARGIN - rng.uniform(0, rr0) + np.cumsum(rr)
    return t[t < duration + _MARGIN]


def _fibrillation_waves(rng: np.random.Generator, n_samples: int) -> tuple[np.ndarray, float]:
    """Fibrillatory baseline as a dipole (n_samples, 3) and its rate (bpm) counted from it."""
    t = np.arange(n_samples) / FS
    drift = sum(
        rng.uniform(0.1, 0.35) * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 2 * np.pi))
        for _ in range(3)
    )
    phase = 2 * np.pi * np.cumsum(rng.uniform(5.0, 7.5) + drift) / FS + rng.uniform(0, 2 * np.pi)
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    wave = envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
    cycles = np.count_nonzero((wave[:-1] < 0) & (wave[1:] >= 0))
    vector = rng.uniform(0.01, 0.045) * direction(rng.uniform(60, 120), rng.uniform(30, 60))
    return wave[:, None] * vector[None, :], 60.0 * cycles * FS / n_samples


def _flutter(rng: np.random.Generator, rr0: float, tg: Targets, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Flutter-wave times and the beats they conduct.

    The flutter cycle (170-350 ms) comes from the target atrial rate when that is plausible, else
    it is drawn. Conduction is a fixed ratio (2:1 where the rate allows, as usual in untreated
    flutter), or variable (a random mix of the two nearest ratios) with AV block in the Beat
    column or when the target rates are not in an integer ratio.
    """
    given = tg.atrial_rate is not None and 170.0 <= tg.atrial_rate <= 350.0
    cl = 60.0 / tg.atrial_rate if given else rng.uniform(0.19, 0.25)
    ratio = max(rr0 / cl, 1.0)
    variable = "AVB" in tg.codes or (given and abs(ratio - round(ratio)) > 0.2)
    if variable and ratio < 2.0:  # block: at least 2:1 where a flutter cycle >= 165 ms allows it
        cl = max(rr0 / 2.2, 0.165)
        ratio = max(rr0 / cl, 1.0)
    if not variable:
        steps_fixed = max(round(ratio), 2 if rr0 / 2 >= 0.17 else 1)
        cl = rr0 / steps_fixed
    n_f = int((duration + 2 * _MARGIN) / cl) + 2
    f_times = -_MARGIN - rng.uniform(0, cl) + cl * np.arange(n_f)
    if variable:
        # The AV node does not conduct every flutter wave faster than every 250 ms.
        low = max(math.floor(ratio), 2 if ratio >= 2 or cl < 0.25 else 1)
        steps = low + (rng.random(n_f) < float(np.clip(ratio - low, 0.0, 1.0)))
    else:
        steps = np.full(n_f, steps_fixed)
    conducted = np.cumsum(steps)
    conducted = conducted[conducted < n_f]
    return f_times, f_times[conducted] + rng.uniform(0.2, 0.28)


def _flutter_waves(rng: np.random.Generator, f_times: np.ndarray, n_samples: int) -> tuple[np.ndarray, float]:
    """Sawtooth flutter waves (negative in II, III, aVF; typical counter-clockwise flutter)."""
    cl = float(np.mean(np.diff(f_times)))
    t = np.arange(n_samples) / FS
    wave = sawtooth(2 * np.pi * (t - f_times[0]) / cl, width=0.75)
    wave = gaussian_filter1d(wave, 3.0)
    vector = rng.uniform(0.08, 0.18) * direction(-90 + rng.normal(0, 15), 20)
    return wave[:, None] * vector[None, :], 60.0 / cl


def _premature(
    rng: np.random.Generator,
    beat: np.ndarray,
    kind: np.ndarray,
    code_kind: int,
    coupling: tuple[float, float],
    reset: bool,
    duration: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Make 1 + Poisson(0.5) beats premature: VPB (compensatory pause) or APB (the pacemaker resets)."""
    candidates = np.flatnonzero((beat > 0.6) & (beat < duration - 0.6) & (kind == DOMINANT))
    candidates = candidates[candidates > 0]
    count = min(len(candidates), 1 + rng.poisson(0.5))
    beat, kind = beat.copy(), kind.copy()
    for j in np.sort(rng.choice(candidates, size=count, replace=False)) if count else ():
        if kind[j - 1] != DOMINANT and kind[j - 1] != APB:
            continue
        rr = beat[j] - beat[j - 1]
        new = beat[j - 1] + max(rng.uniform(*coupling) * rr, min(0.3, 0.9 * rr))
        if reset:
            beat[j:] -= beat[j] - new
        else:
            beat[j] = new
        kind[j] = code_kind
    return beat, kind


def schedule(rng: np.random.Generator, tg: Targets, pat: Patient, cal: Calibration, n_samples: int) -> Schedule:
    """Beat times and kinds, atrial events and activity of the record's rhythm and conditions."""
    rr0 = 60.0 / float(np.clip(tg.rate, 25.0, 300.0))
    duration = n_samples / FS
    codes = tg.codes
    atrial, atrial_rate, f_times = None, float("nan"), None
    if tg.rhythm == "AFIB":
        beat = _fibrillation_times(rng, rr0, codes, duration)
    elif tg.rhythm == "AF":
        f_times, beat = _flutter(rng, rr0, tg, duration)
    else:
        beat = _sinus_times(rng, rr0, tg.rhythm, pat.resp_rate, duration)
    kind = np.zeros(len(beat), dtype=np.int64)
    sinus_time = beat.copy()  # when each beat's P wave fires (a VPB leaves it in place)
    if "APB" in codes and tg.rhythm not in NO_P_WAVES | RETROGRADE:
        beat, kind = _premature(rng, beat, kind, APB, (0.6, 0.8), reset=True, duration=duration)
        sinus_time = beat.copy()
    if "VPB" in codes:
        beat, kind = _premature(rng, beat, kind, VPB, (0.5, 0.7), reset=False, duration=duration)
    if "IDC" in codes:
        rr_before = np.diff(beat, prepend=beat[0] - rr0)
        eligible = np.flatnonzero((kind == DOMINANT) & (beat > 0) & (beat < duration))
        if len(eligible):
            # Ashman phenomenon: aberrancy after the shortest preceding RR.
            chosen = eligible[np.argsort(rr_before[eligible])[: 1 + rng.integers(0, 3)]]
            kind[chosen] = ABERRANT
    scaled = _match_rate([beat, sinus_time] + ([f_times] if f_times is not None else []), rr0, cal, duration)
    beat, sinus_time = scaled[0], scaled[1]
    p_times, p_kind = np.zeros(0), np.zeros(0, dtype=np.int64)
    if tg.rhythm == "AFIB":
        atrial, atrial_rate = _fibrillation_waves(rng, n_samples)
    elif tg.rhythm == "AF":
        atrial, atrial_rate = _flutter_waves(rng, scaled[2], n_samples)
    else:
        _, p_offset = beat_p(pat, cal, tg.rhythm)
        p_times = sinus_time + p_offset
        p_kind = (kind == APB).astype(np.int64)
        if tg.rhythm == "AT" and "AVB" in codes:  # 2:1 block: a non-conducted P between beats
            ratio = (
                2
                if not tg.atrial_rate or not np.isfinite(tg.atrial_rate)
                else int(np.clip(round(tg.atrial_rate / tg.rate), 2, 4))
            )
            gaps = np.diff(p_times)
            extra = [p_times[:-1] + gaps * k / ratio for k in range(1, ratio)]
            p_times = np.concatenate([p_times, *extra])
            p_kind = np.concatenate([p_kind] + [np.zeros(len(e), dtype=np.int64) for e in extra])
        inside = np.sort(p_times[(p_times >= 0) & (p_times < duration)])
        if len(inside) >= 2:
            atrial_rate = 60.0 * (len(inside) - 1) / (inside[-1] - inside[0])
    shift = np.zeros(len(p_times))
    if tg.rhythm == "SAAWR":  # the pacemaker wanders between sinus node and low atrium
        cycle = 2 * np.pi * p_times / rng.uniform(4.0, 8.0) + rng.uniform(0, 2 * np.pi)
        shift = -70.0 * (0.5 - 0.5 * np.cos(cycle))
    return Schedule(beat, kind, p_times, p_kind, shift, atrial, atrial_rate)
