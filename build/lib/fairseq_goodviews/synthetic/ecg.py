"""The synthetic 12-lead ECG model: one moving cardiac dipole, calibrated to the real Chapman data.

:func:`synthesize_record` draws one record: a [T, 12] signal in microvolts at 500 Hz (any
duration) and the Chapman ``Diagnostics.xlsx`` row that describes it. The file layouts that use
it are :mod:`fairseq_goodviews.synthetic.chapman` and
:mod:`fairseq_goodviews.synthetic.wfdb_layouts`.

The model, per record:

* **Heart.** One moving cardiac dipole (a vectorcardiogram) built from asymmetric Gaussian waves:
  P (right then left atrium), Q (septum), R, S, optional R' (right bundle branch block), ST
  deviation, T and U. Each patient has an electrical axis (frontal rotation of the QRS and of the
  T loop), an anteroposterior QRS orientation (R-wave progression), amplitudes scaled by sex and
  age, a QRS width and a QTc; QT follows each beat's RR (QT = QTc * sqrt(RR)).
* **Leads.** The dipole is projected on the eight independent leads I, II, V1..V6 with Dower's
  lead vectors (jittered per patient: electrode placement, body habitus). Noise (baseline wander,
  50 Hz mains, muscle noise) is added to those eight recorded channels, and III, aVR, aVL, aVF are
  derived from I and II exactly as ECG carts derive them, so Einthoven's and Goldberger's
  relations hold on the written numbers.
* **Rhythm.** Sinus rhythms with respiratory heart-rate variability (strong in ``SA``), ectopic or
  wandering atrial pacemakers (``AT``, ``SAAWR``), re-entrant tachycardias with retrograde P waves
  (``SVT``, ``AVNRT``, ``AVRT``), atrial fibrillation (irregularly irregular RR, no P waves, a
  fibrillatory baseline) and atrial flutter (sawtooth flutter waves, fixed or variable AV
  conduction). ``Beat`` conditions change the waveform: bundle branch and fascicular blocks,
  premature ventricular and atrial beats, aberrant conduction, AV delay, voltage criteria, axis
  deviations, ST-T changes, Q waves, U waves (see :data:`MODELLED_CODES`).
* **Attributes: the model's own true fiducials, not a measurement.** A wave of the dipole is
  "on" while its magnitude is at least :data:`FIDUCIAL_MV` (20 uV, the smallest deflection a
  reader sees on a 12-lead ECG); the QRS onset is the first instant any QRS wave (Q, R, S, R',
  in isolation from P, ST and T) is on, the QRS offset the last, and the T end the last instant
  the T wave is on (:func:`true_fiducials`, closed-form). The axes are those of the net area
  vectors of the QRS waves and of the T wave in leads I and aVF of the patient's own lead vectors.
  The ventricular rate comes from the beat times, the atrial rate from the P-wave times
  (flutter: the flutter cycle; fibrillation: the f-wave cycles). The onset is placed in a
  600-sample median-beat frame near sample 219, as in the real file, so that
  ``QRSDuration = 2*(QOffset-QOnset)`` and ``QTInterval = 2*(TOffset-QOnset)`` hold exactly;
  ``QTCorrected`` is Bazett's at the mean RR. No delineation of the signal is involved, so
  comparing a delineator with these columns is not circular.

Rhythm, age, sex, ``Beat`` frequencies and the target distributions are calibrated to the real
``Diagnostics.xlsx`` (constants below); nothing reads the real file at run time.

Every record is drawn from ``numpy.random.default_rng([seed, index])``, so the output depends on
the seed only, not on the number of worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import sawtooth

from fairseq_goodviews.labels import RHYTHM_TO_CLASS

FS = 500
N_SAMPLES = 5000  # Chapman's 10 s records
QONSET_MEAN = 219  # mean QOnset of the real file (std 6.4)
FIDUCIAL_MV = 0.02  # a wave is "on" while its dipole magnitude is at least this (see the docstring)

# --------------------------------------------------------------------------------------------
# Calibration constants, computed once from the real Chapman Diagnostics.xlsx (10,646 rows;
# shared/data/chapman/Diagnostics.xlsx). Distributions are stored as quantiles at
# QUANTILE_LEVELS and sampled by inverse-CDF interpolation.
# --------------------------------------------------------------------------------------------
QUANTILE_LEVELS = np.array([0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100]) / 100.0

RHYTHM_COUNTS = {
    "SB": 3889,
    "SR": 1826,
    "AFIB": 1780,
    "ST": 1568,
    "SVT": 587,
    "AF": 445,
    "SA": 399,
    "AT": 121,
    "AVNRT": 16,
    "AVRT": 8,
    "SAAWR": 7,
}
MALE_FRACTION = {
    "SB": 0.638,
    "SR": 0.439,
    "AFIB": 0.585,
    "ST": 0.51,
    "SVT": 0.475,
    "AF": 0.578,
    "SA": 0.559,
    "AT": 0.529,
    "AVNRT": 0.25,
    "AVRT": 0.625,
    "SAAWR": 0.143,
}
AGE_Q = {
    "SB": (10, 20, 32, 40, 50, 60, 68, 75, 80, 86, 98),
    "SR": (4, 17, 26, 31, 44, 55, 66, 75, 80, 87, 95),
    "AFIB": (30, 44, 52, 58, 67, 75, 82, 86, 89, 93, 98),
    "ST": (4, 5, 16, 24, 40, 57, 70, 81, 84, 90, 96),
    "SVT": (4, 16, 25, 30, 42, 56, 69, 81, 87, 92, 96),
    "AF": (21, 35, 45, 53, 63, 72, 81, 87, 91, 94, 97),
    "SA": (4, 5, 7, 8, 14, 29, 52, 71, 76, 83, 93),
    "AT": (8, 9, 24, 37, 60, 71, 77, 84, 92, 94, 94),
    "AVNRT": (27, 27, 28, 32, 51, 59, 66, 82, 83, 84, 84),
    "AVRT": (25, 27, 33, 40, 48, 62, 67, 74, 76, 77, 77),
    "SAAWR": (15, 15, 16, 17, 22, 49, 81, 85, 86, 87, 87),
}
RATE_Q = {  # VentricularRate, bpm
    "SB": (34, 43, 47, 50, 53, 56, 58, 59, 59, 59, 103),
    "SR": (58, 60, 62, 64, 68, 74, 83, 90, 94, 99, 115),
    "AFIB": (39, 49, 59, 65, 76, 91, 109, 135, 148, 176, 225),
    "ST": (35, 101, 101, 102, 104, 108, 117, 128, 136, 150, 175),
    "SVT": (104, 123, 134, 138, 151, 168, 184, 198, 208, 217, 244),
    "AF": (37, 43, 63, 69, 86, 115, 140, 158, 168, 204, 263),
    "SA": (42, 55, 60, 62, 66, 72, 78, 87, 91, 101, 108),
    "AT": (42, 58, 77, 82, 95, 111, 138, 152, 169, 190, 218),
    "AVNRT": (145, 145, 146, 149, 169, 174, 179, 184, 192, 203, 206),
    "AVRT": (126, 127, 131, 136, 144, 162, 196, 218, 224, 229, 230),
    "SAAWR": (53, 53, 54, 55, 58, 63, 71, 77, 77, 78, 78),
}
QRSD_Q = {  # (class, male): QRSDuration (ms) of records without RBBB/LBBB/IVB/LFBBB
    ("AFIB", True): (62, 68, 74, 76, 82, 90, 98, 104, 110, 128, 190),
    ("AFIB", False): (56, 62, 68, 70, 76, 82, 90, 100, 106, 118, 162),
    ("GSVT", True): (18, 62, 70, 72, 78, 86, 94, 102, 114, 179, 256),
    ("GSVT", False): (52, 60, 64, 68, 74, 80, 86, 94, 106, 162, 218),
    ("SB", True): (64, 72, 78, 82, 88, 94, 102, 108, 112, 122, 148),
    ("SB", False): (64, 68, 72, 74, 80, 84, 92, 98, 102, 108, 174),
    ("SR", True): (62, 70, 76, 78, 84, 90, 98, 104, 108, 116, 132),
    ("SR", False): (58, 64, 68, 72, 76, 82, 88, 94, 98, 106, 120),
}
QTC_Q = {  # (class, male): QTCorrected (ms) of records without QTIE
    ("AFIB", True): (270, 367, 389, 402, 424, 447, 472, 500, 520, 569, 670),
    ("AFIB", False): (224, 347, 388, 402, 427, 453, 474, 506, 532, 580, 760),
    ("GSVT", True): (240, 371, 405, 417, 435, 453, 475, 508, 539, 605, 699),
    ("GSVT", False): (219, 370, 406, 419, 435, 453, 471, 495, 519, 574, 618),
    ("SB", True): (315, 356, 369, 376, 388, 404, 422, 441, 457, 492, 576),
    ("SB", False): (312, 369, 384, 391, 404, 420, 438, 455, 465, 498, 602),
    ("SR", True): (347, 371, 384, 391, 405, 422, 440, 456, 466, 498, 576),
    ("SR", False): (363, 384, 395, 404, 417, 433, 449, 463, 474, 507, 589),
}
# RAxis of records without ALS/ARS/LFBBB, minus its linear age trend (RAXIS_AGE_SLOPE deg/year,
# centred at 60 years): the axis turns left with age.
RAXIS_AGE_SLOPE = -0.447
RAXIS_Q = {
    "AFIB": (-88, -46, -18, -4, 22, 52, 76, 89, 96, 127, 268),
    "GSVT": (-101, -60, -18, -4, 24, 50, 67, 81, 90, 197, 274),
    "SB": (-84, -29, -15, -5, 16, 42, 61, 73, 79, 89, 262),
    "SR": (-100, -29, -13, -1, 19, 45, 62, 73, 78, 87, 116),
}
CODE_Q = {  # target distributions of records carrying a condition (axes unwrapped per code)
    ("RBBB", "QRSDuration"): (68, 83, 98, 104, 118, 132, 142, 154, 158, 176, 190),
    ("LBBB", "QRSDuration"): (106, 108, 117, 126, 138, 148, 158, 171, 178, 207, 216),
    ("IVB", "QRSDuration"): (86, 92, 104, 106, 114, 120, 126, 138, 144, 168, 186),
    ("LFBBB", "QRSDuration"): (58, 65, 83, 86, 94, 110, 128, 144, 153, 162, 166),
    ("QTIE", "QTCorrected"): (438, 441, 462, 473, 482, 494, 532, 558, 572, 646, 669),
    ("ALS", "RAxis"): (-93, -87, -78, -70, -56, -44, -36, -32, -31, -30, -15),
    ("ARS", "RAxis"): (46, 90, 91, 92, 94, 100, 115, 153, 215, 262, 278),
    ("LFBBB", "RAxis"): (-94, -89, -78, -74, -67, -56, -49, -44, -37, 100, 110),
}
# TAxis - RAxis (wrapped to [-180, 180)) by the first T-relevant condition of a record in this
# order, else by class for records with none of them.
T_PRECEDENCE = ("LBBB", "TWO", "STTC", "TWC", "STDD", "RBBB")
TDELTA_Q = {
    "LBBB": (-180, -179, -177, -170, -126, 124, 161, 171, 174, 178, 178),
    "TWO": (-179, -179, -174, -164, -127, -23, 76, 146, 160, 176, 179),
    "STTC": (-180, -176, -166, -153, -94, -19, 46, 140, 161, 178, 179),
    "TWC": (-180, -171, -139, -109, -52, -7, 34, 96, 136, 169, 179),
    "STDD": (-149, -133, -67, -51, -42, -14, 18, 51, 70, 96, 102),
    "RBBB": (-178, -169, -131, -96, -43, -6, 42, 112, 149, 169, 175),
    "AFIB": (-180, -175, -141, -86, -43, -7, 26, 85, 123, 167, 178),
    "GSVT": (-180, -168, -136, -96, -39, -10, 21, 74, 134, 174, 179),
    "SB": (-114, -53, -36, -28, -16, -2, 16, 35, 51, 81, 142),
    "SR": (-177, -64, -46, -37, -23, -6, 13, 36, 48, 85, 130),
}
# Per rhythm: (records with none of the modelled codes, {code: records carrying it}).
CODE_COUNTS: dict[str, tuple[int, dict[str, int]]] = {
    "SB": (
        2225,
        {
            "1AVB": 158,
            "ALS": 106,
            "APB": 101,
            "AQW": 73,
            "ARS": 29,
            "AVB": 1,
            "CCR": 55,
            "CR": 6,
            "IDC": 1,
            "IVB": 36,
            "LBBB": 17,
            "LFBBB": 20,
            "LVHV": 604,
            "LVQRSCL": 46,
            "LVQRSLL": 28,
            "PRIE": 6,
            "PWC": 13,
            "QTIE": 21,
            "RBBB": 122,
            "STDD": 59,
            "STTC": 169,
            "STTU": 74,
            "TWC": 599,
            "TWO": 56,
            "UW": 8,
            "VPB": 39,
        },
    ),
    "SR": (
        1374,
        {
            "1AVB": 30,
            "ALS": 45,
            "APB": 36,
            "AQW": 23,
            "ARS": 5,
            "AVB": 1,
            "CCR": 27,
            "CR": 3,
            "IVB": 2,
            "LBBB": 4,
            "LFBBB": 7,
            "LVHV": 89,
            "LVQRSCL": 24,
            "LVQRSLL": 1,
            "PWC": 7,
            "QTIE": 7,
            "RBBB": 26,
            "STDD": 30,
            "STTC": 88,
            "STTU": 19,
            "TWC": 197,
            "TWO": 14,
            "UW": 1,
            "VPB": 17,
        },
    ),
    "AFIB": (
        418,
        {
            "ALS": 107,
            "AQW": 73,
            "ARS": 61,
            "CCR": 38,
            "CR": 16,
            "IDC": 111,
            "IVB": 42,
            "LBBB": 30,
            "LFBBB": 34,
            "LRRI": 23,
            "LVHV": 367,
            "LVQRSCL": 18,
            "LVQRSLL": 55,
            "QTIE": 13,
            "RBBB": 143,
            "STDD": 187,
            "STTC": 434,
            "STTU": 24,
            "TWC": 617,
            "TWO": 52,
            "UW": 7,
            "VPB": 147,
        },
    ),
    "ST": (
        655,
        {
            "1AVB": 56,
            "ALS": 68,
            "APB": 101,
            "AQW": 44,
            "ARS": 60,
            "AVB": 2,
            "CCR": 22,
            "CR": 32,
            "IVB": 11,
            "LBBB": 17,
            "LFBBB": 22,
            "LVHV": 130,
            "LVQRSCL": 47,
            "LVQRSLL": 19,
            "PRIE": 6,
            "PWC": 73,
            "QTIE": 4,
            "RBBB": 60,
            "STDD": 77,
            "STTC": 311,
            "STTU": 43,
            "TWC": 286,
            "TWO": 24,
            "UW": 1,
            "VPB": 62,
        },
    ),
    "SVT": (
        391,
        {
            "1AVB": 1,
            "ALS": 15,
            "AQW": 3,
            "ARS": 36,
            "CCR": 7,
            "CR": 11,
            "IVB": 2,
            "LBBB": 9,
            "LFBBB": 6,
            "LVHV": 22,
            "RBBB": 38,
            "STDD": 15,
            "STTC": 57,
            "STTU": 2,
            "TWC": 29,
            "TWO": 2,
            "VPB": 6,
        },
    ),
    "AF": (
        92,
        {
            "ALS": 32,
            "AQW": 15,
            "ARS": 20,
            "AVB": 149,
            "CCR": 7,
            "CR": 7,
            "IDC": 11,
            "IVB": 10,
            "LBBB": 13,
            "LFBBB": 15,
            "LRRI": 1,
            "LVHV": 55,
            "LVQRSCL": 1,
            "LVQRSLL": 5,
            "QTIE": 12,
            "RBBB": 56,
            "STDD": 24,
            "STTC": 65,
            "STTU": 10,
            "TWC": 111,
            "TWO": 7,
            "UW": 4,
            "VPB": 19,
        },
    ),
    "SA": (
        294,
        {
            "1AVB": 5,
            "ALS": 3,
            "APB": 20,
            "AQW": 2,
            "ARS": 9,
            "CR": 1,
            "IVB": 2,
            "LBBB": 1,
            "LFBBB": 1,
            "LVHV": 19,
            "LVQRSCL": 2,
            "PRIE": 1,
            "QTIE": 1,
            "RBBB": 6,
            "STDD": 4,
            "STTC": 12,
            "STTU": 7,
            "TWC": 30,
            "TWO": 2,
            "VPB": 16,
        },
    ),
    "AT": (
        26,
        {
            "1AVB": 2,
            "ALS": 8,
            "APB": 17,
            "AQW": 4,
            "AVB": 13,
            "CCR": 4,
            "CR": 1,
            "IDC": 10,
            "LBBB": 3,
            "LFBBB": 3,
            "LRRI": 1,
            "LVHV": 25,
            "LVQRSCL": 7,
            "LVQRSLL": 2,
            "PWC": 2,
            "RBBB": 9,
            "STDD": 10,
            "STTC": 30,
            "STTU": 4,
            "TWC": 32,
            "TWO": 2,
            "VPB": 4,
        },
    ),
    "AVNRT": (7, {"ALS": 1, "ARS": 4, "STTC": 2, "TWC": 3}),
    "AVRT": (5, {"APB": 1, "CCR": 1, "LVHV": 1, "STTC": 1, "TWC": 1}),
    "SAAWR": (4, {"APB": 2, "CCR": 1, "LVHV": 2, "STTC": 1, "TWC": 1, "UW": 1}),
}
# --------------------------------------------------------------------------------------------

RHYTHMS: tuple[str, ...] = tuple(RHYTHM_COUNTS)
# Conditions that change the synthetic waveform. Codes of a given Diagnostics.xlsx outside this
# set are kept in its Beat column but do not change the signal.
MODELLED_CODES: frozenset[str] = frozenset(c for _, counts in CODE_COUNTS.values() for c in counts)
# At most one code of each group is drawn (the first one listed wins).
_EXCLUSIVE = (
    ("LBBB", "RBBB", "IVB"),
    ("LFBBB", "ALS", "ARS"),
    ("CCR", "CR"),
    ("AVB", "1AVB", "PRIE"),
    ("LVHV", "LVQRSCL"),
    ("LVHV", "LVQRSLL"),
)
_NO_P_WAVES = frozenset({"AFIB", "AF"})
_RETROGRADE = frozenset({"SVT", "AVNRT", "AVRT"})
_SQRT3 = math.sqrt(3.0)
# Lead vectors of I, II, V1..V6 for a dipole (x left, y feet, z anterior), mV per mV: Dower's
# inverse transform of the Frank vectorcardiogram (Edenbrandt & Pahlm 1988) with Frank's
# back-pointing Z axis flipped.
DOWER = np.array(
    [
        [0.632, -0.235, -0.059],
        [0.235, 1.066, 0.132],
        [-0.515, 0.157, 0.917],
        [0.044, 0.164, 1.387],
        [0.882, 0.098, 1.277],
        [1.213, 0.127, 0.601],
        [1.125, 0.127, 0.086],
        [0.831, 0.076, -0.230],
    ]
)


@dataclass(frozen=True)
class Targets:
    """What a record should show; in random mode sampled, in ``diagnostics`` mode read from a row."""

    rhythm: str
    codes: frozenset[str]
    age: int
    male: bool
    rate: float  # ventricular rate, bpm
    qrsd: float  # ms
    qt: float  # ms, at the mean RR
    raxis: float  # degrees
    taxis: float  # degrees
    atrial_rate: float | None = None  # bpm; flutter cycle length and AV block ratio follow it


def _draw(rng: np.random.Generator, knots: Sequence[float]) -> float:
    return float(np.interp(rng.random(), QUANTILE_LEVELS, knots))


def chapman_axis(angle: float) -> int:
    """An angle in degrees in Chapman's (MUSE's) range (-90, 270], rounded."""
    return int(270 - (270 - round(angle)) % 360)


@cache
def _code_law(rhythm: str) -> tuple[float, tuple[str, ...], np.ndarray]:
    """P(no modelled code) and per-code inclusion probabilities for independent draws.

    Codes are drawn independently with probabilities ``lam * p_code``, conditioned on at least
    one; ``lam`` is chosen (bisection) so that both the marginal frequency of every code and the
    fraction of records without any code equal the real file's.
    """
    none, counts = CODE_COUNTS[rhythm]
    total = RHYTHM_COUNTS[rhythm]
    p_none = none / total
    codes = tuple(sorted(counts))
    p = np.array([counts[c] / total for c in codes])
    lo, hi = 1e-9, 1.0 / p.max()
    for _ in range(80):
        lam = 0.5 * (lo + hi)
        if 1.0 - np.prod(1.0 - lam * p) - lam * (1.0 - p_none) > 0:
            lo = lam
        else:
            hi = lam
    return p_none, codes, np.minimum(lo * p, 1.0)


def _sample_codes(rng: np.random.Generator, rhythm: str) -> frozenset[str]:
    p_none, codes, probs = _code_law(rhythm)
    if not codes or rng.random() < p_none:
        return frozenset()
    while True:
        drawn = [c for c, hit in zip(codes, rng.random(len(codes)) < probs, strict=False) if hit]
        if drawn:
            break
    for group in _EXCLUSIVE:
        present = [c for c in group if c in drawn]
        drawn = [c for c in drawn if c not in present[1:]]
    return frozenset(drawn)


def sample_targets(rng: np.random.Generator) -> Targets:
    """Draw rhythm, conditions, demographics and wave targets from the calibrated distributions."""
    rhythm = RHYTHMS[rng.choice(len(RHYTHMS), p=_rhythm_probabilities())]
    cls = RHYTHM_TO_CLASS[rhythm]
    male = bool(rng.random() < MALE_FRACTION[rhythm])
    age = round(_draw(rng, AGE_Q[rhythm]))
    rate = _draw(rng, RATE_Q[rhythm])
    codes = _sample_codes(rng, rhythm)
    if rhythm == "AF" and "AVB" in codes:  # flutter with AV block: at most 2:1 of ~360/min
        rate = min(rate, 180.0)
    conduction = next((c for c in ("LBBB", "RBBB", "IVB", "LFBBB") if c in codes), None)
    qrsd = _draw(rng, CODE_Q[(conduction, "QRSDuration")] if conduction else QRSD_Q[(cls, male)])
    qtc = _draw(rng, CODE_Q[("QTIE", "QTCorrected")] if "QTIE" in codes else QTC_Q[(cls, male)])
    # The extreme tails of the real file are mostly measurement failures of the cart.
    qrsd, qtc = float(np.clip(qrsd, 60.0, 200.0)), float(np.clip(qtc, 350.0, 650.0))
    axis_code = next((c for c in ("LFBBB", "ALS", "ARS") if c in codes), None)
    if axis_code:
        raxis = _draw(rng, CODE_Q[(axis_code, "RAxis")])
    else:
        raxis = _draw(rng, RAXIS_Q[cls]) + RAXIS_AGE_SLOPE * (age - 60)
    t_code = next((c for c in T_PRECEDENCE if c in codes), cls)
    taxis = raxis + _draw(rng, TDELTA_Q[t_code])
    return Targets(rhythm, codes, age, male, rate, qrsd, qtc * math.sqrt(60.0 / rate), raxis, taxis)


@cache
def _rhythm_probabilities() -> np.ndarray:
    counts = np.array([RHYTHM_COUNTS[r] for r in RHYTHMS], dtype=float)
    return counts / counts.sum()


def targets_from_row(row: Mapping[str, Any]) -> Targets:
    """Targets that make a synthetic waveform agree with one row of a Diagnostics.xlsx."""
    rhythm = str(row["Rhythm"]).strip().upper()
    rhythm = "SA" if rhythm == "SI" else rhythm  # the paper's name for sinus irregularity
    if rhythm not in RHYTHM_COUNTS:
        raise ValueError(
            f"row {row.get('FileName')!r}: unknown rhythm code {row['Rhythm']!r}; known: {', '.join(RHYTHMS)}"
        )

    def number(column: str, default: float) -> float:
        value = pd.to_numeric(row.get(column), errors="coerce")
        return default if pd.isna(value) else float(value)

    codes = frozenset(str(row.get("Beat", "NONE")).split()) - {"NONE"}
    rate = number("VentricularRate", 75.0)
    return Targets(
        rhythm=rhythm,
        codes=codes,
        age=int(number("PatientAge", 60.0)),
        male=str(row.get("Gender", "")).strip().upper() == "MALE",
        rate=rate,
        qrsd=number("QRSDuration", 90.0),
        qt=number("QTInterval", 420.0 * math.sqrt(60.0 / max(rate, 1.0))),
        raxis=number("RAxis", 45.0),
        taxis=number("TAxis", 45.0),
        atrial_rate=number("AtrialRate", float("nan")),
    )


# ---------------------------------------------------------------------------------------------
# Dipole waves
# ---------------------------------------------------------------------------------------------
def _direction(frontal: Any, elevation: Any) -> np.ndarray:
    """Unit vector(s): frontal angle from the left (+x) towards the feet (+y), elevation anterior (+z)."""
    f, e = np.radians(frontal), np.radians(elevation)
    return np.stack([np.cos(e) * np.cos(f), np.cos(e) * np.sin(f), np.sin(e)], axis=-1)


@dataclass(frozen=True)
class _Waves:
    """Asymmetric Gaussian dipole waves: centre (s), left and right widths (s), vectors (mV)."""

    t: np.ndarray
    sl: np.ndarray
    sr: np.ndarray
    v: np.ndarray  # (n, 3)

    @staticmethod
    def of(rows: Sequence[tuple[float, float, float, np.ndarray]]) -> _Waves:
        if not rows:
            return _Waves(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 3)))
        t, sl, sr, v = zip(*rows, strict=False)
        return _Waves(np.array(t, float), np.array(sl, float), np.array(sr, float), np.array(v, float))

    @staticmethod
    def concat(parts: Sequence[_Waves]) -> _Waves:
        return _Waves(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("t", "sl", "sr", "v")))

    def rotated(self, degrees: float) -> _Waves:
        """Rotation about the anteroposterior axis: adds ``degrees`` to every frontal angle."""
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return _Waves(self.t, self.sl, self.sr, self.v @ rot.T)

    def stretched(self, factor: float) -> _Waves:
        return _Waves(self.t * factor, self.sl * factor, self.sr * factor, self.v)

    def shifted(self, dt: float) -> _Waves:
        return _Waves(self.t + dt, self.sl, self.sr, self.v)

    def at(self, times: np.ndarray, shift: np.ndarray | None = None, gain: np.ndarray | None = None) -> _Waves:
        """One copy per event time, optionally shifted (s) and scaled per event."""
        times = np.asarray(times, float)
        n = len(times)
        t = times[:, None] + self.t[None, :]
        if shift is not None:
            t = t + np.asarray(shift, float)[:, None]
        v = np.broadcast_to(self.v[None], (n, *self.v.shape))
        if gain is not None:
            v = v * np.asarray(gain, float)[:, None, None]
        return _Waves(t.ravel(), np.tile(self.sl, n), np.tile(self.sr, n), v.reshape(-1, 3))


def _render(waves: _Waves, n: int) -> np.ndarray:
    """Sum of the waves sampled at FS on ``n`` samples from t = 0: the dipole, (n, 3) mV."""
    return _render_groups([waves], n)[0]


def _render_groups(groups: Sequence[_Waves], n: int) -> np.ndarray:
    """The dipole of each group of waves, (len(groups), n, 3), in one vectorised pass."""
    out = np.zeros((len(groups) * n, 3))
    waves = _Waves.concat(groups)
    if not len(waves.t):
        return out.reshape(len(groups), n, 3)
    group = np.repeat(np.arange(len(groups)), [len(g.t) for g in groups])
    centre = waves.t * FS
    sl, sr = waves.sl * FS, waves.sr * FS
    half = math.ceil(4.0 * max(sl.max(), sr.max()))
    idx = np.rint(centre).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    d = idx - centre[:, None]
    g = np.exp(-0.5 * (d / np.where(d < 0, sl[:, None], sr[:, None])) ** 2)
    keep = (idx >= 0) & (idx < n)
    rows = np.broadcast_to(np.arange(len(centre))[:, None], idx.shape)[keep]
    g = g[keep]
    flat = (idx + (group * n)[:, None])[keep]
    for axis in range(3):
        out[:, axis] = np.bincount(flat, weights=g * waves.v[rows, axis], minlength=len(groups) * n)
    return out.reshape(len(groups), n, 3)


# ---------------------------------------------------------------------------------------------
# The patient: lead geometry and beat morphology
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Patient:
    leads: np.ndarray  # (8, 3): I, II, V1..V6 lead vectors
    qrs: _Waves  # dominant QRS in the QRS frame (R at t = 0, main axis at frontal 0), unstretched
    st: _Waves  # ST deviation, QRS frame, centre relative to the J point
    repol: _Waves  # T (and U) in the T frame, centred at 0 = T-wave reference
    aberrant: _Waves  # extra terminal wave of aberrantly conducted beats, QRS frame
    vpb: _Waves  # premature ventricular complex and its T wave, absolute frame, R at 0
    p_sinus: _Waves  # P wave of the dominant atrial rhythm, centred at 0
    p_ectopic: _Waves  # P wave of premature atrial beats
    p_retro: _Waves  # retrograde P wave (re-entrant tachycardia)
    retro_delay: float  # s after the QRS offset: ~0 hidden at the end of the QRS, > 0 in the ST
    pr: float  # s, P onset to QRS onset
    resp_rate: float  # Hz


def _p_wave(frontal: float, amp: float, width: float, split: float) -> _Waves:
    """Right atrium (anterior) then left atrium (posterior): biphasic in V1, upright in II."""
    return _Waves.of(
        [
            (-split / 2, width, width, amp * _direction(frontal + 5, 35)),
            (split / 2, width * 1.1, width * 1.1, 0.9 * amp * _direction(frontal - 10, -40)),
        ]
    )


def _lead_vectors(rng: np.random.Generator, codes: frozenset[str]) -> np.ndarray:
    """Per-patient lead vectors: Dower's, electrode placement jitter, body-habitus gains."""
    limb = math.exp(rng.normal(0.0, 0.1))
    chest = 1.15 * math.exp(rng.normal(0.0, 0.12))
    low_limb, low_chest = rng.uniform(0.3, 0.45), rng.uniform(0.35, 0.5)
    if "LVQRSLL" in codes:
        limb *= low_limb
    if "LVQRSCL" in codes:
        chest *= low_chest
    leads = DOWER.copy()
    leads[2:] += rng.normal(0.0, 0.06, (6, 3))
    leads[:2] *= limb
    leads[2:] *= chest
    return leads


