"""Synthetic Chapman/Shaoxing database: physiologically modelled 12-lead ECGs in the real layout.

:func:`generate_chapman` writes what the figshare release of Zheng et al. (2020) contains::

    OUT/Diagnostics.xlsx                 one sheet, the 16 real columns in the real order
    OUT/ECGDataDenoised/<FileName>.csv   5000 rows x 12 leads (I, II, III, aVR, aVL, aVF, V1..V6),
                                         microvolts, 500 Hz, no header row unless ``header=True``

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
* **Measurement.** The attribute columns are measured on the written signal and on the beat
  times, the way ECG carts (GE MUSE) report them: ventricular rate from the RR intervals, atrial
  rate from the P-wave times (flutter: the flutter cycle; fibrillation: the f-wave cycles), a
  600-sample median beat (QRS onset near sample 219, as in the real file) delineated with the
  spatial velocity (QRS) and the tangent to the T-wave magnitude (T end), axes from the net areas
  in leads I and aVF. ``QRSDuration = 2*(QOffset-QOnset)`` and ``QTInterval = 2*(TOffset-QOnset)``
  hold exactly and ``QTCorrected`` is Bazett's.

Rhythm, age, sex, ``Beat`` frequencies and the target distributions are calibrated to the real
``Diagnostics.xlsx`` (constants below); nothing reads the real file at run time. With
``diagnostics=PATH`` the rows of an existing ``Diagnostics.xlsx`` are kept unchanged and each
record is synthesised to agree with its row (rhythm, conditions, rate, QRS duration, QT, axes).

Every record is drawn from ``numpy.random.default_rng([seed, index])``, so the output depends on
the seed only, not on the number of worker processes.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import openpyxl
import pandas as pd
from scipy.ndimage import convolve1d, gaussian_filter1d
from scipy.signal import sawtooth

from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.labels import RHYTHM_TO_CLASS
from fairseq_goodviews.leads import CANONICAL_LEADS

FS = 500
N_SAMPLES = 5000
DURATION = N_SAMPLES / FS
COLUMNS: tuple[str, ...] = ("FileName", "Rhythm", "Beat", "PatientAge", "Gender") + ATTRIBUTE_NAMES
DIAGNOSTICS_NAME = "Diagnostics.xlsx"
SIGNAL_DIR = "ECGDataDenoised"
MEDIAN_LENGTH = 600  # samples of the median beat, as MUSE (TOffset <= 582 in the real file)
QONSET_MEAN = 219  # mean QOnset of the real file (std 6.4)

# --------------------------------------------------------------------------------------------
# Calibration constants, computed once from the real Chapman Diagnostics.xlsx (10,646 rows;
# shared/data/chapman/Diagnostics.xlsx). Distributions are stored as quantiles at
# QUANTILE_LEVELS and sampled by inverse-CDF interpolation.
# --------------------------------------------------------------------------------------------
QUANTILE_LEVELS = np.array([0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100]) / 100.0

RHYTHM_COUNTS = {"SB": 3889, "SR": 1826, "AFIB": 1780, "ST": 1568, "SVT": 587, "AF": 445, "SA": 399,
                 "AT": 121, "AVNRT": 16, "AVRT": 8, "SAAWR": 7}
MALE_FRACTION = {"SB": 0.638, "SR": 0.439, "AFIB": 0.585, "ST": 0.51, "SVT": 0.475, "AF": 0.578,
                 "SA": 0.559, "AT": 0.529, "AVNRT": 0.25, "AVRT": 0.625, "SAAWR": 0.143}
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
    "SB": (2225, {"1AVB": 158, "ALS": 106, "APB": 101, "AQW": 73, "ARS": 29, "AVB": 1, "CCR": 55, "CR": 6,
                  "IDC": 1, "IVB": 36, "LBBB": 17, "LFBBB": 20, "LVHV": 604, "LVQRSCL": 46, "LVQRSLL": 28,
                  "PRIE": 6, "PWC": 13, "QTIE": 21, "RBBB": 122, "STDD": 59, "STTC": 169, "STTU": 74,
                  "TWC": 599, "TWO": 56, "UW": 8, "VPB": 39}),
    "SR": (1374, {"1AVB": 30, "ALS": 45, "APB": 36, "AQW": 23, "ARS": 5, "AVB": 1, "CCR": 27, "CR": 3,
                  "IVB": 2, "LBBB": 4, "LFBBB": 7, "LVHV": 89, "LVQRSCL": 24, "LVQRSLL": 1, "PWC": 7,
                  "QTIE": 7, "RBBB": 26, "STDD": 30, "STTC": 88, "STTU": 19, "TWC": 197, "TWO": 14, "UW": 1,
                  "VPB": 17}),
    "AFIB": (418, {"ALS": 107, "AQW": 73, "ARS": 61, "CCR": 38, "CR": 16, "IDC": 111, "IVB": 42, "LBBB": 30,
                   "LFBBB": 34, "LRRI": 23, "LVHV": 367, "LVQRSCL": 18, "LVQRSLL": 55, "QTIE": 13,
                   "RBBB": 143, "STDD": 187, "STTC": 434, "STTU": 24, "TWC": 617, "TWO": 52, "UW": 7,
                   "VPB": 147}),
    "ST": (655, {"1AVB": 56, "ALS": 68, "APB": 101, "AQW": 44, "ARS": 60, "AVB": 2, "CCR": 22, "CR": 32,
                 "IVB": 11, "LBBB": 17, "LFBBB": 22, "LVHV": 130, "LVQRSCL": 47, "LVQRSLL": 19, "PRIE": 6,
                 "PWC": 73, "QTIE": 4, "RBBB": 60, "STDD": 77, "STTC": 311, "STTU": 43, "TWC": 286, "TWO": 24,
                 "UW": 1, "VPB": 62}),
    "SVT": (391, {"1AVB": 1, "ALS": 15, "AQW": 3, "ARS": 36, "CCR": 7, "CR": 11, "IVB": 2, "LBBB": 9,
                  "LFBBB": 6, "LVHV": 22, "RBBB": 38, "STDD": 15, "STTC": 57, "STTU": 2, "TWC": 29, "TWO": 2,
                  "VPB": 6}),
    "AF": (92, {"ALS": 32, "AQW": 15, "ARS": 20, "AVB": 149, "CCR": 7, "CR": 7, "IDC": 11, "IVB": 10,
                "LBBB": 13, "LFBBB": 15, "LRRI": 1, "LVHV": 55, "LVQRSCL": 1, "LVQRSLL": 5, "QTIE": 12,
                "RBBB": 56, "STDD": 24, "STTC": 65, "STTU": 10, "TWC": 111, "TWO": 7, "UW": 4, "VPB": 19}),
    "SA": (294, {"1AVB": 5, "ALS": 3, "APB": 20, "AQW": 2, "ARS": 9, "CR": 1, "IVB": 2, "LBBB": 1,
                 "LFBBB": 1, "LVHV": 19, "LVQRSCL": 2, "PRIE": 1, "QTIE": 1, "RBBB": 6, "STDD": 4, "STTC": 12,
                 "STTU": 7, "TWC": 30, "TWO": 2, "VPB": 16}),
    "AT": (26, {"1AVB": 2, "ALS": 8, "APB": 17, "AQW": 4, "AVB": 13, "CCR": 4, "CR": 1, "IDC": 10,
                "LBBB": 3, "LFBBB": 3, "LRRI": 1, "LVHV": 25, "LVQRSCL": 7, "LVQRSLL": 2, "PWC": 2, "RBBB": 9,
                "STDD": 10, "STTC": 30, "STTU": 4, "TWC": 32, "TWO": 2, "VPB": 4}),
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
_EXCLUSIVE = (("LBBB", "RBBB", "IVB"), ("LFBBB", "ALS", "ARS"), ("CCR", "CR"), ("AVB", "1AVB", "PRIE"),
              ("LVHV", "LVQRSCL"), ("LVHV", "LVQRSLL"))
_NO_P_WAVES = frozenset({"AFIB", "AF"})
_RETROGRADE = frozenset({"SVT", "AVNRT", "AVRT"})
_SQRT3 = math.sqrt(3.0)
# Lead vectors of I, II, V1..V6 for a dipole (x left, y feet, z anterior), mV per mV: Dower's
# inverse transform of the Frank vectorcardiogram (Edenbrandt & Pahlm 1988) with Frank's
# back-pointing Z axis flipped.
DOWER = np.array([
    [0.632, -0.235, -0.059],
    [0.235, 1.066, 0.132],
    [-0.515, 0.157, 0.917],
    [0.044, 0.164, 1.387],
    [0.882, 0.098, 1.277],
    [1.213, 0.127, 0.601],
    [1.125, 0.127, 0.086],
    [0.831, 0.076, -0.230],
])
_CALIBRATION_R = 300  # R-wave index of the clean beat used to calibrate the morphology


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


def _wrap180(angle: float) -> float:
    return (angle + 180.0) % 360.0 - 180.0


def chapman_axis(angle: float) -> int:
    """An angle in degrees in Chapman's (MUSE's) range (-90, 270], rounded."""
    return int(270 - (270 - round(angle)) % 360)


@lru_cache(maxsize=None)
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
        drawn = [c for c, hit in zip(codes, rng.random(len(codes)) < probs) if hit]
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
    age = int(round(_draw(rng, AGE_Q[rhythm])))
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


@lru_cache(maxsize=None)
def _rhythm_probabilities() -> np.ndarray:
    counts = np.array([RHYTHM_COUNTS[r] for r in RHYTHMS], dtype=float)
    return counts / counts.sum()


def targets_from_row(row: Mapping[str, Any]) -> Targets:
    """Targets that make a synthetic waveform agree with one row of a Diagnostics.xlsx."""
    rhythm = str(row["Rhythm"]).strip().upper()
    rhythm = "SA" if rhythm == "SI" else rhythm  # the paper's name for sinus irregularity
    if rhythm not in RHYTHM_COUNTS:
        raise ValueError(f"row {row.get('FileName')!r}: unknown rhythm code {row['Rhythm']!r}; "
                         f"known: {', '.join(RHYTHMS)}")

    def number(column: str, default: float) -> float:
        value = pd.to_numeric(row.get(column), errors="coerce")
        return default if pd.isna(value) else float(value)

    codes = frozenset(str(row.get("Beat", "NONE")).split()) - {"NONE"}
    rate = number("VentricularRate", 75.0)
    return Targets(
        rhythm=rhythm, codes=codes, age=int(number("PatientAge", 60.0)),
        male=str(row.get("Gender", "")).strip().upper() == "MALE",
        rate=rate, qrsd=number("QRSDuration", 90.0),
        qt=number("QTInterval", 420.0 * math.sqrt(60.0 / max(rate, 1.0))),
        raxis=number("RAxis", 45.0), taxis=number("TAxis", 45.0),
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
        t, sl, sr, v = zip(*rows)
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

    def at(self, times: np.ndarray, shift: np.ndarray | None = None,
           gain: np.ndarray | None = None) -> _Waves:
        """One copy per event time, optionally shifted (s) and scaled per event."""
        times = np.asarray(times, float)
        n = len(times)
        t = times[:, None] + self.t[None, :]
        if shift is not None:
            t = t + np.asarray(shift, float)[:, None]
        v = np.broadcast_to(self.v[None], (n,) + self.v.shape)
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
    half = int(math.ceil(4.0 * max(sl.max(), sr.max())))
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
    t_end: float  # s from the T-wave reference to the tangent T end (2 * right width of T)
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
    return _Waves.of([
        (-split / 2, width, width, amp * _direction(frontal + 5, 35)),
        (split / 2, width * 1.1, width * 1.1, 0.9 * amp * _direction(frontal - 10, -40)),
    ])


def _lead_vectors(rng: np.random.Generator, codes: frozenset[str]) -> np.ndarray:
    """Per-patient lead vectors: Dower's, electrode placement jitter, body-habitus gains."""
    limb = math.exp(rng.normal(0.0, 0.1))
    chest = 1.15 * math.exp(rng.normal(0.0, 0.12))
    if "LVQRSLL" in codes:
        limb *= rng.uniform(0.3, 0.45)
    if "LVQRSCL" in codes:
        chest *= rng.uniform(0.35, 0.5)
    leads = DOWER.copy()
    leads[2:] += rng.normal(0.0, 0.06, (6, 3))
    leads[:2] *= limb
    leads[2:] *= chest
    return leads


