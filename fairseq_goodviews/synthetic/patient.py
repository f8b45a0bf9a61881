"""The synthetic patient: lead geometry and the beat templates of every conduction the model draws.

:func:`draw_patient` draws a person (:class:`Patient`) for one record's targets: lead vectors
(Dower's, jittered), the dominant QRS with its conditions (bundle branch blocks, Q waves, voltage,
rotation), ST deviation, T and U waves, premature ventricular and aberrant complexes, P waves
(sinus, ectopic, retrograde) and the PR interval. Axes, widths and QT are fitted to the targets
afterwards (:mod:`fairseq_goodviews.synthetic.fiducials`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fairseq_goodviews.synthetic.dipole import Waves, direction
from fairseq_goodviews.synthetic.targets import NO_P_WAVES, Targets

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
class Patient:
    """One person's lead vectors and beat templates (see :func:`draw_patient`)."""

    leads: np.ndarray  # (8, 3): I, II, V1..V6 lead vectors
    qrs: Waves  # dominant QRS in the QRS frame (R at t = 0, main axis at frontal 0), unstretched
    st: Waves  # ST deviation, QRS frame, centre relative to the J point
    repol: Waves  # T (and U) in the T frame, centred at 0 = T-wave reference
    aberrant: Waves  # extra terminal wave of aberrantly conducted beats, QRS frame
    vpb: Waves  # premature ventricular complex and its T wave, absolute frame, R at 0
    p_sinus: Waves  # P wave of the dominant atrial rhythm, centred at 0
    p_ectopic: Waves  # P wave of premature atrial beats
    p_retro: Waves  # retrograde P wave (re-entrant tachycardia)
    retro_delay: float  # s after the QRS offset: ~0 hidden at the end of the QRS, > 0 in the ST
    pr: float  # s, P onset to QRS onset
    resp_rate: float  # Hz