def _patient(rng: np.random.Generator, tg: Targets) -> _Patient:
    """The patient's lead geometry and beat morphology; axes, widths and QT are fitted later.

    Every random number is drawn whatever the conditions, in a fixed order, so that one patient
    generator gives the same person with or without a condition (a bundle branch block appearing
    at a later visit changes the QRS, not the lead geometry or the P wave).
    """
    codes = tg.codes
    # Main QRS dipole (mV): larger in men and in the young (thinner chest wall).
    amp = (
        1.7
        * math.exp(rng.normal(0.0, 0.22))
        * (1.08 if tg.male else 0.93)
        * float(np.clip(1.3 - 0.006 * tg.age, 0.75, 1.3))
    )
    hypertrophy = rng.uniform(1.7, 2.2)
    if "LVHV" in codes:
        amp *= hypertrophy
    clockwise, counterclockwise = rng.uniform(15, 30), rng.uniform(15, 30)
    elevation = (
        rng.normal(-32.0, 10.0) + (clockwise if "CCR" in codes else 0.0) - (counterclockwise if "CR" in codes else 0.0)
    )
    q_amp, q_width, q_dir = rng.uniform(0.06, 0.18), 0.008, _direction(180 + rng.normal(0, 20), 45)
    deep_q_amp, deep_q_dir = rng.uniform(0.3, 0.5), _direction(180 + rng.normal(0, 20), -50)
    if "AQW" in codes:  # pathological Q: >= 40 ms, deep, opposite to the main axis and posterior
        q_amp, q_width, q_dir = deep_q_amp, 0.014, deep_q_dir
    s_amp = rng.uniform(0.15, 0.45) * (1.3 if "LVHV" in codes else 1.0)
    s_frontal = 200 + rng.normal(0, 15)
    r_prime = rng.uniform(0.45, 0.7)
    if "LBBB" in codes:  # no septal q; broad notched R to the left and back; no S
        qrs = _Waves.of(
            [
                (-0.02, 0.017, 0.017, 0.8 * amp * _direction(-15, elevation - 25)),
                (0.026, 0.018, 0.018, 0.95 * amp * _direction(15, elevation - 15)),
            ]
        )
    else:
        rows = [
            (-0.022, q_width, q_width, q_amp * amp * q_dir),
            (0.0, 0.011, 0.011, amp * _direction(0.0, elevation)),
            (0.022, 0.009, 0.012, s_amp * amp * _direction(s_frontal, -35)),
        ]
        if "RBBB" in codes:  # terminal right-anterior R': rSR' in V1, wide S in I and V6
            rows.append((0.045, 0.014, 0.016, r_prime * amp * _direction(175, 45)))
        qrs = _Waves.of(rows)
    st_depression, st_elevation, st_frontal = rng.uniform(0.04, 0.1), rng.uniform(0.05, 0.12), rng.uniform(-20, 60)
    st_rows = []
    if codes & {"STDD", "STTC"}:  # ST depression opposite the main QRS vector (strain pattern)
        st_rows.append((0.035, 0.02, 0.07, st_depression * _direction(180.0, -elevation)))
    if "STTU" in codes:
        st_rows.append((0.035, 0.02, 0.07, st_elevation * _direction(st_frontal, 40)))
    qt = tg.qt / 1000.0
    t_right = float(np.clip(qt * rng.uniform(0.075, 0.095), 0.018, 0.05))
    t_left = t_right * rng.uniform(1.5, 1.9)
    t_amp = amp * rng.uniform(0.2, 0.35) * (1.4 if "LBBB" in codes else 1.0)
    flat_twc, flat_sttc = rng.uniform(0.45, 0.85), rng.uniform(0.55, 0.9)
    if "TWC" in codes:  # flattened; the inversion comes from the T axis
        t_amp *= flat_twc
    if "STTC" in codes:
        t_amp *= flat_sttc
    t_elevation = rng.normal(15.0, 10.0) * (-1.0 if codes & {"TWO", "LBBB"} else 1.0)
    t_dir = _direction(0.0, t_elevation)
    repol_rows = [(0.0, t_left, t_right, t_amp * t_dir)]
    u_amp = rng.uniform(0.06, 0.12)
    if "UW" in codes:
        repol_rows.append((2 * t_right + 0.05, 0.03, 0.03, u_amp * t_dir))
    vpb_dir = rng.uniform(0, 360)
    vpb_el = rng.uniform(-60, 60)
    vpb = _Waves.of(
        [
            (-0.028, 0.024, 0.024, rng.uniform(1.0, 1.6) * amp * _direction(vpb_dir - 25, vpb_el)),
            (0.03, 0.026, 0.026, rng.uniform(1.0, 1.6) * amp * _direction(vpb_dir + 25, vpb_el)),
            (0.30, 0.07, 0.045, 0.5 * amp * _direction(vpb_dir + 180, -vpb_el)),
        ]
    )
    # Aberrant beats conduct with a right bundle branch block pattern (left if RBBB is already there).
    aberrant_dir = _direction(0.0, elevation - 30) if "RBBB" in codes else _direction(175, 45)
    p_amp = rng.uniform(0.07, 0.14)
    p_frontal = rng.normal(55.0, 12.0)
    p_split = rng.uniform(0.035, 0.045)
    bifid_frontal, bifid_split, ectopic_frontal = rng.normal(25.0, 35.0), rng.uniform(0.05, 0.065), _ectopic_angle(rng)
    if "PWC" in codes:  # bifid, wider P with an unusual axis
        p_frontal, p_split = bifid_frontal, bifid_split
    if tg.rhythm == "AT":
        p_frontal = ectopic_frontal
    pr = float(np.clip(rng.normal(0.15, 0.018) + 0.0005 * (tg.age - 50), 0.11, 0.2))
    long_pr, borderline_pr = rng.uniform(0.21, 0.32), rng.uniform(0.2, 0.23)
    if "1AVB" in codes or ("AVB" in codes and tg.rhythm not in _NO_P_WAVES | {"AT"}):
        pr = long_pr
    elif "PRIE" in codes:
        pr = borderline_pr
    return _Patient(
        leads=_lead_vectors(rng, codes),
        qrs=qrs,
        st=_Waves.of(st_rows),
        repol=_Waves.of(repol_rows),
        aberrant=_Waves.of([(0.055, 0.018, 0.02, rng.uniform(0.5, 0.8) * amp * aberrant_dir)]),
        vpb=vpb,
        p_sinus=_p_wave(p_frontal, p_amp, 0.018, p_split),
        p_ectopic=_p_wave(_ectopic_angle(rng), p_amp, 0.017, 0.03),
        p_retro=_Waves.of([(0.0, 0.016, 0.016, p_amp * 1.2 * _direction(-90 + rng.normal(0, 12), 20))]),
        retro_delay=_retrograde_delay(rng, tg.rhythm),
        pr=pr,
        resp_rate=rng.uniform(0.15, 0.33),
    )