def _patient(rng: np.random.Generator, tg: Targets) -> _Patient:
    """The patient's lead geometry and beat morphology; axes, widths and QT are fitted later."""
    codes = tg.codes
    # Main QRS dipole (mV): larger in men and in the young (thinner chest wall).
    amp = 1.7 * math.exp(rng.normal(0.0, 0.22)) * (1.08 if tg.male else 0.93) \
        * float(np.clip(1.3 - 0.006 * tg.age, 0.75, 1.3))
    if "LVHV" in codes:
        amp *= rng.uniform(1.7, 2.2)
    elevation = rng.normal(-32.0, 10.0) + (rng.uniform(15, 30) if "CCR" in codes else 0.0) \
        - (rng.uniform(15, 30) if "CR" in codes else 0.0)
    q_amp, q_width, q_dir = rng.uniform(0.06, 0.18), 0.008, _direction(180 + rng.normal(0, 20), 45)
    if "AQW" in codes:  # pathological Q: >= 40 ms, deep, opposite to the main axis and posterior
        q_amp, q_width, q_dir = rng.uniform(0.3, 0.5), 0.014, _direction(180 + rng.normal(0, 20), -50)
    s_amp = rng.uniform(0.15, 0.45) * (1.3 if "LVHV" in codes else 1.0)
    if "LBBB" in codes:  # no septal q; broad notched R to the left and back; no S
        qrs = _Waves.of([
            (-0.02, 0.017, 0.017, 0.8 * amp * _direction(-15, elevation - 25)),
            (0.026, 0.018, 0.018, 0.95 * amp * _direction(15, elevation - 15)),
        ])
    else:
        rows = [
            (-0.022, q_width, q_width, q_amp * amp * q_dir),
            (0.0, 0.011, 0.011, amp * _direction(0.0, elevation)),
            (0.022, 0.009, 0.012, s_amp * amp * _direction(200 + rng.normal(0, 15), -35)),
        ]
        if "RBBB" in codes:  # terminal right-anterior R': rSR' in V1, wide S in I and V6
            rows.append((0.045, 0.014, 0.016, rng.uniform(0.45, 0.7) * amp * _direction(175, 45)))
        qrs = _Waves.of(rows)
    st_rows = []
    if codes & {"STDD", "STTC"}:  # ST depression opposite the main QRS vector (strain pattern)
        st_rows.append((0.035, 0.02, 0.07, rng.uniform(0.04, 0.1) * _direction(180.0, -elevation)))
    if "STTU" in codes:
        st_rows.append((0.035, 0.02, 0.07, rng.uniform(0.05, 0.12) * _direction(rng.uniform(-20, 60), 40)))
    qt = tg.qt / 1000.0
    t_right = float(np.clip(qt * rng.uniform(0.075, 0.095), 0.018, 0.05))
    t_left = t_right * rng.uniform(1.5, 1.9)
    t_amp = amp * rng.uniform(0.2, 0.35) * (1.4 if "LBBB" in codes else 1.0)
    if "TWC" in codes:  # flattened; the inversion comes from the T axis
        t_amp *= rng.uniform(0.45, 0.85)
    if "STTC" in codes:
        t_amp *= rng.uniform(0.55, 0.9)
    t_elevation = rng.normal(15.0, 10.0) * (-1.0 if codes & {"TWO", "LBBB"} else 1.0)
    t_dir = _direction(0.0, t_elevation)
    repol_rows = [(0.0, t_left, t_right, t_amp * t_dir)]
    if "UW" in codes:
        repol_rows.append((2 * t_right + 0.05, 0.03, 0.03, rng.uniform(0.06, 0.12) * t_dir))
    vpb_dir = rng.uniform(0, 360)
    vpb_el = rng.uniform(-60, 60)
    vpb = _Waves.of([
        (-0.028, 0.024, 0.024, rng.uniform(1.0, 1.6) * amp * _direction(vpb_dir - 25, vpb_el)),
        (0.03, 0.026, 0.026, rng.uniform(1.0, 1.6) * amp * _direction(vpb_dir + 25, vpb_el)),
        (0.30, 0.07, 0.045, 0.5 * amp * _direction(vpb_dir + 180, -vpb_el)),
    ])
    # Aberrant beats conduct with a right bundle branch block pattern (left if RBBB is already there).
    aberrant_dir = _direction(0.0, elevation - 30) if "RBBB" in codes else _direction(175, 45)
    p_amp = rng.uniform(0.07, 0.14)
    p_frontal = rng.normal(55.0, 12.0)
    p_split = rng.uniform(0.035, 0.045)
    if "PWC" in codes:  # bifid, wider P with an unusual axis
        p_frontal, p_split = rng.normal(25.0, 35.0), rng.uniform(0.05, 0.065)
    if tg.rhythm == "AT":
        p_frontal = _ectopic_angle(rng)
    pr = float(np.clip(rng.normal(0.15, 0.018) + 0.0005 * (tg.age - 50), 0.11, 0.2))
    if "1AVB" in codes or ("AVB" in codes and tg.rhythm not in _NO_P_WAVES | {"AT"}):
        pr = rng.uniform(0.21, 0.32)
    elif "PRIE" in codes:
        pr = rng.uniform(0.2, 0.23)
    return _Patient(
        leads=_lead_vectors(rng, codes), qrs=qrs, st=_Waves.of(st_rows), repol=_Waves.of(repol_rows),
        t_end=2 * t_right,
        aberrant=_Waves.of([(0.055, 0.018, 0.02, rng.uniform(0.5, 0.8) * amp * aberrant_dir)]),
        vpb=vpb,
        p_sinus=_p_wave(p_frontal, p_amp, 0.018, p_split),
        p_ectopic=_p_wave(_ectopic_angle(rng), p_amp, 0.017, 0.03),
        p_retro=_Waves.of([(0.0, 0.016, 0.016, p_amp * 1.2 * _direction(-90 + rng.normal(0, 12), 20))]),
        retro_delay=_retrograde_delay(rng, tg.rhythm),
        pr=pr, resp_rate=rng.uniform(0.15, 0.33),
    )


