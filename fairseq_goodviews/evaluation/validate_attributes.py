"""Validate the automatic wave attributes against reference values: real device measurements and
synthetic records with known values.

* **Real**: :func:`validate_real` measures the PhysioNet/CinC 2021 Chapman-Shaoxing records
  (``chapman_shaoxing/g1/JS*.hea``) under a data folder and compares them with the GE MUSE
  device's own measurements in the matching rows of Chapman's ``Diagnostics.xlsx``
  (:data:`REAL_REFERENCES`: record JSn is row n of that file).
* **Your own device's measurements**: :func:`validate_reference` measures the WFDB records named in
  a CSV (:func:`read_reference_table`) and compares them with the measurements in it.
* **Synthetic**: :func:`validate_attributes` generates ``n_records`` synthetic Chapman records
  (:func:`~fairseq_goodviews.synthetic.chapman.generate_chapman`, whose attribute columns are the
  model's own true fiducials, not a measurement) and compares the measurements with them.

Per attribute: how many records both sides measured, how many the extractor left NaN, the mean
and median absolute error, the bias, the largest error and the fraction within
:data:`TOLERANCES`. Axis errors are circular (359 deg vs 1 deg is 2 deg). Synthetic results are
broken down by merged rhythm class as well, real and reference-table results by the reference's
rhythm label and by QRS width (below or from :data:`WIDE_QRS_MS`). ``--detector`` picks the R-peak detector the
attributes are measured from; ``--compare-detectors`` adds the comparison of all of them on every
real record (:mod:`~fairseq_goodviews.evaluation.detector_comparison`).

    goodviews-validate-attributes --records 300 \
        --real ../shared/data --reference my_cart.csv --out attr.json
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.labels import RHYTHM_TO_CLASS
from fairseq_goodviews.preprocessing.chapman import read_chapman_csv
from fairseq_goodviews.preprocessing.wave_attributes import (
    DEFAULT_R_PEAK_DETECTOR,
    compute_wave_attributes,
    load_backend,
)
from fairseq_goodviews.preprocessing.wfdb_reader import read_wfdb
from fairseq_goodviews.synthetic.chapman import DIAGNOSTICS_NAME, SIGNAL_DIR, generate_chapman

# Agreement counted as correct (units of each attribute: bpm, ms, degrees, beats, samples at 500 Hz).
TOLERANCES: dict[str, float] = {
    "VentricularRate": 2.0,
    "AtrialRate": 5.0,
    "QRSDuration": 10.0,
    "QTInterval": 20.0,
    "QTCorrected": 25.0,
    "RAxis": 15.0,
    "TAxis": 25.0,
    "QRSCount": 1.0,
    "QOnset": 5.0,
    "QOffset": 5.0,
    "TOffset": 10.0,
}
_ANGLES = ("RAxis", "TAxis")


def attribute_errors(truth: pd.DataFrame, predicted: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per-attribute error summary of ``predicted`` against ``truth`` (same rows, ATTRIBUTE_NAMES columns)."""
    summary: dict[str, dict[str, Any]] = {}
    for name in ATTRIBUTE_NAMES:
        t = truth[name].to_numpy(dtype=float)
        p = predicted[name].to_numpy(dtype=float)
        both = np.isfinite(t) & np.isfinite(p)
        error = p[both] - t[both]
        if name in _ANGLES:
            error = (error + 180.0) % 360.0 - 180.0
        absolute = np.abs(error)
        summary[name] = {
            "measured": int(both.sum()),
            "missing": int((np.isfinite(t) & ~np.isfinite(p)).sum()),
            "mae": float(absolute.mean()) if len(absolute) else math.nan,
            "median_abs_error": float(np.median(absolute)) if len(absolute) else math.nan,
            "bias": float(error.mean()) if len(error) else math.nan,
            "tolerance": TOLERANCES[name],
            "max_abs_error": float(absolute.max()) if len(absolute) else math.nan,
            "within_tolerance": float((absolute <= TOLERANCES[name]).mean()) if len(absolute) else math.nan,
        }
    return summary


# Record of the PhysioNet/CinC 2021 chapman_shaoxing subset -> FileName of its Diagnostics.xlsx row
# (facts from shared/data/real/PROVENANCE.md: JSn is row n; age, sex, rhythm and beat codes agree).
REAL_REFERENCES: dict[str, str] = {
    "JS01048": "MUSE_20180112_072617_85000",
    "JS01560": "MUSE_20180115_123751_69000",
    "JS03291": "MUSE_20180209_170043_90000",
    "JS09740": "MUSE_20180113_115326_85000",
}
REAL_RECORD_DIR = Path("real") / "physionet2021" / "training" / "chapman_shaoxing" / "g1"
REAL_DIAGNOSTICS = Path("chapman") / "Diagnostics.xlsx"