def _retrograde_delay(rng: np.random.Generator, rhythm: str) -> float:
    """Typical AVNRT hides the retrograde P at the end of the QRS (pseudo r'); AVRT puts it in the
    ST segment; an unspecified SVT is one or the other."""
    hidden, early, late = rng.random() < 0.6, rng.uniform(-0.01, 0.01), rng.uniform(0.06, 0.1)
    return early if rhythm == "AVNRT" or (rhythm == "SVT" and hidden) else late


def _ectopic_angle(rng: np.random.Generator) -> float:
    """Frontal P axis of an ectopic atrial focus: low atrial (superior), right or left atrial."""
    return float(rng.choice([-65.0, 110.0, 165.0]) + rng.normal(0, 15))


# ---------------------------------------------------------------------------------------------
# Calibration of the morphology to the targets, and the true fiducials
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Calibration:
    stretch: float  # time scale of the QRS
    qrs_rotation: float  # degrees
    t_rotation: float  # degrees
    t_centre: float  # s, T reference after the R wave
    onset: float  # s from the true QRS onset to R
    offset: float  # s from R to the true QRS offset


def _dominant(pat: _Patient, cal: _Calibration) -> tuple[_Waves, _Waves]:
    """QRS+ST and T(+U) waves of a dominant beat, R at t = 0, rotated to the calibrated axes."""
    qrs = pat.qrs.stretched(cal.stretch)
    j_point = float(np.max(qrs.t + 2 * qrs.sr)) if len(qrs.t) else 0.0
    depol = _Waves.concat([qrs, pat.st.shifted(j_point)]).rotated(cal.qrs_rotation)
    return depol, pat.repol.shifted(cal.t_centre).rotated(cal.t_rotation)


