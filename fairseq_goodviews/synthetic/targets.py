"""What a synthetic record should show (:class:`Targets`): drawn from the calibrated distributions
(:mod:`fairseq_goodviews.synthetic.distributions`) or read from a row of a ``Diagnostics.xlsx``.

Targets are the record's rhythm, its ``Beat`` conditions (see
:data:`~fairseq_goodviews.synthetic.distributions.MODELLED_CODES`), the patient's age and sex, and
the ventricular rate, QRS duration, QT and axes its waveform is fitted to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.labels import RHYTHM_TO_CLASS
from fairseq_goodviews.synthetic.distributions import (
    AGE_Q,
    CODE_COUNTS,
    CODE_Q,
    MALE_FRACTION,
    QRSD_Q,
    QTC_Q,
    RATE_Q,
    RAXIS_AGE_SLOPE,
    RAXIS_Q,
    RHYTHM_COUNTS,
    RHYTHMS,
    T_PRECEDENCE,
    TDELTA_Q,
    draw,
)

# At most one code of each group is drawn (the first one listed wins).
_EXCLUSIVE = (
    ("LBBB", "RBBB", "IVB"),
    ("LFBBB", "ALS", "ARS"),
    ("CCR", "CR"),
    ("AVB", "1AVB", "PRIE"),
    ("LVHV", "LVQRSCL"),
    ("LVHV", "LVQRSLL"),
)
#: Rhythms without P waves: fibrillation and flutter (their atrial activity is a continuous wave).
NO_P_WAVES = frozenset({"AFIB", "AF"})
#: Re-entrant tachycardias: a retrograde P wave follows each QRS.
RETROGRADE = frozenset({"SVT", "AVNRT", "AVRT"})


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
    age = round(draw(rng, AGE_Q[rhythm]))
    rate = draw(rng, RATE_Q[rhythm])
    codes = _sample_codes(rng, rhythm)
    if rhythm == "AF" and "AVB" in codes:  # flutter with AV block: at most 2:1 of ~360/min
        rate = min(rate, 180.0)
    conduction = next((c for c in ("LBBB", "RBBB", "IVB", "LFBBB") if c in codes), None)
    qrsd = draw(rng, CODE_Q[(conduction, "QRSDuration")] if conduction else QRSD_Q[(cls, male)])
    qtc = draw(rng, CODE_Q[("QTIE", "QTCorrected")] if "QTIE" in codes else QTC_Q[(cls, male)])
    # The extreme tails of the real file are mostly measurement failures of the cart.
    qrsd, qtc = float(np.clip(qrsd, 60.0, 200.0)), float(np.clip(qtc, 350.0, 650.0))
    axis_code = next((c for c in ("LFBBB", "ALS", "ARS") if c in codes), None)
    if axis_code:
        raxis = draw(rng, CODE_Q[(axis_code, "RAxis")])
    else:
        raxis = draw(rng, RAXIS_Q[cls]) + RAXIS_AGE_SLOPE * (age - 60)
    t_code = next((c for c in T_PRECEDENCE if c in codes), cls)
    taxis = raxis + draw(rng, TDELTA_Q[t_code])
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