#: The user's reference CSV (:func:`read_reference_table`): the record column, the measurement
#: columns (our name first, then GE MUSE's, as in Chapman's Diagnostics.xlsx) and the rhythm column.
RECORD_COLUMN = "record"
REFERENCE_COLUMNS: dict[str, tuple[str, ...]] = {
    "VentricularRate": ("rate", "VentricularRate"),
    "QRSDuration": ("qrs_duration", "QRSDuration"),
    "QTInterval": ("qt", "QTInterval"),
    "QTCorrected": ("qtc", "QTCorrected"),
    "RAxis": ("r_axis", "RAxis"),
    "TAxis": ("t_axis", "TAxis"),
}
RHYTHM_COLUMNS = ("rhythm", "Rhythm")
WIDE_QRS_MS = 120.0  # reports group the records by a reference QRS narrower or not than this


class ReferenceTableError(GoodviewsError, ValueError):
    """A reference measurement table without a column or row the comparison reads; names the file."""


@dataclass(frozen=True)
class ReferenceTable:
    """A reference CSV read: record names, their header paths, the measurements (ATTRIBUTE_NAMES
    columns, NaN where the device gave none) and rhythm labels ("" where none)."""

    names: list[str]
    headers: list[Path]
    truth: pd.DataFrame
    rhythms: list[str]


def _reference_measurements(diagnostics: Path) -> tuple[pd.DataFrame, list[str]]:
    """The device's attributes of the reference records, one row each in :data:`REAL_REFERENCES`
    order, and their rhythm labels."""
    table = pd.read_excel(diagnostics)
    missing = [c for c in ("FileName", "Rhythm", *ATTRIBUTE_NAMES) if c not in table.columns]
    if missing:
        raise ReferenceTableError(f"{diagnostics}: the reference measurements have no column(s) {', '.join(missing)}")
    table = table.set_index("FileName")
    absent = [name for name in REAL_REFERENCES.values() if name not in table.index]
    if absent:
        raise ReferenceTableError(f"{diagnostics}: no row for the reference record(s) {', '.join(absent)}")
    rows = table.loc[list(REAL_REFERENCES.values())]
    return rows[list(ATTRIBUTE_NAMES)].reset_index(drop=True).astype(float), rows["Rhythm"].astype(str).tolist()


def validate_real(
    data_root: str | Path, methods: Sequence[str] = ("median_beat",), detector: str = DEFAULT_R_PEAK_DETECTOR
) -> dict[str, Any]:
    """Measure the real JS records under ``data_root`` (the shared data folder) with the R peaks of
    ``detector`` and compare them with the GE MUSE measurements of their Diagnostics.xlsx rows;
    raises ``FileNotFoundError`` naming the first missing file, and, before any work, what
    :func:`~fairseq_goodviews.preprocessing.wave_attributes.load_backend` raises for the options."""

    for method in methods:
        load_backend(detector, method)  # an unknown option or a missing extra fails before any work
    root = Path(data_root)
    diagnostics = root / REAL_DIAGNOSTICS
    if not diagnostics.is_file():
        raise FileNotFoundError(f"{diagnostics}: no Chapman Diagnostics.xlsx with the reference measurements")
    truth, rhythms = _reference_measurements(diagnostics)
    headers = []
    for record in REAL_REFERENCES:
        header = root / REAL_RECORD_DIR / f"{record}.hea"
        if not header.is_file():
            raise FileNotFoundError(f"{header}: reference record missing")
        headers.append(header)
    report = compare_records(list(REAL_REFERENCES), headers, truth, rhythms, methods, detector)
    return {"source": f"GE MUSE measurements in {diagnostics} for the records of {root / REAL_RECORD_DIR}"} | report