def _beat_p(pat: _Patient, cal: _Calibration, rhythm: str) -> tuple[_Waves, float]:
    """The P wave that belongs to each beat and its centre relative to the R wave (s)."""
    if rhythm in _RETROGRADE:
        return pat.p_retro, cal.offset + pat.retro_delay
    return pat.p_sinus, -cal.onset - pat.pr + _p_half(pat)


def _p_half(pat: _Patient) -> float:
    """Half the visible duration of the P wave (s)."""
    return float(np.max(np.abs(pat.p_sinus.t)) + 2.5 * np.max(pat.p_sinus.sl))


def _extent(waves: _Waves) -> tuple[float, float]:
    """First and last instant (s, in the waves' own frame) at which a wave of the group is on.

    A wave of peak magnitude ``a`` > :data:`FIDUCIAL_MV` and widths ``sl``, ``sr`` is on from
    ``t - sl * r`` to ``t + sr * r`` with ``r = sqrt(2 ln(a / FIDUCIAL_MV))``.
    """
    amp = np.linalg.norm(waves.v, axis=1)
    on = amp > FIDUCIAL_MV
    if not on.any():
        return 0.0, 0.0
    reach = np.sqrt(2.0 * np.log(amp[on] / FIDUCIAL_MV))
    return float(np.min(waves.t[on] - waves.sl[on] * reach)), float(np.max(waves.t[on] + waves.sr[on] * reach))