def _retrograde_delay(rng: np.random.Generator, rhythm: str) -> float:
    """Typical AVNRT hides the retrograde P at the end of the QRS (pseudo r'); AVRT puts it in the
    ST segment; an unspecified SVT is one or the other."""
    if rhythm == "AVNRT" or (rhythm == "SVT" and rng.random() < 0.6):
        return rng.uniform(-0.01, 0.01)
    return rng.uniform(0.06, 0.1)


def _ectopic_angle(rng: np.random.Generator) -> float:
    """Frontal P axis of an ectopic atrial focus: low atrial (superior), right or left atrial."""
    return float(rng.choice([-65.0, 110.0, 165.0]) + rng.normal(0, 15))


# ---------------------------------------------------------------------------------------------
# Calibration of the morphology to the targets, and the median-beat measurement
# ---------------------------------------------------------------------------------------------
@dataclass
class _Calibration:
    stretch: float  # time scale of the QRS
    qrs_rotation: float  # degrees
    t_rotation: float  # degrees
    t_centre: float  # s, T reference after the R wave
    onset: float = 0.045  # s from QRS onset to R (measured)
    offset: float = 0.045  # s from R to QRS offset (measured)


class Delineation(NamedTuple):
    """Fiducials of a median beat (sample indices) and the axes (degrees, Chapman range)."""

    qonset: int
    qoffset: int
    toffset: int
    raxis: int
    taxis: int