def read_reference_table(path: str | Path, records_dir: str | Path | None = None) -> ReferenceTable:
    """The user's own device measurements: a CSV with a ``record`` column (a WFDB record path or
    name, with or without ``.hea``, relative to ``records_dir``, by default the CSV's folder), any
    of the measurement columns of :data:`REFERENCE_COLUMNS` (our names or MUSE's) and optionally a
    rhythm column (:data:`RHYTHM_COLUMNS`) to group the errors by.

    An empty cell is a measurement the device did not make. Raises :class:`ReferenceTableError`,
    naming the file, for a table without a record column or any measurement column, a value that
    is not a number, or a row whose record is not there."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReferenceTableError(f"{path}: not a readable CSV table ({type(exc).__name__})") from exc
    if RECORD_COLUMN not in table.columns:
        raise ReferenceTableError(f"{path}: the reference measurements have no column {RECORD_COLUMN}")
    found = {
        name: next((c for c in aliases if c in table.columns), None) for name, aliases in REFERENCE_COLUMNS.items()
    }
    if not any(found.values()):
        wanted = ", ".join(" or ".join(aliases) for aliases in REFERENCE_COLUMNS.values())
        raise ReferenceTableError(f"{path}: the reference measurements have none of the columns {wanted}")
    truth = pd.DataFrame(np.nan, index=range(len(table)), columns=list(ATTRIBUTE_NAMES))
    for name, column in found.items():
        if column is None:
            continue
        text = table[column].str.strip()
        values = pd.to_numeric(text.where(text != ""), errors="coerce")
        bad = np.flatnonzero(values.isna() & (text != ""))
        if len(bad):
            row = int(bad[0])
            raise ReferenceTableError(f"{path}: row {row + 2}: {column} {text[row]!r} is not a number")
        truth[name] = values.to_numpy(dtype=float)
    base = Path(records_dir) if records_dir is not None else path.parent
    headers = []
    for row, record in enumerate(table[RECORD_COLUMN].str.strip()):
        header = base / (record if record.endswith(".hea") else f"{record}.hea")
        if not record or not header.is_file():
            raise ReferenceTableError(f"{path}: row {row + 2}: no WFDB record {header}")
        headers.append(header)
    rhythm_column = next((c for c in RHYTHM_COLUMNS if c in table.columns), None)
    rhythms = table[rhythm_column].str.strip().tolist() if rhythm_column else [""] * len(table)
    names = [str(r) for r in table[RECORD_COLUMN].str.strip()]
    return ReferenceTable(names=names, headers=headers, truth=truth, rhythms=rhythms)


def validate_reference(
    table: str | Path,
    records_dir: str | Path | None = None,
    methods: Sequence[str] = ("median_beat",),
    detector: str = DEFAULT_R_PEAK_DETECTOR,
) -> dict[str, Any]:
    """Measure the records of the user's reference CSV (:func:`read_reference_table`) with the R
    peaks of ``detector`` and compare them with the device measurements in it; the options fail
    before any work as in :func:`validate_real`."""
    for method in methods:
        load_backend(detector, method)
    reference = read_reference_table(table, records_dir)
    report = compare_records(reference.names, reference.headers, reference.truth, reference.rhythms, methods, detector)
    return {"source": f"device measurements in {table}"} | report


def compare_records(
    names: Sequence[str],
    headers: Sequence[Path],
    truth: pd.DataFrame,
    rhythms: Sequence[str],
    methods: Sequence[str],
    detector: str,
) -> dict[str, Any]:
    """Measure the WFDB records ``headers`` with every method and compare them with ``truth`` (one
    row each, ATTRIBUTE_NAMES columns, NaN where not measured): overall, per group
    (:func:`group_errors`) and per record."""
    records = [read_wfdb(header.with_suffix("")).record for header in headers]
    report: dict[str, Any] = {"records": list(names), "detector": detector, "methods": {}}
    for method in methods:
        predicted = pd.DataFrame(
            [
                compute_wave_attributes(r.feats, r.sample_rate, r.lead_present, method=method, detector=detector).values
                for r in records
            ],
            columns=list(ATTRIBUTE_NAMES),
        )
        report["methods"][method] = {
            "overall": attribute_errors(truth, predicted),
            "groups": group_errors(truth, predicted, rhythms),
            "per_record": {
                name: {"rhythm": rhythm}
                | {
                    attr: {"measured": float(predicted.at[k, attr]), "reference": float(truth.at[k, attr])}
                    for attr in ATTRIBUTE_NAMES
                }
                for k, (name, rhythm) in enumerate(zip(names, rhythms, strict=True))
            },
        }
    return report


def group_errors(truth: pd.DataFrame, predicted: pd.DataFrame, rhythms: Sequence[str]) -> dict[str, dict[str, Any]]:
    """:func:`attribute_errors` per rhythm label (``rhythm <label>``, where the reference has one)
    and per reference QRS width (``QRS < 120 ms``, ``QRS >= 120 ms``, where it has one)."""
    labels = pd.Series(list(rhythms), dtype=str)
    qrs = truth["QRSDuration"].to_numpy(dtype=float)
    masks = {f"rhythm {label}": (labels == label).to_numpy() for label in sorted(set(labels) - {""})}
    masks[f"QRS < {WIDE_QRS_MS:g} ms"] = qrs < WIDE_QRS_MS
    masks[f"QRS >= {WIDE_QRS_MS:g} ms"] = qrs >= WIDE_QRS_MS
    return {
        name: {"records": int(mask.sum())}
        | attribute_errors(truth[mask].reset_index(drop=True), predicted[mask].reset_index(drop=True))
        for name, mask in masks.items()
        if mask.any()
    }


def _measure(job: tuple[str, str, str]) -> dict[str, float]:
    path, method, detector = job

    microvolts = read_chapman_csv(path)
    return compute_wave_attributes(microvolts / 1000.0, 500.0, method=method, detector=detector).values


def validate_attributes(
    n_records: int = 200,
    seed: int = 0,
    workers: int = 1,
    methods: Sequence[str] = ("median_beat",),
    work_dir: str | Path | None = None,
    detector: str = DEFAULT_R_PEAK_DETECTOR,
) -> dict[str, Any]:
    """Generate, measure with the R peaks of ``detector``, compare; returns the JSON-ready report
    (see the module docstring)."""

    for method in methods:
        load_backend(detector, method)  # an unknown option or a missing extra fails before any work
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        start = time.perf_counter()
        truth = generate_chapman(tmp, n_records, seed=seed, workers=workers)
        generated = time.perf_counter() - start
        paths = [str(Path(tmp) / SIGNAL_DIR / f"{name}.csv") for name in truth["FileName"]]
        report: dict[str, Any] = {
            "records": n_records,
            "seed": seed,
            "generator_seconds": round(generated, 2),
            "source": f"synthetic {DIAGNOSTICS_NAME} (fairseq_goodviews.synthetic, true fiducials)",
            "detector": detector,
            "methods": {},
        }
        classes = truth["Rhythm"].map(RHYTHM_TO_CLASS)
        for method in methods:
            start = time.perf_counter()
            jobs = [(p, method, detector) for p in paths]
            if workers > 1:
                with ProcessPoolExecutor(workers) as pool:
                    values: list[dict[str, float]] = list(pool.map(_measure, jobs, chunksize=8))
            else:
                values = [_measure(job) for job in jobs]
            seconds = time.perf_counter() - start
            predicted = pd.DataFrame(values, columns=list(ATTRIBUTE_NAMES))
            report["methods"][method] = {
                "seconds_per_record": round(seconds / n_records * max(workers, 1), 4),
                "overall": attribute_errors(truth, predicted),
                "by_class": {
                    name: attribute_errors(
                        truth[classes == name].reset_index(drop=True),
                        predicted[(classes == name).to_numpy()].reset_index(drop=True),
                    )
                    for name in sorted(classes.dropna().unique())
                },
            }
    return report


GROUP_ATTRIBUTES = ("VentricularRate", "QRSDuration", "QTInterval")


def format_report(report: dict[str, Any], title: str) -> str:
    """A plain-text table of the overall figures of every method, headed ``title``, then, where
    the report has groups, the mean (largest) error of :data:`GROUP_ATTRIBUTES` per group."""
    lines = []
    for method, result in report["methods"].items():
        lines.append(f"{method}: {title}")
        lines.append(
            f"  {'attribute':<16}{'n':>5}{'NaN':>5}{'MAE':>9}{'median':>9}{'bias':>9}{'max':>9}{'tol':>7}{'within':>8}"
        )
        for name, row in result["overall"].items():
            if row["measured"] == 0 and row["missing"] == 0:
                continue  # the reference has no such measurement
            lines.append(
                f"  {name:<16}{row['measured']:>5}{row['missing']:>5}{row['mae']:>9.2f}"
                f"{row['median_abs_error']:>9.2f}{row['bias']:>9.2f}{row['max_abs_error']:>9.2f}"
                f"{row['tolerance']:>7g}{row['within_tolerance']:>8.1%}"
            )
        if result.get("groups"):
            lines.append(f"  {'group':<20}{'n':>4}" + "".join(f"{name:>20}" for name in GROUP_ATTRIBUTES))
            for group, rows in result["groups"].items():
                cells = "".join(
                    f"{rows[name]['mae']:>12.1f} ({rows[name]['max_abs_error']:>4.0f})" for name in GROUP_ATTRIBUTES
                )
                lines.append(f"  {group:<20}{rows['records']:>4}{cells}")
    return "\n".join(lines)