def _net_area(waves: _Waves) -> np.ndarray:
    """Time integral of the dipole of a group of asymmetric Gaussian waves, (3,) mV s."""
    return (waves.v * (math.sqrt(math.pi / 2.0) * (waves.sl + waves.sr))[:, None]).sum(axis=0)


def _frontal_axis(area: np.ndarray, leads: np.ndarray) -> float:
    """Axis (degrees) of a dipole area vector seen in leads I and aVF, as on the hexaxial
    reference system (Einthoven's triangle gives aVF a gain of sqrt(3)/2 relative to I)."""
    lead_i, lead_ii = float(area @ leads[0]), float(area @ leads[1])
    return math.degrees(math.atan2(2.0 * (lead_ii - lead_i / 2.0), _SQRT3 * lead_i))


def _rotation_for_axis(area: np.ndarray, leads: np.ndarray, target: float) -> float:
    """Rotation (degrees, about the anteroposterior axis) of the dipole area vector ``area`` that
    makes its axis in leads I and aVF equal ``target``.

    The axis seen in the leads is not the dipole's frontal angle (Dower's lead I has a vertical
    component), so the rotation is found on a 0.5-degree grid rather than by subtraction.
    """
    phi = np.radians(np.arange(-180.0, 180.0, 0.5))
    x, y, z = area
    rotated = np.stack(
        [x * np.cos(phi) - y * np.sin(phi), x * np.sin(phi) + y * np.cos(phi), np.full_like(phi, z)], axis=1
    )
    lead_i, lead_ii = rotated @ leads[0], rotated @ leads[1]
    seen = np.degrees(np.arctan2(2.0 * (lead_ii - lead_i / 2), _SQRT3 * lead_i))
    miss = np.abs((seen - target + 180.0) % 360.0 - 180.0) + 1e-3 * np.abs(np.degrees(phi))
    return float(np.degrees(phi[np.argmin(miss)]))