def _p_wave(frontal: float, amp: float, width: float, split: float) -> Waves:
    """Right atrium (anterior) then left atrium (posterior): biphasic in V1, upright in II."""
    return Waves.of(
        [
            (-split / 2, width, width, amp * direction(frontal + 5, 35)),
            (split / 2, width * 1.1, width * 1.1, 0.9 * amp * direction(frontal - 10, -40)),
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


def draw_patient(rng: np.random.Generator, tg: Targets) -> Patient:
    """The patient's lead geometry and beat morphology; axes, widths and QT are fitted later.

    Every random number is drawn whatever the conditions, in a fixed order, so that one patient
    generator gives the same person with or without a condition (a bundle branch block appearing
    at a later visit changes the QRS, not the lead geometry or the P wave).
    """
    codes = tg.codes
    amp = _qrs_amplitude(rng, tg)
    qrs, elevation = _qrs(rng, codes, amp)
    st = _st_deviation(rng, codes, elevation)
    repol = _repolarisation(rng, tg, amp)
    vpb = _premature_ventricular(rng, amp)
    # Aberrant beats conduct with a right bundle branch block pattern (left if RBBB is already there).
    aberrant_dir = direction(0.0, elevation - 30) if "RBBB" in codes else direction(175, 45)
    p_amp, p_frontal, p_split = _p_shape(rng, tg)
    pr = _pr_interval(rng, tg)
    return Patient(
        leads=_lead_vectors(rng, codes),
        qrs=qrs,
        st=st,
        repol=repol,
        aberrant=Waves.of([(0.055, 0.018, 0.02, rng.uniform(0.5, 0.8) * amp * aberrant_dir)]),
        vpb=vpb,
        p_sinus=_p_wave(p_frontal, p_amp, 0.018, p_split),
        p_ectopic=_p_wave(_ectopic_angle(rng), p_amp, 0.017, 0.03),
        p_retro=Waves.of([(0.0, 0.016, 0.016, p_amp * 1.2 * direction(-90 + rng.normal(0, 12), 20))]),
        retro_delay=_retrograde_delay(rng, tg.rhythm),
        pr=pr,
        resp_rate=rng.uniform(0.15, 0.33),
    )


def _qrs_amplitude(rng: np.random.Generator, tg: Targets) -> float:
    """Main QRS dipole (mV): larger in men and in the young (thinner chest wall), and with LVHV."""
    amp = (
        1.7
        * math.exp(rng.normal(0.0, 0.22))
        * (1.08 if tg.male else 0.93)
        * float(np.clip(1.3 - 0.006 * tg.age, 0.75, 1.3))
    )
    hypertrophy = rng.uniform(1.7, 2.2)
    if "LVHV" in tg.codes:
        amp *= hypertrophy
    return amp


def _qrs(rng: np.random.Generator, codes: frozenset[str], amp: float) -> tuple[Waves, float]:
    """The dominant QRS (QRS frame: R at t = 0, main axis at frontal 0) and its elevation (degrees)."""
    clockwise, counterclockwise = rng.uniform(15, 30), rng.uniform(15, 30)
    elevation = (
        rng.normal(-32.0, 10.0) + (clockwise if "CCR" in codes else 0.0) - (counterclockwise if "CR" in codes else 0.0)
    )
    q_amp, q_width, q_dir = rng.uniform(0.06, 0.18), 0.008, direction(180 + rng.normal(0, 20), 45)
    deep_q_amp, deep_q_dir = rng.uniform(0.3, 0.5), direction(180 + rng.normal(0, 20), -50)
    if "AQW" in codes:  # pathological Q: >= 40 ms, deep, opposite to the main axis and posterior
        q_amp, q_width, q_dir = deep_q_amp, 0.014, deep_q_dir
    s_amp = rng.uniform(0.15, 0.45) * (1.3 if "LVHV" in codes else 1.0)
    s_frontal = 200 + rng.normal(0, 15)
    r_prime = rng.uniform(0.45, 0.7)
    if "LBBB" in codes:  # no septal q; broad notched R to the left and back; no S
        rows = [
            (-0.02, 0.017, 0.017, 0.8 * amp * direction(-15, elevation - 25)),
            (0.026, 0.018, 0.018, 0.95 * amp * direction(15, elevation - 15)),
        ]
    else:
        rows = [
            (-0.022, q_width, q_width, q_amp * amp * q_dir),
            (0.0, 0.011, 0.011, amp * direction(0.0, elevation)),
            (0.022, 0.009, 0.012, s_amp * amp * direction(s_frontal, -35)),
        ]
        if "RBBB" in codes:  # terminal right-anterior R': rSR' in V1, wide S in I and V6
            rows.append((0.045, 0.014, 0.016, r_prime * amp * direction(175, 45)))
    return Waves.of(rows), elevation


def _st_deviation(rng: np.random.Generator, codes: frozenset[str], elevation: float) -> Waves:
    """ST depression (STDD, STTC) and elevation (STTU), QRS frame, centres relative to the J point."""
    st_depression, st_elevation, st_frontal = rng.uniform(0.04, 0.1), rng.uniform(0.05, 0.12), rng.uniform(-20, 60)
    st_rows = []
    if codes & {"STDD", "STTC"}:  # ST depression opposite the main QRS vector (strain pattern)
        st_rows.append((0.035, 0.02, 0.07, st_depression * direction(180.0, -elevation)))
    if "STTU" in codes:
        st_rows.append((0.035, 0.02, 0.07, st_elevation * direction(st_frontal, 40)))
    return Waves.of(st_rows)


def _repolarisation(rng: np.random.Generator, tg: Targets, amp: float) -> Waves:
    """The T wave (and the U wave with UW) in the T frame, centred at 0 = T-wave reference."""
    codes = tg.codes
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
    t_dir = direction(0.0, t_elevation)
    repol_rows = [(0.0, t_left, t_right, t_amp * t_dir)]
    u_amp = rng.uniform(0.06, 0.12)
    if "UW" in codes:
        repol_rows.append((2 * t_right + 0.05, 0.03, 0.03, u_amp * t_dir))
    return Waves.of(repol_rows)


def _premature_ventricular(rng: np.random.Generator, amp: float) -> Waves:
    """A premature ventricular complex and its T wave, absolute frame, R at 0."""
    vpb_dir = rng.uniform(0, 360)
    vpb_el = rng.uniform(-60, 60)
    return Waves.of(
        [
            (-0.028, 0.024, 0.024, rng.uniform(1.0, 1.6) * amp * direction(vpb_dir - 25, vpb_el)),
            (0.03, 0.026, 0.026, rng.uniform(1.0, 1.6) * amp * direction(vpb_dir + 25, vpb_el)),
            (0.30, 0.07, 0.045, 0.5 * amp * direction(vpb_dir + 180, -vpb_el)),
        ]
    )


def _p_shape(rng: np.random.Generator, tg: Targets) -> tuple[float, float, float]:
    """Amplitude (mV), frontal axis (degrees) and atrial split (s) of the dominant P wave."""
    p_amp = rng.uniform(0.07, 0.14)
    p_frontal = rng.normal(55.0, 12.0)
    p_split = rng.uniform(0.035, 0.045)
    bifid_frontal, bifid_split, ectopic_frontal = rng.normal(25.0, 35.0), rng.uniform(0.05, 0.065), _ectopic_angle(rng)
    if "PWC" in tg.codes:  # bifid, wider P with an unusual axis
        p_frontal, p_split = bifid_frontal, bifid_split
    if tg.rhythm == "AT":
        p_frontal = ectopic_frontal
    return p_amp, p_frontal, p_split


def _pr_interval(rng: np.random.Generator, tg: Targets) -> float:
    """PR interval (s, P onset to QRS onset): lengthening with age, long with AV block."""
    codes = tg.codes
    pr = float(np.clip(rng.normal(0.15, 0.018) + 0.0005 * (tg.age - 50), 0.11, 0.2))
    long_pr, borderline_pr = rng.uniform(0.21, 0.32), rng.uniform(0.2, 0.23)
    if "1AVB" in codes or ("AVB" in codes and tg.rhythm not in NO_P_WAVES | {"AT"}):
        pr = long_pr
    elif "PRIE" in codes:
        pr = borderline_pr
    return pr


def _retrograde_delay(rng: np.random.Generator, rhythm: str) -> float:
    """Typical AVNRT hides the retrograde P at the end of the QRS (pseudo r'); AVRT puts it in the
    ST segment; an unspecified SVT is one or the other."""
    hidden, early, late = rng.random() < 0.6, rng.uniform(-0.01, 0.01), rng.uniform(0.06, 0.1)
    return early if rhythm == "AVNRT" or (rhythm == "SVT" and hidden) else late


def _ectopic_angle(rng: np.random.Generator) -> float:
    """Frontal P axis of an ectopic atrial focus: low atrial (superior), right or left atrial."""
    return float(rng.choice([-65.0, 110.0, 165.0]) + rng.normal(0, 15))