def _dominant(pat: _Patient, cal: _Calibration) -> tuple[_Waves, _Waves]:
    """QRS+ST and T(+U) waves of a dominant beat, R at t = 0, rotated to the calibrated axes."""
    qrs = pat.qrs.stretched(cal.stretch)
    j_point = float(np.max(qrs.t + 2 * qrs.sr)) if len(qrs.t) else 0.0
    depol = _Waves.concat([qrs, pat.st.shifted(j_point)]).rotated(cal.qrs_rotation)
    return depol, pat.repol.shifted(cal.t_centre).rotated(cal.t_rotation)


def _axis(area_i: float, area_avf: float) -> float:
    """The electrical axis from the net areas of I and aVF, as on the hexaxial reference system
    (Einthoven's triangle gives aVF a gain of sqrt(3)/2 relative to I)."""
    return math.degrees(math.atan2(2.0 * area_avf, _SQRT3 * area_i))


_SMOOTH = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_QUIET_RUN = 6  # samples


def delineate(median: np.ndarray, r_index: int, rr_samples: float, p_limit: int | None = None) -> Delineation:
    """Delineate a median beat given as (MEDIAN_LENGTH, 8) with leads I, II, V1..V6.

    QRS onset and offset: where the spatial velocity (norm of the first difference over the eight
    recorded leads) stays below 10% of its QRS maximum for 12 ms. T end: the tangent at the
    steepest descent of the T-wave magnitude (distance from the PR-segment baseline) meets zero,
    searched within RR-dependent bounds (QTc up to 750 ms, before the next QRS), its peak before
    ``p_limit``, the onset of the next P wave, when that comes after the QRS. The tangent meets
    the lowest magnitude of the descending limb (zero on a clean beat, the noise floor otherwise).
    Axes: net areas of I and aVF over the QRS and over the ST-T segment.
    """
    x = convolve1d(median, _SMOOTH, axis=0, mode="nearest")
    n = len(x)
    velocity = np.sqrt((np.diff(x, axis=0) ** 2).sum(axis=1))
    lo, hi = max(r_index - 40, 1), min(r_index + 40, n - 2)
    peak = lo + int(np.argmax(velocity[lo:hi]))
    quiet = velocity < 0.1 * velocity[peak]
    run = np.convolve(quiet, np.ones(_QUIET_RUN), mode="valid") == _QUIET_RUN  # run[i]: i.. quiet
    before = np.flatnonzero(run[max(peak - 110, 0):max(peak - _QUIET_RUN + 1, 0)])
    qon = max(peak - 110, 0) + int(before[-1]) + _QUIET_RUN if len(before) else max(peak - 110, 0)
    after = np.flatnonzero(run[peak:min(peak + 110, len(run))])
    qoff = peak + int(after[0]) if len(after) else min(peak + 110, n - 1)
    base = x[max(qon - 6, 0):max(qon - 1, 1)].mean(axis=0)
    y = x - base
    qrs_i, qrs_ii = y[qon:qoff + 1, 0].sum(), y[qon:qoff + 1, 1].sum()
    raxis = _axis(qrs_i, qrs_ii - qrs_i / 2)
    rr_s = rr_samples / FS
    peak_end = int(min(n - 1, qon + FS * min(0.6 * math.sqrt(rr_s), rr_s - 0.08)))
    tail_end = int(min(n - 1, qon + FS * min(0.75 * math.sqrt(rr_s), rr_s - 0.01)))
    if p_limit is not None and p_limit > qoff + 0.12 * FS:
        peak_end = min(peak_end, p_limit)
    magnitude = np.sqrt((y ** 2).sum(axis=1))
    if peak_end - qoff < 8:
        toff = max(tail_end, qoff + 1)
    else:
        # The T wave rises after the ST-segment nadir; its end is where the tangent at the
        # steepest point of its descending limb (above 30% of its peak) reaches zero.
        nadir = qoff + int(np.argmin(magnitude[qoff:min(qoff + 60, peak_end)]))
        top = nadir + int(np.argmax(magnitude[nadir:peak_end + 1]))
        limb = magnitude[top:tail_end + 1]
        floor = float(limb.min())
        low = np.flatnonzero(limb - floor < 0.3 * (limb[0] - floor))
        slope = np.diff(limb[:int(low[0]) + 1 if len(low) else len(limb)])
        if len(slope) and slope.min() < 0:
            k = int(np.argmin(slope))
            toff = int(round(min(top + k + (floor - limb[k]) / slope[k], tail_end)))
        else:
            toff = tail_end
    t_i, t_ii = y[qoff:toff + 1, 0].sum(), y[qoff:toff + 1, 1].sum()
    taxis = _axis(t_i, t_ii - t_i / 2)
    return Delineation(int(qon), int(qoff), int(toff), chapman_axis(raxis), chapman_axis(taxis))


def _clean_median(pat: _Patient, cal: _Calibration, tg: Targets, rr: float) -> tuple[np.ndarray, int | None]:
    """Noise-free median beat of a regular rhythm at RR ``rr`` (s): the dipole of its QRS+ST,
    T+U and P waves, (3, MEDIAN_LENGTH, 3), and the onset of the next P wave (:func:`_p_limit`)."""
    depol, repol = _dominant(pat, cal)
    r_time = _CALIBRATION_R / FS
    reach = int(math.ceil(0.7 / rr))
    beats = r_time + rr * np.arange(-reach, reach + 1)
    p_times = np.zeros(0)
    p_waves = _Waves.of([])
    if tg.rhythm not in _NO_P_WAVES:
        p_wave, p_offset = _beat_p(pat, cal, tg.rhythm)
        p_times = beats + p_offset
        p_waves = p_wave.at(p_times)
    dipoles = _render_groups([depol.at(beats), repol.at(beats), p_waves], MEDIAN_LENGTH)
    return dipoles, _p_limit(np.array([r_time]), p_times, _CALIBRATION_R, pat, cal)


def _p_limit(beats: np.ndarray, p_times: np.ndarray, r_index: int, pat: _Patient,
             cal: _Calibration) -> int | None:
    """Median-beat index where the first P wave that follows each QRS and its ST segment starts
    (median over beats); None without such P waves. It bounds the T-wave search."""
    if not len(p_times) or not len(beats):
        return None
    ordered = np.sort(p_times)
    pos = np.searchsorted(ordered, beats + cal.offset + 0.12)
    found = pos < len(ordered)
    if not found.any():
        return None
    delay = float(np.median(ordered[pos[found]] - beats[found]))
    return r_index + int(round((delay - _p_half(pat)) * FS))