def _t_wave(pat: _Patient) -> _Waves:
    """The T wave alone (the first repolarisation wave; the second, if any, is the U wave)."""
    return _Waves(pat.repol.t[:1], pat.repol.sl[:1], pat.repol.sr[:1], pat.repol.v[:1])


@dataclass(frozen=True)
class TrueFiducials:
    """The model's own fiducials of a dominant beat: times in s relative to the R wave, axes in
    degrees (Chapman's range). Not measured on any signal (see the module docstring)."""

    qrs_onset: float
    qrs_offset: float
    t_end: float
    raxis: int
    taxis: int


def true_fiducials(pat: _Patient, cal: _Calibration) -> TrueFiducials:
    """QRS onset and offset, T end and both axes of a dominant beat, in closed form."""
    qrs = pat.qrs.stretched(cal.stretch).rotated(cal.qrs_rotation)
    t_wave = _t_wave(pat).shifted(cal.t_centre).rotated(cal.t_rotation)
    onset, offset = _extent(qrs)
    return TrueFiducials(
        qrs_onset=onset,
        qrs_offset=offset,
        t_end=_extent(t_wave)[1],
        raxis=chapman_axis(_frontal_axis(_net_area(qrs), pat.leads)),
        taxis=chapman_axis(_frontal_axis(_net_area(t_wave), pat.leads)),
    )


