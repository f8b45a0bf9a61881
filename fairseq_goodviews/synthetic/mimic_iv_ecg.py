"""A synthetic MIMIC-IV-ECG: the release's layout, several studies per subject, cart measurements
taken from the model's true fiducials.

:func:`generate_mimic_iv_ecg` writes what the release contains, on the dipole model of
:mod:`fairseq_goodviews.synthetic.ecg`::

    OUT/record_list.csv                  subject_id, study_id, file_name, ecg_time, path
    OUT/machine_measurements.csv         subject_id, study_id, cart_id, ecg_time, report_0..report_17,
                                         bandwidth, filtering, rr_interval, p_onset, p_end,
                                         qrs_onset, qrs_end, t_end, p_axis, qrs_axis, t_axis
    OUT/waveform_note_links.csv          subject_id, study_id, waveform_path, note_id, note_seq, charttime
    OUT/files/pNNNN/pSUBJECT/sSTUDY/STUDY.{hea,dat}
                                         12 leads in the release's order (aVF before aVL), 500 Hz,
                                         format 16 at 200 adu/mV, a ``# <subject_id>: N`` comment

Subjects and studies:

* **Subjects** are persistent persons (generator ``[seed, subject, 1]`` draws the lead geometry,
  amplitudes and wave shapes of every study) with a baseline rhythm, conditions, QRS width,
  QTc and axes drawn from the calibrated distributions (``[seed, subject, 0]``).
* **Studies** (``[seed, subject, 2 + visit]``): the rate moves by about 8 % (not in atrial
  flutter, whose conduction ratio sets it), the axes by a few degrees, QT follows the rate at the
  subject's QTc; the noise is new.
* **Cart measurements** are the model's true fiducials
  (:func:`~fairseq_goodviews.synthetic.fiducials.true_fiducials`) in the cart's columns: QRS
  onset and end and T end in ms of the 1.2 s median-beat frame (twice the 500 Hz sample
  positions of the Diagnostics row), ``rr_interval`` = 60000 / the ventricular rate, the QRS and
  T axes. P-wave times (onset 160 ms and end 50 ms before the QRS onset) and the P axis (60
  degrees) are nominal: the model does not report them; rhythms without P waves (atrial
  fibrillation, flutter) get the cart's sentinel 29999 there. Sentinels are also written where a
  cart fails to measure: T end in every fifth study (index 3, 8, ...), both QRS and T axes in
  every seventh (index 4, 11, ...); and every ninth study (index 8, 17, ...) has no
  measurement row at all, as the release has fewer measurement rows than records.
* **Notes**: every other study links to a note (``<subject>-EK-<seq>``).

:func:`generate_mimic_iv_ecg` returns the truth per study (the Diagnostics row's attributes). Every
file is a function of ``seed`` alone.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.synthetic.dipole import FS
from fairseq_goodviews.synthetic.ecg import synthesize_record
from fairseq_goodviews.synthetic.jobs import check_multi_visit, check_workers, run_jobs, visit_chunks
from fairseq_goodviews.synthetic.targets import NO_P_WAVES, sample_targets
from fairseq_goodviews.synthetic.wfdb_layouts import write_wfdb

RECORD_LIST = "record_list.csv"
MEASUREMENTS = "machine_measurements.csv"
NOTE_LINKS = "waveform_note_links.csv"
#: The release's channel order: aVF before aVL.
LEAD_NAMES = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
ADU_PER_MV = 200.0
NOT_MEASURED = 29999
FIRST_SUBJECT = 10_000_032
FIRST_STUDY = 40_000_017
REPORT_LINES = 18
RHYTHM_PHRASES = {
    "SR": "Sinus rhythm",
    "SB": "Sinus bradycardia",
    "ST": "Sinus tachycardia",
    "SA": "Sinus arrhythmia",
    "AFIB": "Atrial fibrillation",
    "AF": "Atrial flutter",
    "SVT": "Supraventricular tachycardia",
    "AT": "Atrial tachycardia",
}
CONDITION_PHRASES = {
    "RBBB": "Right bundle branch block",
    "LBBB": "Left bundle branch block",
    "1AVB": "1st degree A-V block",
    "VPB": "Ventricular premature complexes",
    "APB": "Atrial premature complexes",
    "LVHV": "Left ventricular hypertrophy",
}
_P_ONSET_BEFORE_QRS_MS = 160
_P_END_BEFORE_QRS_MS = 50
_P_AXIS = 60


def record_path(subject: int, study: int) -> str:
    """``files/p1000/p10000032/s40689238/40689238``: the release's path of a study's record."""
    return f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"


def cart_row(row: dict[str, Any], rhythm: str, index: int) -> dict[str, float]:
    """The cart's measurement columns of a study from its Diagnostics ``row`` (see the module docstring)."""
    qrs_onset = 2 * row["QOnset"]
    has_p = rhythm not in NO_P_WAVES
    values = {
        "rr_interval": round(60000.0 / row["VentricularRate"]),
        "p_onset": qrs_onset - _P_ONSET_BEFORE_QRS_MS if has_p else NOT_MEASURED,
        "p_end": qrs_onset - _P_END_BEFORE_QRS_MS if has_p else NOT_MEASURED,
        "qrs_onset": qrs_onset,
        "qrs_end": 2 * row["QOffset"],
        "t_end": NOT_MEASURED if index % 5 == 3 else 2 * row["TOffset"],
        "p_axis": _P_AXIS if has_p else NOT_MEASURED,
        "qrs_axis": round(row["RAxis"]),
        "t_axis": round(row["TAxis"]),
    }
    if index % 7 == 4:
        values["qrs_axis"] = values["t_axis"] = NOT_MEASURED
    return values


