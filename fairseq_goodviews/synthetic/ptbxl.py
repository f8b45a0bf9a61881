"""A synthetic multi-visit PTB-XL: several ECGs per patient, statements that agree with the waveform.

:func:`generate_ptbxl` writes what a PTB-XL download contains, on the dipole model of
:mod:`fairseq_goodviews.synthetic.ecg`::

    OUT/ptbxl_database.csv                  ecg_id, patient_id, age, sex (0 male, 1 female), height,
                                            weight, recording_date, scp_codes, strat_fold,
                                            filename_lr, filename_hr
    OUT/scp_statements.csv                  the statements used, with PTB-XL's published flags and
                                            diagnostic class/subclass
    OUT/records500/<NNNNN>/<ecg_id>_hr.*    500 Hz WFDB records (12 leads, mV)
    OUT/records100/<NNNNN>/<ecg_id>_lr.*    the same records at 100 Hz

Patients and visits:

* **Persistent traits.** Each patient is one generator (``[seed, patient, 0]``): sex, age at the
  first visit, the person of the model (lead geometry, amplitudes, wave shapes, PR interval,
  drawn from ``[seed, patient, 1]`` for every visit), the QRS width, QTc and the QRS and T axes,
  and a baseline rhythm and set of conditions.
* **Visit-to-visit variation** (generator ``[seed, patient, 2 + visit]``): months to years pass
  between visits (age), the rate is drawn anew for the visit's rhythm (sinus patients may be
  bradycardic or tachycardic at a visit; patients with atrial fibrillation are sometimes in sinus
  rhythm, as in paroxysmal fibrillation), axes and QTc move by a few units, noise is new, and a
  condition can appear (bundle branch block, AV block, ectopic beats, hypertrophy, ST-T changes)
  and stays at later visits.
* **Statements agree with the waveform.** ``scp_codes`` is derived from what was synthesised: the
  rhythm statement of the visit's rhythm (likelihood 0, as PTB-XL gives rhythm statements), one
  statement per condition (:data:`CONDITION_STATEMENTS`; a right bundle branch block is complete,
  ``CRBBB``, when its true QRS duration is at least 120 ms, else ``IRBBB``), and ``NORM`` (100)
  when no diagnostic statement applies. A condition the visit's rhythm cannot show (first-degree
  AV block or atrial premature beats in atrial fibrillation or flutter) is neither synthesised
  nor stated at that visit.
* **Folds** are patient-wise, as the published ``strat_fold``: all visits of a patient share one.

Every file is a function of ``seed`` alone.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.io.signal import resample
from fairseq_goodviews.synthetic.dipole import FS
from fairseq_goodviews.synthetic.distributions import CODE_Q, RATE_Q, draw
from fairseq_goodviews.synthetic.ecg import synthesize_record
from fairseq_goodviews.synthetic.jobs import check_multi_visit, check_workers, run_jobs, visit_chunks
from fairseq_goodviews.synthetic.targets import Targets, sample_targets
from fairseq_goodviews.synthetic.wfdb_layouts import write_wfdb

DATABASE = "ptbxl_database.csv"
STATEMENTS = "scp_statements.csv"
LEAD_NAMES = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
# Chapman rhythm of the model -> PTB-XL rhythm statement.
RHYTHM_STATEMENTS = {"SR": "SR", "SB": "SBRAD", "ST": "STACH", "SA": "SARRH", "AFIB": "AFIB", "AF": "AFLT"}
# Condition of the model -> PTB-XL statement (RBBB is resolved by the QRS width, see the docstring).
CONDITION_STATEMENTS = {
    "LBBB": "CLBBB",
    "IVB": "IVCD",
    "LFBBB": "LAFB",
    "1AVB": "1AVB",
    "LVHV": "LVH",
    "QTIE": "LNGQT",
    "STTC": "NST_",
    "STDD": "STD_",
    "TWC": "LOWT",
    "TWO": "INVT",
    "VPB": "PVC",
    "APB": "PAC",
    "AQW": "QWAVE",
    "LVQRSCL": "LVOLT",
    "LVQRSLL": "LVOLT",
}
# PTB-XL's scp_statements.csv facts for the statements written: description, diagnostic, form,
# rhythm, diagnostic_class, diagnostic_subclass, Statement Category.
_STATEMENT_TABLE = {
    "NORM": ("normal ECG", 1.0, None, None, "NORM", "NORM", "Normal/abnormal"),
    "CRBBB": (
        "complete right bundle branch block",
        1.0,
        None,
        None,
        "CD",
        "CRBBB",
        "Intraventricular and intra-atrial Conduction disturbances",
    ),
    "IRBBB": (
        "incomplete right bundle branch block",
        1.0,
        None,
        None,
        "CD",
        "IRBBB",
        "Intraventricular and intra-atrial Conduction disturbances",
    ),
    "CLBBB": (
        "complete left bundle branch block",
        1.0,
        None,
        None,
        "CD",
        "CLBBB",
        "Intraventricular and intra-atrial Conduction disturbances",
    ),
    "IVCD": (
        "non-specific intraventricular conduction disturbance (block)",
        1.0,
        None,
        None,
        "CD",
        "IVCD",
        "Intraventricular and intra-atrial Conduction disturbances",
    ),
    "LAFB": (
        "left anterior fascicular block",
        1.0,
        None,
        None,
        "CD",
        "LAFB/LPFB",
        "Intraventricular and intra-atrial Conduction disturbances",
    ),
    "1AVB": (
        "first degree AV block",
        1.0,
        None,
        None,
        "CD",
        "_AVB",
        "Sinus node dysfunction, atrial and AV-conduction defects",
    ),
    "LVH": ("left ventricular hypertrophy", 1.0, None, None, "HYP", "LVH", "Ventricular Hypertrophy"),
    "LNGQT": ("long QT-interval", 1.0, 1.0, None, "STTC", "STTC", "other ST-T descriptive statements"),
    "NST_": (
        "non-specific ST changes",
        1.0,
        1.0,
        None,
        "STTC",
        "NST_",
        "Basic roots for coding ST-T changes and abnormalities",
    ),
    "STD_": (
        "non-specific ST depression",
        None,
        1.0,
        None,
        None,
        None,
        "Basic roots for coding ST-T changes and abnormalities",
    ),
    "LOWT": ("low amplitude T-waves", None, 1.0, None, None, None, "other ST-T descriptive statements"),
    "INVT": ("inverted T-waves", None, 1.0, None, None, None, "other ST-T descriptive statements"),
    "PVC": (
        "ventricular premature complex",
        None,
        1.0,
        None,
        None,
        None,
        "Statements related to ectopic rhythm abnormalities",
    ),
    "PAC": (
        "atrial premature complex",
        None,
        1.0,
        None,
        None,
        None,
        "Statements related to ectopic rhythm abnormalities",
    ),
    "QWAVE": ("Q waves present", None, 1.0, None, None, None, "Other QRS morphology descriptive statements"),
    "LVOLT": (
        "low QRS voltages in the frontal and horizontal leads",
        None,
        1.0,
        None,
        None,
        None,
        "Other QRS morphology descriptive statements",
    ),
    "SR": ("sinus rhythm", None, None, 1.0, None, None, "Statements related to impulse formation (abnormalities)"),
    "SBRAD": (
        "sinus bradycardia",
        None,
        None,
        1.0,
        None,
        None,
        "Statements related to impulse formation (abnormalities)",
    ),
    "STACH": (
        "sinus tachycardia",
        None,
        None,
        1.0,
        None,
        None,
        "Statements related to impulse formation (abnormalities)",
    ),
    "SARRH": (
        "sinus arrhythmia",
        None,
        None,
        1.0,
        None,
        None,
        "Statements related to impulse formation (abnormalities)",
    ),
    "AFIB": (
        "atrial fibrillation",
        None,
        None,
        1.0,
        None,
        None,
        "Statements related to impulse formation (abnormalities)",
    ),
    "AFLT": ("atrial flutter", None, None, 1.0, None, None, "Statements related to impulse formation (abnormalities)"),
}
_STATEMENT_COLUMNS = (
    "description",
    "diagnostic",
    "form",
    "rhythm",
    "diagnostic_class",
    "diagnostic_subclass",
    "Statement Category",
)
# Conditions a later visit can acquire (they persist afterwards).
_NEW_CONDITIONS = ("RBBB", "LBBB", "1AVB", "VPB", "APB", "LVHV", "STTC", "TWC")
_SINUS = ("SR", "SB", "ST", "SA")
_WIDE = ("LBBB", "RBBB", "IVB", "LFBBB")


def _patient_plan(seed: int, patient: int) -> tuple[Targets, int]:
    """The patient's baseline targets (only modelled, labelled conditions; rhythm in
    :data:`RHYTHM_STATEMENTS`; a QRS below 115 ms unless a conduction condition widens it) and the number of days between the first visit and 1 Jan 1990."""
    rng = np.random.default_rng([seed, patient, 0])
    while True:
        base = sample_targets(rng)
        if base.rhythm in RHYTHM_STATEMENTS:
            break
    codes = frozenset(c for c in base.codes if c in CONDITION_STATEMENTS or c == "RBBB")
    # Without a conduction statement the QRS stays below 115 ms (PTB-XL would name a wider one).
    qrsd = base.qrsd if any(c in _WIDE for c in codes) else min(base.qrsd, 114.0)
    base = Targets(
        base.rhythm, codes, int(np.clip(base.age, 18, 85)), base.male, base.rate, qrsd, base.qt, base.raxis, base.taxis
    )
    return base, int(rng.integers(0, 365 * 10))


def _visit_targets(rng: np.random.Generator, base: Targets, codes: frozenset[str], age: int, qrsd: float) -> Targets:
    """One visit of a patient: its rhythm and rate, the patient's traits (QRS width ``qrsd``, QTc,
    axes) moved a little."""
    rhythm = base.rhythm
    if rhythm in _SINUS and rng.random() < 0.35:
        rhythm = str(rng.choice(_SINUS, p=[0.55, 0.2, 0.2, 0.05]))
    elif rhythm in ("AFIB", "AF") and rng.random() < 0.3:
        rhythm = "SR"  # paroxysmal: in sinus rhythm at this visit
    rate = draw(rng, RATE_Q[rhythm])
    if rhythm in ("SB", "SR", "ST"):  # keep the rate inside the rhythm's definition
        rate = float(np.clip(rate, *{"SB": (38, 58), "SR": (61, 99), "ST": (102, 160)}[rhythm]))
    qtc = base.qt / math.sqrt(60.0 / base.rate) + rng.normal(0.0, 8.0)
    return Targets(
        rhythm=rhythm,
        codes=codes,
        age=age,
        male=base.male,
        rate=rate,
        qrsd=qrsd + rng.normal(0.0, 2.0),
        qt=qtc * math.sqrt(60.0 / rate),
        raxis=base.raxis + rng.normal(0.0, 4.0),
        taxis=base.taxis + rng.normal(0.0, 6.0),
    )


def scp_statements(rhythm: str, codes: frozenset[str], qrs_duration: float) -> dict[str, float]:
    """The PTB-XL statements (likelihoods) of a synthesised visit: see the module docstring."""
    statements: dict[str, float] = {}
    for code in sorted(codes):
        if code == "RBBB":
            statements["CRBBB" if qrs_duration >= 120 else "IRBBB"] = 100.0
        elif code in CONDITION_STATEMENTS:
            name = CONDITION_STATEMENTS[code]
            diagnostic = _STATEMENT_TABLE[name][1] == 1.0
            statements[name] = 100.0 if diagnostic else 0.0
    if not any(_STATEMENT_TABLE[s][1] == 1.0 for s in statements):
        statements = {"NORM": 100.0, **statements}
    statements[RHYTHM_STATEMENTS[rhythm]] = 0.0
    return statements


def _write_table(path: Path, table: pd.DataFrame, index: bool = False) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=index)


def _generate_patients(job: tuple[str, int, list[tuple[int, int, int]], float, np.ndarray]) -> list[dict]:
    """Write the ECGs of the patients of ``job`` (each with its first ``ecg_id`` and its number of
    ECGs); their table rows."""
    out_dir, seed, patients, seconds, folds = job
    out = Path(out_dir)
    rows = []
    for patient, first_id, n_visits in patients:
        base, first_day = _patient_plan(seed, patient)
        codes, day, qrsd = base.codes, first_day, base.qrsd
        for visit in range(n_visits):
            visit_rng = np.random.default_rng([seed, patient, 2 + visit])
            if visit:
                day += int(visit_rng.integers(30, 3 * 365))
                if visit_rng.random() < 0.3:
                    new = str(visit_rng.choice(_NEW_CONDITIONS))
                    if new in _WIDE and not any(c in _WIDE for c in codes):  # the QRS widens for good
                        qrsd = float(np.clip(draw(visit_rng, CODE_Q[(new, "QRSDuration")]), 100.0, 190.0))
                        codes = codes | {new}
                    elif new not in _WIDE:
                        codes = codes | {new}
            age = base.age + day // 365 - first_day // 365
            targets = _visit_targets(visit_rng, base, codes, age, qrsd)
            if targets.rhythm in ("AFIB", "AF"):  # no P waves: no PR interval, no atrial premature beat
                targets = dataclasses.replace(targets, codes=targets.codes - {"1AVB", "APB"})
            ecg_id = first_id + visit
            row, microvolts = synthesize_record(
                seed, 100_000 + ecg_id, targets, n_samples=round(seconds * FS), patient_seed=(seed, patient, 1)
            )
            signal = microvolts.T / 1000.0
            folder = f"{ecg_id // 1000 * 1000:05d}"
            hr, lr = f"records500/{folder}/{ecg_id:05d}_hr", f"records100/{folder}/{ecg_id:05d}_lr"
            write_wfdb(out / hr, signal, float(FS), LEAD_NAMES)
            write_wfdb(out / lr, resample(signal, float(FS), 100.0), 100.0, LEAD_NAMES)
            when = datetime(1990, 1, 1, 8, 0) + timedelta(days=day, minutes=int(visit_rng.integers(0, 600)))
            rows.append(
                {
                    "ecg_id": ecg_id,
                    "patient_id": float(10_000 + patient),
                    "age": float(age),
                    "sex": 0 if base.male else 1,
                    "height": np.nan,
                    "weight": np.nan,
                    "recording_date": f"{when:%Y-%m-%d %H:%M:%S}",
                    "scp_codes": repr(scp_statements(targets.rhythm, targets.codes, row["QRSDuration"])),
                    "strat_fold": int(folds[patient]),
                    "filename_lr": lr,
                    "filename_hr": hr,
                }
            )
    return rows


def generate_ptbxl(
    out_dir: str | Path,
    n_patients: int,
    *,
    visits: tuple[int, int] = (1, 4),
    seed: int = 0,
    seconds: float = 10.0,
    workers: int = 1,
) -> pd.DataFrame:
    """Write a synthetic multi-visit PTB-XL folder to ``out_dir``; return the database table.

    Each patient has between ``visits[0]`` and ``visits[1]`` ECGs (inclusive) of ``seconds`` s.
    ``workers`` > 1 writes the patients' records in a process pool; the files do not depend on it.
    """
    check_multi_visit("n_patients", n_patients, visits, seconds)
    check_workers(workers)
    out = Path(out_dir)
    folds = np.random.default_rng([seed, 10]).permutation(n_patients) % 10 + 1
    jobs = [(str(out), seed, chunk, seconds, folds) for chunk in visit_chunks(seed, n_patients, visits, 1, workers)]
    rows = run_jobs(_generate_patients, jobs, workers)
    table = pd.DataFrame(rows)
    used = sorted({name for text in table["scp_codes"] for name in ast.literal_eval(text)})
    statements = pd.DataFrame([_STATEMENT_TABLE[name] for name in used], index=used, columns=list(_STATEMENT_COLUMNS))
    _write_table(out / STATEMENTS, statements, index=True)
    _write_table(out / DATABASE, table)
    return table