def _calibrate(pat: _Patient, tg: Targets, rr: float) -> _Calibration:
    """QRS time scale, T position and both frontal rotations whose true fiducials
    (:func:`true_fiducials`) give the targeted QRS duration, QT and axes; in closed form, since
    the QRS extent scales with the stretch and the T end moves with the T centre."""
    qrsd = float(np.clip(tg.qrsd, 60.0, 200.0)) / 1000.0
    first, last = _extent(pat.qrs)
    stretch = float(np.clip(qrsd / (last - first), 0.4, 3.0))
    onset, offset = -first * stretch, last * stretch
    qt_max = min(0.72 * math.sqrt(rr), rr - 0.02)
    if tg.rhythm not in _NO_P_WAVES | _RETROGRADE:
        # The T wave ends about where the next P starts, unless that would make the QT implausibly
        # short (a long PR at a fast rate puts the P wave on the T wave, as it does in patients).
        qt_max = min(qt_max, max(rr - pat.pr + 0.04, 0.8 * tg.qt / 1000.0))
    qt = float(np.clip(tg.qt / 1000.0, qrsd + 0.1, max(qt_max, qrsd + 0.1)))
    t_wave = _t_wave(pat)
    t_centre = max(qt - onset - _extent(t_wave)[1], offset + 1.2 * float(t_wave.sl[0]))
    return _Calibration(
        stretch=stretch,
        qrs_rotation=_rotation_for_axis(_net_area(pat.qrs.stretched(stretch)), pat.leads, tg.raxis),
        t_rotation=_rotation_for_axis(_net_area(t_wave), pat.leads, tg.taxis),
        t_centre=t_centre,
        onset=onset,
        offset=offset,
    )


# ---------------------------------------------------------------------------------------------
# Rhythm: beat times, atrial activity
# ---------------------------------------------------------------------------------------------
_MARGIN = 2.0  # s: beats are generated beyond the record so its edges look real
DOMINANT, VPB, ABERRANT, APB = 0, 1, 2, 3


@dataclass
class _Schedule:
    beat: np.ndarray  # R times (s)
    kind: np.ndarray  # DOMINANT, VPB, ABERRANT or APB (normal QRS after an ectopic P)
    p_times: np.ndarray  # P-wave centres (s), including non-conducted ones
    p_kind: np.ndarray  # 0 dominant P morphology, 1 ectopic
    p_angle_shift: np.ndarray  # extra frontal rotation of each P (wandering pacemaker)
    atrial: np.ndarray | None  # continuous atrial dipole (n_samples, 3) for fibrillation/flutter
    atrial_rate: float  # bpm, counted from the atrial events


def _counted(beat: np.ndarray, cal: _Calibration, duration: float) -> np.ndarray:
    """Beats whose whole QRS lies inside the record (MUSE's QRSCount)."""
    return (beat - cal.onset >= 0.0) & (beat + cal.offset <= duration)