def _beat_p(pat: _Patient, cal: _Calibration, rhythm: str) -> tuple[_Waves, float]:
    """The P wave that belongs to each beat and its centre relative to the R wave (s)."""
    if rhythm in _RETROGRADE:
        return pat.p_retro, cal.offset + pat.retro_delay
    return pat.p_sinus, -cal.onset - pat.pr + _p_half(pat)


def _p_half(pat: _Patient) -> float:
    """Half the visible duration of the P wave (s)."""
    return float(np.max(np.abs(pat.p_sinus.t)) + 2.5 * np.max(pat.p_sinus.sl))


def _rotation_for_axis(rotating: np.ndarray, fixed: np.ndarray, leads: np.ndarray, target: float) -> float:
    """Rotation (degrees, about the anteroposterior axis) of the ``rotating`` net area vector
    that makes the axis measured from leads I and aVF of ``rotating + fixed`` equal ``target``.

    The measured axis is not the dipole's frontal angle (Dower's lead I has a vertical
    component), so the rotation is found on a 0.5-degree grid rather than by subtraction.
    """
    phi = np.radians(np.arange(-180.0, 180.0, 0.5))
    x, y, z = rotating
    area = np.stack([x * np.cos(phi) - y * np.sin(phi), x * np.sin(phi) + y * np.cos(phi),
                     np.full_like(phi, z)], axis=1) + fixed
    lead_i, lead_ii = area @ leads[0], area @ leads[1]
    measured = np.degrees(np.arctan2(2.0 * (lead_ii - lead_i / 2), _SQRT3 * lead_i))
    miss = np.abs((measured - target + 180.0) % 360.0 - 180.0) + 1e-3 * np.abs(np.degrees(phi))
    return float(np.degrees(phi[np.argmin(miss)]))


def _net_area(dipole: np.ndarray, start: int, stop: int, baseline: slice) -> np.ndarray:
    """Area of a (n, 3) dipole over [start, stop] above its mean over ``baseline``."""
    return dipole[start:stop + 1].sum(axis=0) - (stop + 1 - start) * dipole[baseline].mean(axis=0)


def _calibrate(pat: _Patient, tg: Targets, rr: float) -> _Calibration:
    """Fit QRS time scale, T position and both frontal rotations so that the clean median beat
    measures the targeted QRS duration, QT and axes (the delineation is the one applied later to
    the noisy signal). Returns the best of a few iterations."""
    qrsd = float(np.clip(tg.qrsd, 60.0, 200.0))
    qt_max = min(0.72 * math.sqrt(rr), rr - 0.02)
    if tg.rhythm not in _NO_P_WAVES | _RETROGRADE:
        qt_max = min(qt_max, rr - pat.pr + 0.04)  # the T wave ends about where the next P starts
    qt = float(np.clip(tg.qt, qrsd + 100.0, max(1000.0 * qt_max, qrsd + 100.0)))
    cal = _Calibration(stretch=qrsd / 85.0, qrs_rotation=tg.raxis, t_rotation=tg.taxis,
                       t_centre=qt / 1000.0 - 0.045 - pat.t_end)
    best, best_error = cal, math.inf
    for step in range(6):
        dipoles, p_limit = _clean_median(pat, cal, tg, rr)
        d = delineate(dipoles.sum(axis=0) @ pat.leads.T, _CALIBRATION_R, rr * FS, p_limit)
        cal.onset = (_CALIBRATION_R - d.qonset) / FS
        cal.offset = (d.qoffset - _CALIBRATION_R) / FS
        qrsd_error = qrsd - 2.0 * (d.qoffset - d.qonset)
        qt_error = qt - 2.0 * (d.toffset - d.qonset)
        raxis_error, taxis_error = _wrap180(tg.raxis - d.raxis), _wrap180(tg.taxis - d.taxis)
        error = abs(qrsd_error) + abs(qt_error) + 0.5 * (abs(raxis_error) + abs(taxis_error))
        if error < best_error:
            best, best_error = replace(cal), error
        if error < 4.0 or step == 5:
            break
        baseline = slice(max(d.qonset - 6, 0), max(d.qonset - 1, 1))
        depol, repol, atrial = (_net_area(x, d.qonset, d.qoffset, baseline) for x in dipoles)
        cal.qrs_rotation += _rotation_for_axis(depol, repol + atrial, pat.leads, tg.raxis)
        depol, repol, atrial = (_net_area(x, d.qoffset, d.toffset, baseline) for x in dipoles)
        cal.t_rotation += _rotation_for_axis(repol, depol + atrial, pat.leads, tg.taxis)
        cal.stretch = float(np.clip(cal.stretch * qrsd / max(qrsd - qrsd_error, 10.0), 0.6, 1.8))
        cal.t_centre += float(np.clip(qt_error, -60.0, 60.0)) / 1000.0
        cal.t_centre = max(cal.t_centre, cal.offset + 1.2 * float(pat.repol.sl[0]))
    return best


# ---------------------------------------------------------------------------------------------
# Rhythm: beat times, atrial activity
# ---------------------------------------------------------------------------------------------
_START, _END = -2.0, DURATION + 2.0  # beats are generated beyond the record so its edges look real
DOMINANT, VPB, ABERRANT, APB = 0, 1, 2, 3


@dataclass
class _Schedule:
    beat: np.ndarray  # R times (s)
    kind: np.ndarray  # DOMINANT, VPB, ABERRANT or APB (normal QRS after an ectopic P)
    p_times: np.ndarray  # P-wave centres (s), including non-conducted ones
    p_kind: np.ndarray  # 0 dominant P morphology, 1 ectopic
    p_angle_shift: np.ndarray  # extra frontal rotation of each P (wandering pacemaker)
    atrial: np.ndarray | None  # continuous atrial dipole (N_SAMPLES, 3) for fibrillation/flutter
    atrial_rate: float  # bpm, measured from the atrial events


def _counted(beat: np.ndarray, cal: _Calibration) -> np.ndarray:
    """Beats whose whole QRS lies inside the record (MUSE's QRSCount)."""
    return (beat - cal.onset >= 0.0) & (beat + cal.offset <= DURATION)


def _match_rate(times: list[np.ndarray], rr0: float, cal: _Calibration) -> list[np.ndarray]:
    """Scale the time axis about the record's centre so that the counted beats' mean RR is rr0.

    ``times[0]`` are the ventricular beats; the other arrays (atrial events) scale with them.
    """
    for _ in range(3):
        beat = times[0][_counted(times[0], cal)]
        if len(beat) < 2:
            break
        factor = rr0 / ((beat[-1] - beat[0]) / (len(beat) - 1))
        times = [DURATION / 2 + (t - DURATION / 2) * factor for t in times]
    return times


