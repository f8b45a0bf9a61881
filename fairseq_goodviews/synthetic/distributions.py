"""The synthetic model's calibration: distributions of the real Chapman ``Diagnostics.xlsx``.

Computed once from the real file (10,646 rows; ``shared/data/chapman/Diagnostics.xlsx``); nothing
reads the real file at run time. Distributions are stored as quantiles at :data:`QUANTILE_LEVELS`
and sampled by inverse-CDF interpolation (:func:`draw`). The per-rhythm condition counts
(:data:`CODE_COUNTS`) are package data, ``data/code_counts.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources

import numpy as np

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


def _load_code_counts() -> dict[str, tuple[int, dict[str, int]]]:
    """``data/code_counts.json``: per rhythm, ``none`` (records with none of the modelled codes)
    and ``codes`` ({code: records carrying it})."""
    text = resources.files(__package__).joinpath("data", "code_counts.json").read_text(encoding="utf-8")
    return {rhythm: (entry["none"], entry["codes"]) for rhythm, entry in json.loads(text).items()}


# Per rhythm: (records with none of the modelled codes, {code: records carrying it}).
CODE_COUNTS: dict[str, tuple[int, dict[str, int]]] = _load_code_counts()

RHYTHMS: tuple[str, ...] = tuple(RHYTHM_COUNTS)
# Conditions that change the synthetic waveform. Codes of a given Diagnostics.xlsx outside this
# set are kept in its Beat column but do not change the signal.
MODELLED_CODES: frozenset[str] = frozenset(c for _, counts in CODE_COUNTS.values() for c in counts)


def draw(rng: np.random.Generator, knots: Sequence[float]) -> float:
    """One value of the distribution whose quantiles at :data:`QUANTILE_LEVELS` are ``knots``."""
    return float(np.interp(rng.random(), QUANTILE_LEVELS, knots))