def _match_rate(times: list[np.ndarray], rr0: float, cal: _Calibration, duration: float) -> list[np.ndarray]:
    """Scale the time axis about the record's centre so that the counted beats' mean RR is rr0.

    ``times[0]`` are the ventricular beats; the other arrays (atrial events) scale with them.
    """
    for _ in range(3):
        beat = times[0][_counted(times[0], cal, duration)]
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
    vector = rng.uniform(0.01, 0.045) * _direction(rng.uniform(60, 120), rng.uniform(30, 60))
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
    vector = rng.uniform(0.08, 0.18) * _direction(-90 + rng.normal(0, 15), 20)
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


def _schedule(rng: np.random.Generator, tg: Targets, pat: _Patient, cal: _Calibration, n_samples: int) -> _Schedule:
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
    if "APB" in codes and tg.rhythm not in _NO_P_WAVES | _RETROGRADE:
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
        _, p_offset = _beat_p(pat, cal, tg.rhythm)
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
    return _Schedule(beat, kind, p_times, p_kind, shift, atrial, atrial_rate)


# ---------------------------------------------------------------------------------------------
# One record
# ---------------------------------------------------------------------------------------------
def _noise(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Residual baseline wander, 50 Hz mains and muscle noise of the eight recorded leads (uV)."""
    t = np.arange(n_samples) / FS
    # Wander (two slow sinusoids per lead) is evaluated every 10 samples and interpolated.
    coarse_t = np.arange(0, n_samples + 10, 10) / FS
    freq, phase = rng.uniform(0.05, 0.45, 16), rng.uniform(0, 2 * np.pi, 16)
    waves = rng.uniform(5, 35, 16) * np.sin(np.outer(coarse_t, 2 * np.pi * freq) + phase)
    coarse = waves[:, :8] + waves[:, 8:]
    step, frac = np.divmod(np.arange(n_samples), 10)
    wander = coarse[step] + (coarse[step + 1] - coarse[step]) * (frac / 10.0)[:, None]
    mains = (
        (rng.uniform(1, 10) if rng.random() < 0.5 else 0.0)
        * rng.uniform(0.5, 1.5, 8)
        * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))[:, None]
    )
    muscle = rng.standard_normal((n_samples, 8)) * (rng.uniform(1.0, 5.0) * rng.uniform(0.6, 1.4, 8))
    return wander + mains + muscle


def derive_limb_leads(recorded: np.ndarray) -> np.ndarray:
    """(n, 12) leads from (n, 8) recorded I, II, V1..V6: III, aVR, aVL, aVF from I and II."""
    i, ii = recorded[:, 0], recorded[:, 1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)
    return np.concatenate([limb, recorded[:, 2:]], axis=1)


def synthesize_record(
    seed: int,
    index: int,
    targets: Targets | None = None,
    n_samples: int = N_SAMPLES,
    patient_seed: Sequence[int] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """One record: its Diagnostics row (without FileName) and its signal (n_samples, 12) in uV at
    500 Hz, leads in :data:`~fairseq_goodviews.leads.CANONICAL_LEADS` order.

    ``targets`` None draws the record's targets from the calibrated distributions. The row's
    wave attributes are the model's true fiducials (:func:`true_fiducials`), not a measurement.
    ``patient_seed`` draws the person (lead geometry, amplitudes, wave shapes, PR interval) from
    its own generator, so that records with the same ``patient_seed`` are visits of one patient;
    by default the person comes from the record's generator.
    """
    if n_samples < FS:
        raise ValueError(f"n_samples must be at least {FS} (1 s), got {n_samples}")
    rng = np.random.default_rng([seed, index])
    tg = sample_targets(rng) if targets is None else targets
    pat = _patient(rng if patient_seed is None else np.random.default_rng(list(patient_seed)), tg)
    rr0 = 60.0 / float(np.clip(tg.rate, 25.0, 300.0))
    cal = _calibrate(pat, tg, rr0)
    sched = _schedule(rng, tg, pat, cal, n_samples)
    beat, kind = sched.beat, sched.kind
    depol, repol = _dominant(pat, cal)
    rr_before = np.diff(beat, prepend=beat[0] - rr0)
    # QT follows the RR (QT = QTc * sqrt(RR)), with half of the adaptation to the mean rate.
    qt_shift = (tg.qt / 1000.0) * (np.sqrt(np.clip(0.5 * rr_before + 0.5 * rr0, 0.2, 3.0) / rr0) - 1.0)
    gain = 1.0 + 0.05 * np.sin(2 * np.pi * pat.resp_rate * beat)
    normal = kind != VPB
    parts = [
        depol.at(beat[normal], gain=gain[normal]),
        repol.at(beat[normal], shift=qt_shift[normal], gain=gain[normal]),
        pat.vpb.at(beat[~normal]),
    ]
    aberrant = kind == ABERRANT
    if aberrant.any():
        parts.append(pat.aberrant.stretched(cal.stretch).rotated(cal.qrs_rotation).at(beat[aberrant]))
    if len(sched.p_times):
        dominant_p = pat.p_retro if tg.rhythm in _RETROGRADE else pat.p_sinus
        for p_kind, template in ((0, dominant_p), (1, pat.p_ectopic)):
            sel = sched.p_kind == p_kind
            for angle in np.unique(np.round(sched.p_angle_shift[sel], 0)):
                same = sel & (np.round(sched.p_angle_shift, 0) == angle)
                parts.append(template.rotated(float(angle)).at(sched.p_times[same]))
    dipole = _render(_Waves.concat(parts), n_samples)
    if sched.atrial is not None:
        dipole += sched.atrial
    recorded = 1000.0 * (dipole @ pat.leads.T) + _noise(rng, n_samples)
    leads = derive_limb_leads(recorded)

    counted = _counted(beat, cal, n_samples / FS)
    rr = np.diff(beat[counted])
    mean_rr = float(rr.mean()) if len(rr) else rr0
    rate = 60.0 / mean_rr
    truth = true_fiducials(pat, cal)
    q_onset = QONSET_MEAN + int(np.clip(round(rng.normal(0, 4)), -12, 12))
    q_offset = q_onset + round((truth.qrs_offset - truth.qrs_onset) * FS)
    t_offset = q_onset + round((truth.t_end - truth.qrs_onset) * FS)
    qt = 2 * (t_offset - q_onset)
    atrial_rate = sched.atrial_rate if np.isfinite(sched.atrial_rate) else rate
    row = {
        "Rhythm": tg.rhythm,
        "Beat": " ".join(sorted(tg.codes)) if tg.codes else "NONE",
        "PatientAge": int(tg.age),
        "Gender": "MALE" if tg.male else "FEMALE",
        "VentricularRate": round(rate),
        "AtrialRate": round(atrial_rate),
        "QRSDuration": 2 * (q_offset - q_onset),
        "QTInterval": qt,
        "QTCorrected": round(qt / math.sqrt(mean_rr)),
        "RAxis": truth.raxis,
        "TAxis": truth.taxis,
        "QRSCount": int(counted.sum()),
        "QOnset": q_onset,
        "QOffset": q_offset,
        "TOffset": t_offset,
    }
    return row, leads