def _sinus_times(rng: np.random.Generator, rr0: float, rhythm: str, resp_rate: float) -> np.ndarray:
    """Beat times of a regular pacemaker with respiratory and low-frequency variability."""
    resp, lf, white = {
        "SA": (rng.uniform(0.08, 0.16), rng.uniform(0.01, 0.04), 0.01),
        "SAAWR": (rng.uniform(0.03, 0.07), rng.uniform(0.01, 0.03), 0.015),
        "ST": (rng.uniform(0.003, 0.012), rng.uniform(0.0, 0.01), 0.004),
        "SVT": (0.002, 0.0, 0.002), "AVNRT": (0.002, 0.0, 0.002), "AVRT": (0.002, 0.0, 0.002),
        "AT": (0.004, 0.003, 0.004),
    }.get(rhythm, (rng.uniform(0.01, 0.04), rng.uniform(0.0, 0.02), rng.uniform(0.003, 0.01)))
    n = int((_END - _START) / (rr0 * (1 - resp - lf - 0.05))) + 3
    k = np.arange(n) * rr0
    rr = rr0 * (1 + resp * np.sin(2 * np.pi * resp_rate * k + rng.uniform(0, 2 * np.pi))
                + lf * np.sin(2 * np.pi * 0.1 * k + rng.uniform(0, 2 * np.pi))
                + white * rng.standard_normal(n))
    t = _START - rng.uniform(0, rr0) + np.cumsum(np.maximum(rr, 0.2))
    return t[t < _END]


def _fibrillation_times(rng: np.random.Generator, rr0: float, codes: frozenset[str]) -> np.ndarray:
    """Irregularly irregular ventricular response: independent RRs above the AV refractory period."""
    n = int((_END - _START) / (0.3 * rr0)) + 5
    x = np.exp(rng.normal(0.0, rng.uniform(0.15, 0.3), n))
    rr = np.maximum(rr0 * x / x.mean(), 0.26)
    if "LRRI" in codes:  # one long RR interval (a pause) inside the record
        start = _START + np.cumsum(rr)
        inside = np.flatnonzero((start > 1.0) & (start < DURATION - 3.0))
        if len(inside):
            rr[rng.choice(inside)] = max(1.6, rng.uniform(1.8, 2.5) * rr0)
    t = _START - rng.uniform(0, rr0) + np.cumsum(rr)
    return t[t < _END]


def _fibrillation_waves(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Fibrillatory baseline as a dipole (N_SAMPLES, 3) and its rate (bpm) counted from it."""
    t = np.arange(N_SAMPLES) / FS
    drift = sum(rng.uniform(0.1, 0.35)
                * np.sin(2 * np.pi * rng.uniform(0.05, 0.4) * t + rng.uniform(0, 2 * np.pi)) for _ in range(3))
    phase = 2 * np.pi * np.cumsum(rng.uniform(5.0, 7.5) + drift) / FS + rng.uniform(0, 2 * np.pi)
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
    wave = envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
    cycles = np.count_nonzero((wave[:-1] < 0) & (wave[1:] >= 0))
    vector = rng.uniform(0.01, 0.045) * _direction(rng.uniform(60, 120), rng.uniform(30, 60))
    return wave[:, None] * vector[None, :], 60.0 * cycles / DURATION


def _flutter(rng: np.random.Generator, rr0: float, tg: Targets) -> tuple[np.ndarray, np.ndarray]:
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
    n_f = int((_END - _START) / cl) + 2
    f_times = _START - rng.uniform(0, cl) + cl * np.arange(n_f)
    if variable:
        # The AV node does not conduct every flutter wave faster than every 250 ms.
        low = max(math.floor(ratio), 2 if ratio >= 2 or cl < 0.25 else 1)
        steps = low + (rng.random(n_f) < float(np.clip(ratio - low, 0.0, 1.0)))
    else:
        steps = np.full(n_f, steps_fixed)
    conducted = np.cumsum(steps)
    conducted = conducted[conducted < n_f]
    return f_times, f_times[conducted] + rng.uniform(0.2, 0.28)


def _flutter_waves(rng: np.random.Generator, f_times: np.ndarray) -> tuple[np.ndarray, float]:
    """Sawtooth flutter waves (negative in II, III, aVF; typical counter-clockwise flutter)."""
    cl = float(np.mean(np.diff(f_times)))
    t = np.arange(N_SAMPLES) / FS
    wave = sawtooth(2 * np.pi * (t - f_times[0]) / cl, width=0.75)
    wave = gaussian_filter1d(wave, 3.0)
    vector = rng.uniform(0.08, 0.18) * _direction(-90 + rng.normal(0, 15), 20)
    return wave[:, None] * vector[None, :], 60.0 / cl


def _premature(rng: np.random.Generator, beat: np.ndarray, kind: np.ndarray, code_kind: int,
               coupling: tuple[float, float], reset: bool) -> tuple[np.ndarray, np.ndarray]:
    """Make 1 + Poisson(0.5) beats premature: VPB (compensatory pause) or APB (the pacemaker resets)."""
    candidates = np.flatnonzero((beat > 0.6) & (beat < DURATION - 0.6) & (kind == DOMINANT))
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


def _schedule(rng: np.random.Generator, tg: Targets, pat: _Patient, cal: _Calibration) -> _Schedule:
    """Beat times and kinds, atrial events and activity of the record's rhythm and conditions."""
    rr0 = 60.0 / float(np.clip(tg.rate, 25.0, 300.0))
    codes = tg.codes
    atrial, atrial_rate, f_times = None, float("nan"), None
    if tg.rhythm == "AFIB":
        beat = _fibrillation_times(rng, rr0, codes)
    elif tg.rhythm == "AF":
        f_times, beat = _flutter(rng, rr0, tg)
    else:
        beat = _sinus_times(rng, rr0, tg.rhythm, pat.resp_rate)
    kind = np.zeros(len(beat), dtype=np.int64)
    sinus_time = beat.copy()  # when each beat's P wave fires (a VPB leaves it in place)
    if "APB" in codes and tg.rhythm not in _NO_P_WAVES | _RETROGRADE:
        beat, kind = _premature(rng, beat, kind, APB, (0.6, 0.8), reset=True)
        sinus_time = beat.copy()
    if "VPB" in codes:
        beat, kind = _premature(rng, beat, kind, VPB, (0.5, 0.7), reset=False)
    if "IDC" in codes:
        rr_before = np.diff(beat, prepend=beat[0] - rr0)
        eligible = np.flatnonzero((kind == DOMINANT) & (beat > 0) & (beat < DURATION))
        if len(eligible):
            # Ashman phenomenon: aberrancy after the shortest preceding RR.
            chosen = eligible[np.argsort(rr_before[eligible])[: 1 + rng.integers(0, 3)]]
            kind[chosen] = ABERRANT
    scaled = _match_rate([beat, sinus_time] + ([f_times] if f_times is not None else []), rr0, cal)
    beat, sinus_time = scaled[0], scaled[1]
    p_times, p_kind = np.zeros(0), np.zeros(0, dtype=np.int64)
    if tg.rhythm == "AFIB":
        atrial, atrial_rate = _fibrillation_waves(rng)
    elif tg.rhythm == "AF":
        atrial, atrial_rate = _flutter_waves(rng, scaled[2])
    else:
        _, p_offset = _beat_p(pat, cal, tg.rhythm)
        p_times = sinus_time + p_offset
        p_kind = (kind == APB).astype(np.int64)
        if tg.rhythm == "AT" and "AVB" in codes:  # 2:1 block: a non-conducted P between beats
            ratio = 2 if not tg.atrial_rate or not np.isfinite(tg.atrial_rate) else int(
                np.clip(round(tg.atrial_rate / tg.rate), 2, 4))
            gaps = np.diff(p_times)
            extra = [p_times[:-1] + gaps * k / ratio for k in range(1, ratio)]
            p_times = np.concatenate([p_times] + extra)
            p_kind = np.concatenate([p_kind] + [np.zeros(len(e), dtype=np.int64) for e in extra])
        inside = np.sort(p_times[(p_times >= 0) & (p_times < DURATION)])
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
def _noise(rng: np.random.Generator) -> np.ndarray:
    """Residual baseline wander, 50 Hz mains and muscle noise of the eight recorded leads (uV)."""
    t = np.arange(N_SAMPLES) / FS
    # Wander (two slow sinusoids per lead) is evaluated every 10 samples and interpolated.
    coarse_t = np.arange(0, N_SAMPLES + 10, 10) / FS
    freq, phase = rng.uniform(0.05, 0.45, 16), rng.uniform(0, 2 * np.pi, 16)
    waves = rng.uniform(5, 35, 16) * np.sin(np.outer(coarse_t, 2 * np.pi * freq) + phase)
    coarse = waves[:, :8] + waves[:, 8:]
    step, frac = np.divmod(np.arange(N_SAMPLES), 10)
    wander = coarse[step] + (coarse[step + 1] - coarse[step]) * (frac / 10.0)[:, None]
    mains = (rng.uniform(1, 10) if rng.random() < 0.5 else 0.0) * rng.uniform(0.5, 1.5, 8) \
        * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))[:, None]
    muscle = rng.standard_normal((N_SAMPLES, 8)) * (rng.uniform(1.0, 5.0) * rng.uniform(0.6, 1.4, 8))
    return wander + mains + muscle


