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
  deviations, ST-T changes, Q waves, U waves (see
  :data:`~fairseq_goodviews.synthetic.distributions.MODELLED_CODES`).
* **Attributes: the model's own true fiducials, not a measurement.** A wave of the dipole is
  "on" while its magnitude is at least
  :data:`~fairseq_goodviews.synthetic.fiducials.FIDUCIAL_MV` (20 uV, the smallest deflection a
  reader sees on a 12-lead ECG); the QRS onset is the first instant any QRS wave (Q, R, S, R',
  in isolation from P, ST and T) is on, the QRS offset the last, and the T end the last instant
  the T wave is on (:func:`~fairseq_goodviews.synthetic.fiducials.true_fiducials`, closed-form).
  The axes are those of the net area vectors of the QRS waves and of the T wave in leads I and
  aVF of the patient's own lead vectors.
  The ventricular rate comes from the beat times, the atrial rate from the P-wave times
  (flutter: the flutter cycle; fibrillation: the f-wave cycles). The onset is placed in a
  600-sample median-beat frame near sample 219, as in the real file, so that
  ``QRSDuration = 2*(QOffset-QOnset)`` and ``QTInterval = 2*(TOffset-QOnset)`` hold exactly;
  ``QTCorrected`` is Bazett's at the mean RR. No delineation of the signal is involved, so
  comparing a delineator with these columns is not circular.

Rhythm, age, sex, ``Beat`` frequencies and the target distributions are calibrated to the real
``Diagnostics.xlsx`` (:mod:`fairseq_goodviews.synthetic.distributions`); nothing reads the real
file at run time.

The parts, one module each: :mod:`~fairseq_goodviews.synthetic.targets` (what a record should
show), :mod:`~fairseq_goodviews.synthetic.dipole` (the waves),
:mod:`~fairseq_goodviews.synthetic.patient` (lead geometry and beat templates),
:mod:`~fairseq_goodviews.synthetic.fiducials` (the fit to the targets and the true fiducials) and
:mod:`~fairseq_goodviews.synthetic.rhythm` (beat times and atrial activity); this module puts
them together into a record and adds the recording noise.

Every record is drawn from ``numpy.random.default_rng([seed, index])``, so the output depends on
the seed only, not on the number of worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fairseq_goodviews.synthetic.dipole import FS, Waves, render
from fairseq_goodviews.synthetic.fiducials import Calibration, calibrate, dominant_beat, true_fiducials
from fairseq_goodviews.synthetic.patient import Patient, draw_patient
from fairseq_goodviews.synthetic.rhythm import ABERRANT, VPB, Schedule, counted_beats, schedule
from fairseq_goodviews.synthetic.targets import RETROGRADE, Targets, sample_targets

N_SAMPLES = 5000  # Chapman's 10 s records
QONSET_MEAN = 219  # mean QOnset of the real file (std 6.4)


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
    wave attributes are the model's true fiducials
    (:func:`~fairseq_goodviews.synthetic.fiducials.true_fiducials`), not a measurement.
    ``patient_seed`` draws the person (lead geometry, amplitudes, wave shapes, PR interval) from
    its own generator, so that records with the same ``patient_seed`` are visits of one patient;
    by default the person comes from the record's generator.
    """
    if n_samples < FS:
        raise ValueError(f"n_samples must be at least {FS} (1 s), got {n_samples}")
    rng = np.random.default_rng([seed, index])
    tg = sample_targets(rng) if targets is None else targets
    pat = draw_patient(rng if patient_seed is None else np.random.default_rng(list(patient_seed)), tg)
    rr0 = 60.0 / float(np.clip(tg.rate, 25.0, 300.0))
    cal = calibrate(pat, tg, rr0)
    sched = schedule(rng, tg, pat, cal, n_samples)
    dipole = _dipole(tg, pat, cal, sched, rr0, n_samples)
    recorded = 1000.0 * (dipole @ pat.leads.T) + _noise(rng, n_samples)
    leads = derive_limb_leads(recorded)
    return _diagnostics_row(rng, tg, pat, cal, sched, rr0, n_samples), leads


def _dipole(tg: Targets, pat: Patient, cal: Calibration, sched: Schedule, rr0: float, n_samples: int) -> np.ndarray:
    """The heart's dipole over the record, (n_samples, 3) mV: every beat's waves and the atrial activity."""
    beat, kind = sched.beat, sched.kind
    depol, repol = dominant_beat(pat, cal)
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
        dominant_p = pat.p_retro if tg.rhythm in RETROGRADE else pat.p_sinus
        for p_kind, template in ((0, dominant_p), (1, pat.p_ectopic)):
            sel = sched.p_kind == p_kind
            for angle in np.unique(np.round(sched.p_angle_shift[sel], 0)):
                same = sel & (np.round(sched.p_angle_shift, 0) == angle)
                parts.append(template.rotated(float(angle)).at(sched.p_times[same]))
    dipole = render(Waves.concat(parts), n_samples)
    if sched.atrial is not None:
        dipole += sched.atrial
    return dipole


def _diagnostics_row(
    rng: np.random.Generator,
    tg: Targets,
    pat: Patient,
    cal: Calibration,
    sched: Schedule,
    rr0: float,
    n_samples: int,
) -> dict[str, Any]:
    """The record's Diagnostics row: its targets, the rates counted from its beats and atrial events,
    and its true fiducials with the QRS onset placed in the 600-sample median-beat frame."""
    beat = sched.beat
    counted = counted_beats(beat, cal, n_samples / FS)
    rr = np.diff(beat[counted])
    mean_rr = float(rr.mean()) if len(rr) else rr0
    rate = 60.0 / mean_rr
    truth = true_fiducials(pat, cal)
    q_onset = QONSET_MEAN + int(np.clip(round(rng.normal(0, 4)), -12, 12))
    q_offset = q_onset + round((truth.qrs_offset - truth.qrs_onset) * FS)
    t_offset = q_onset + round((truth.t_end - truth.qrs_onset) * FS)
    qt = 2 * (t_offset - q_onset)
    atrial_rate = sched.atrial_rate if np.isfinite(sched.atrial_rate) else rate
    return {
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