def report_lines(rhythm: str, codes: frozenset[str]) -> list[str]:
    """The machine report of a study: its rhythm, its conditions, then Normal/Abnormal ECG."""
    lines = [RHYTHM_PHRASES.get(rhythm, f"Rhythm {rhythm}")]
    lines += [CONDITION_PHRASES.get(code, code) for code in sorted(codes)]
    lines.append("Abnormal ECG" if codes or rhythm not in ("SR", "SB", "ST", "SA") else "Normal ECG")
    return lines if len(lines) <= REPORT_LINES else lines[: REPORT_LINES - 1] + lines[-1:]


def _generate_subjects(job: tuple[str, int, list[tuple[int, int, int]], float]) -> list[tuple[str, dict]]:
    """Write the studies of the subjects of ``job`` (each with the index of its first study and its
    number of studies); their rows, each as (table, row) with table one of ``records``,
    ``measurements``, ``notes`` and ``truth``."""
    out_dir, seed, subjects, seconds = job
    out = Path(out_dir)
    rows: list[tuple[str, dict]] = []
    for patient, first_index, n_visits in subjects:
        subject = FIRST_SUBJECT + 97 * patient
        base = sample_targets(np.random.default_rng([seed, patient, 0]))
        when = datetime(2180, 1, 1, 8, 0) + timedelta(days=int(patient * 37 % 365))
        qtc = base.qt / math.sqrt(60.0 / base.rate)
        for visit in range(n_visits):
            index = first_index + visit
            rng = np.random.default_rng([seed, patient, 2 + visit])
            rate = base.rate if base.rhythm == "AF" else base.rate * math.exp(rng.normal(0.0, 0.08))
            targets = dataclasses.replace(
                base,
                rate=rate,
                qt=qtc * math.sqrt(60.0 / rate),
                raxis=base.raxis + rng.normal(0.0, 4.0),
                taxis=base.taxis + rng.normal(0.0, 6.0),
            )
            row, microvolts = synthesize_record(
                seed, 200_000 + index, targets, n_samples=round(seconds * FS), patient_seed=(seed, patient, 1)
            )
            study = FIRST_STUDY + 7919 * index
            path = record_path(subject, study)
            signal = (microvolts.T / 1000.0)[[CANONICAL_LEADS.index(name) for name in LEAD_NAMES]]
            write_wfdb(
                out / path, signal, float(FS), LEAD_NAMES, comments=[f"<subject_id>: {subject}"], gain=ADU_PER_MV
            )
            if visit:
                when += timedelta(days=int(rng.integers(1, 400)), minutes=int(rng.integers(0, 600)))
            ecg_time = f"{when:%Y-%m-%d %H:%M:%S}"
            ids = {"subject_id": subject, "study_id": study}
            rows.append(("records", {**ids, "file_name": study, "ecg_time": ecg_time, "path": path}))
            measured = index % 9 != 8
            if measured:
                lines = report_lines(targets.rhythm, targets.codes)
                reports = {f"report_{k}": lines[k] if k < len(lines) else "" for k in range(REPORT_LINES)}
                cart = {
                    **ids,
                    "cart_id": 6_848_296 + patient % 3,
                    "ecg_time": ecg_time,
                    **reports,
                    "bandwidth": "0.005-150 Hz",
                    "filtering": "60 Hz notch Baseline filter",
                    **cart_row(row, targets.rhythm, index),
                }
                rows.append(("measurements", cart))
            if index % 2 == 0:
                seq = index // 2 + 1
                note = {"waveform_path": path, "note_id": f"{subject}-EK-{seq}", "note_seq": seq, "charttime": ecg_time}
                rows.append(("notes", {**ids, **note}))
            rows.append(("truth", {**ids, "path": path, "rhythm": targets.rhythm, "measured": measured, **row}))
    return rows


def generate_mimic_iv_ecg(
    out_dir: str | Path,
    n_subjects: int,
    *,
    visits: tuple[int, int] = (1, 3),
    seed: int = 0,
    seconds: float = 10.0,
    workers: int = 1,
) -> pd.DataFrame:
    """Write a synthetic MIMIC-IV-ECG folder to ``out_dir``; return the truth per study.

    Each subject has between ``visits[0]`` and ``visits[1]`` studies (inclusive) of ``seconds`` s.
    ``workers`` > 1 writes the subjects' records in a process pool; the files do not depend on it.
    The returned table has ``subject_id``, ``study_id``, ``path``, ``rhythm``, ``measured`` (whether
    the study has a measurement row) and the true attributes of the Diagnostics row.
    """
    check_multi_visit("n_subjects", n_subjects, visits, seconds)
    check_workers(workers)
    out = Path(out_dir)
    jobs = [(str(out), seed, chunk, seconds) for chunk in visit_chunks(seed, n_subjects, visits, 0, workers)]
    tables: dict[str, list[dict]] = {"records": [], "measurements": [], "notes": [], "truth": []}
    for table, row in run_jobs(_generate_subjects, jobs, workers):
        tables[table].append(row)
    for name, table in ((RECORD_LIST, "records"), (MEASUREMENTS, "measurements"), (NOTE_LINKS, "notes")):
        with atomic_open(out / name, newline="") as handle:
            pd.DataFrame(tables[table]).to_csv(handle, index=False)
    return pd.DataFrame(tables["truth"])