def derive_limb_leads(recorded: np.ndarray) -> np.ndarray:
    """(n, 12) leads from (n, 8) recorded I, II, V1..V6: III, aVR, aVL, aVF from I and II."""
    i, ii = recorded[:, 0], recorded[:, 1]
    limb = np.stack([i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2], axis=1)
    return np.concatenate([limb, recorded[:, 2:]], axis=1)


def _median_beat(recorded: np.ndarray, r_times: np.ndarray, r_index: int) -> np.ndarray:
    starts = np.rint(r_times * FS).astype(np.int64) - r_index
    full = (starts >= 0) & (starts + MEDIAN_LENGTH <= N_SAMPLES)
    idx = (starts[full] if full.any() else starts)[:, None] + np.arange(MEDIAN_LENGTH)
    beats = np.sort(recorded[np.clip(idx, 0, N_SAMPLES - 1)], axis=0)  # sorting few rows beats np.median
    middle = len(beats) // 2
    return beats[middle] if len(beats) % 2 else 0.5 * (beats[middle - 1] + beats[middle])


def synthesize_record(seed: int, index: int,
                      targets: Targets | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """One record: its measured Diagnostics row (without FileName) and its signal (5000, 12) in uV.

    ``targets`` None draws the record's targets from the calibrated distributions.
    """
    rng = np.random.default_rng([seed, index])
    tg = sample_targets(rng) if targets is None else targets
    pat = _patient(rng, tg)
    rr0 = 60.0 / float(np.clip(tg.rate, 25.0, 300.0))
    cal = _calibrate(pat, tg, rr0)
    sched = _schedule(rng, tg, pat, cal)
    beat, kind = sched.beat, sched.kind
    depol, repol = _dominant(pat, cal)
    rr_before = np.diff(beat, prepend=beat[0] - rr0)
    # QT follows the RR (QT = QTc * sqrt(RR)), with half of the adaptation to the mean rate.
    qt_shift = (tg.qt / 1000.0) * (np.sqrt(np.clip(0.5 * rr_before + 0.5 * rr0, 0.2, 3.0) / rr0) - 1.0)
    gain = 1.0 + 0.05 * np.sin(2 * np.pi * pat.resp_rate * beat)
    normal = kind != VPB
    parts = [depol.at(beat[normal], gain=gain[normal]),
             repol.at(beat[normal], shift=qt_shift[normal], gain=gain[normal]),
             pat.vpb.at(beat[~normal])]
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
    dipole = _render(_Waves.concat(parts), N_SAMPLES)
    if sched.atrial is not None:
        dipole += sched.atrial
    recorded = 1000.0 * (dipole @ pat.leads.T) + _noise(rng)
    leads = derive_limb_leads(recorded)

    counted = _counted(beat, cal)
    rr = np.diff(beat[counted])
    mean_rr = float(rr.mean()) if len(rr) else rr0
    rate = 60.0 / mean_rr
    r_index = QONSET_MEAN + int(np.clip(round(rng.normal(0, 4)), -12, 12)) + int(round(cal.onset * FS))
    dominant = beat[(kind == DOMINANT) | (kind == APB)]
    median = _median_beat(recorded, dominant, r_index)
    d = delineate(median, r_index, mean_rr * FS, _p_limit(dominant, sched.p_times, r_index, pat, cal))
    qt = 2 * (d.toffset - d.qonset)
    atrial_rate = sched.atrial_rate if np.isfinite(sched.atrial_rate) else rate
    row = {
        "Rhythm": tg.rhythm,
        "Beat": " ".join(sorted(tg.codes)) if tg.codes else "NONE",
        "PatientAge": int(tg.age),
        "Gender": "MALE" if tg.male else "FEMALE",
        "VentricularRate": int(round(rate)),
        "AtrialRate": int(round(atrial_rate)),
        "QRSDuration": 2 * (d.qoffset - d.qonset),
        "QTInterval": qt,
        "QTCorrected": int(round(qt / math.sqrt(mean_rr))),
        "RAxis": d.raxis,
        "TAxis": d.taxis,
        "QRSCount": int(counted.sum()),
        "QOnset": d.qonset,
        "QOffset": d.qoffset,
        "TOffset": d.toffset,
    }
    return row, leads


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _csv_template(rows: int, columns: int) -> str:
    """One %-format string for a whole table: a single formatting call is the fastest writer."""
    return "\n".join([",".join(["%.3f"] * columns)] * rows) + "\n"


def write_signal_csv(path: str | Path, leads: np.ndarray, header: bool = False) -> None:
    """Write (5000, 12) microvolts as Chapman's CSV (3 decimals), atomically."""
    text = _csv_template(*leads.shape) % tuple(leads.ravel().tolist())
    with atomic_path(path) as tmp:
        Path(tmp).write_text((",".join(CANONICAL_LEADS) + "\n" if header else "") + text)


def synthetic_file_name(seed: int, index: int) -> str:
    """A unique MUSE-style name (``MUSE_YYYYMMDD_HHMMSS_NN000``), increasing with ``index``."""
    rng = np.random.default_rng([seed, index, 1])
    when = datetime(2018, 1, 11, 7, 0, 0) + timedelta(seconds=47 * index + int(rng.integers(0, 47)))
    return f"MUSE_{when:%Y%m%d_%H%M%S}_{int(rng.integers(10, 100)):02d}000"


def _write_diagnostics(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    """One sheet, the real header; values as given (the real file stores text in the first five
    columns, PatientAge included, and integers in the others)."""
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Sheet1")
    sheet.append(list(COLUMNS))
    for row in rows:
        sheet.append(list(row))
    with atomic_path(path) as tmp:
        book.save(tmp)


def _read_diagnostics_rows(path: Path, n_records: int | None) -> tuple[list[tuple[Any, ...]], pd.DataFrame]:
    """The raw cell values of the first ``n_records`` rows (all if None) and the same rows parsed."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = tuple(str(c).strip() if c is not None else "" for c in next(rows, ()))
        if header[:len(COLUMNS)] != COLUMNS:
            raise ValueError(f"{path}: expected the columns {', '.join(COLUMNS)}; found {', '.join(header)}")
        raw = []
        for row in rows:
            if n_records is not None and len(raw) >= n_records:
                break
            if row and any(v is not None for v in row):
                raw.append(tuple(row[:len(COLUMNS)]))
    finally:
        book.close()
    table = pd.DataFrame([list(r) for r in raw], columns=list(COLUMNS))
    for column in ("PatientAge",) + ATTRIBUTE_NAMES:
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return raw, table


_Job = tuple[str, int, bool, list[tuple[int, Mapping[str, Any] | None]]]


def _generate_chunk(job: _Job) -> list[dict[str, Any]]:
    """Worker: synthesise and write the records of one chunk; return their rows."""
    out_dir, seed, header, items = job
    rows = []
    for index, source in items:
        targets = None if source is None else targets_from_row(source)
        row, leads = synthesize_record(seed, index, targets)
        name = synthetic_file_name(seed, index) if source is None else str(source["FileName"]).strip()
        write_signal_csv(Path(out_dir) / SIGNAL_DIR / f"{name}.csv", leads, header=header)
        rows.append({"FileName": name, **row})
    return rows


def generate_chapman(out_dir: str | Path, n_records: int | None, seed: int = 0,
                     diagnostics: str | Path | None = None, workers: int = 1,
                     header: bool = False) -> pd.DataFrame:
    """Write a synthetic Chapman database to ``out_dir``; return the Diagnostics table written.

    Random mode (``diagnostics`` None): ``n_records`` records drawn from the calibrated
    distributions; the attribute columns are measured on the generated signals. With
    ``diagnostics=PATH`` the first ``n_records`` rows of that Diagnostics.xlsx (all when None)
    are written back unchanged and each record's waveform is synthesised from its row. ``header``
    writes the lead names as the first CSV row. ``workers`` > 1 runs a process pool over chunks;
    the files do not depend on it.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    (out / SIGNAL_DIR).mkdir(parents=True, exist_ok=True)
    if diagnostics is None:
        if n_records is None or n_records < 1:
            raise ValueError(f"n_records must be a positive integer, got {n_records!r}")
        items: list[tuple[int, Mapping[str, Any] | None]] = [(i, None) for i in range(n_records)]
        raw, table = None, None
    else:
        raw, table = _read_diagnostics_rows(Path(diagnostics), n_records)
        items = [(i, row) for i, row in enumerate(table.to_dict("records"))]
    size = max(1, min(200, math.ceil(len(items) / (4 * workers))))
    jobs = [(str(out), seed, header, items[k:k + size]) for k in range(0, len(items), size)]
    if workers == 1 or len(jobs) == 1:
        results = [_generate_chunk(job) for job in jobs]
    else:
        # fork: workers inherit the imported modules (the package imports fairseq when present).
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(_generate_chunk, jobs))
    rows = [row for chunk in results for row in chunk]
    if raw is not None:
        _write_diagnostics(out / DIAGNOSTICS_NAME, raw)
        return table
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    as_written = [(r["FileName"], r["Rhythm"], r["Beat"], str(r["PatientAge"]), r["Gender"])
                  + tuple(int(r[c]) for c in ATTRIBUTE_NAMES) for r in rows]
    _write_diagnostics(out / DIAGNOSTICS_NAME, as_written)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python manifests/synthetic.py OUT_DIR --records N --seed S ...``."""
    parser = argparse.ArgumentParser(
        prog="manifests/synthetic.py",
        description="Write a synthetic Chapman/Shaoxing database (Diagnostics.xlsx + ECGDataDenoised/*.csv).")
    parser.add_argument("out_dir", help="output folder (created if missing)")
    parser.add_argument("--records", type=int, default=None,
                        help="number of records; with --from-diagnostics, the first N rows (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--from-diagnostics", dest="diagnostics", default=None, metavar="PATH",
                        help="synthesise one waveform per row of this Diagnostics.xlsx and keep its rows")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--header", action="store_true", help="write the lead names as the first CSV row")
    args = parser.parse_args(argv)
    if args.records is None and args.diagnostics is None:
        parser.error("--records is required unless --from-diagnostics is given")
    started = time.perf_counter()
    try:
        table = generate_chapman(args.out_dir, args.records, seed=args.seed, diagnostics=args.diagnostics,
                                 workers=args.workers, header=args.header)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    classes = table["Rhythm"].map(RHYTHM_TO_CLASS).value_counts().to_dict()
    print(f"wrote {len(table)} records to {args.out_dir} in {elapsed:.1f} s "
          f"({60.0 * len(table) / max(elapsed, 1e-9):.0f} records/min); classes {classes}")
    return 0
