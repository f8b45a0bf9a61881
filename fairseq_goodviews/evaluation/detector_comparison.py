"""Compare the R-peak detectors of the wave attributes on every real record of the shared data.

:func:`compare_detectors` reads each WFDB record under ``real/`` and ``wfdb/`` of the shared data
folder (a header whose signal files are absent is listed as skipped) and measures, with each of
:data:`~fairseq_goodviews.preprocessing.wave_attributes.R_PEAK_DETECTORS` in turn, the cleaned R
peaks and the wave attributes of its first 10 s (what the preparers store). Against:

* **device measurements**: the GE MUSE ``VentricularRate`` and ``QRSCount`` of the Chapman rows of
  ``Diagnostics.xlsx`` for the Chapman-Shaoxing records (JSn is row n, see
  :data:`~fairseq_goodviews.evaluation.validate_attributes.REAL_REFERENCES`): heart-rate error
  (median absolute error, share within :data:`RATE_WITHIN_BPM`) and beat-count error;
* **rhythm statements** that bound the rate (:data:`RATE_BOUNDS`: sinus bradycardia, sinus
  rhythm, sinus tachycardia) in the record's header (SNOMED CT codes) or PTB-XL's ``scp_codes``:
  whether the rate falls in the bounds, and by how far it misses them otherwise;
* **each other**: F1 of the R peaks of every pair of detectors, a peak matching one of the other
  detector within :data:`TOLERANCE_S`;
* **downstream**: :func:`~fairseq_goodviews.evaluation.validate_attributes.validate_real` with
  each detector, i.e. every attribute against the GE MUSE measurements;

and the CPU time each detector takes per record (the R peaks alone, and all the attributes; CPU
rather than wall-clock time, so that other processes on the machine do not count), with its
library imported beforehand.
"""

from __future__ import annotations

import ast
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.evaluation.validate_attributes import (
    REAL_DIAGNOSTICS,
    REAL_REFERENCES,
    validate_real,
)
from fairseq_goodviews.preprocessing.wave_attributes import (
    FS,
    R_PEAK_DETECTORS,
    compute_wave_attributes,
    detect_r_peaks,
    load_backend,
)
from fairseq_goodviews.preprocessing.wfdb_reader import RecordError, read_wfdb

TOLERANCE_S = 0.05
RATE_WITHIN_BPM = 5.0
#: Rate bounds (bpm) of rhythm statements: SNOMED CT codes of PhysioNet/CinC headers, PTB-XL SCP codes.
RATE_BOUNDS: dict[str, tuple[float, float]] = {
    "426177001": (0.0, 60.0),  # sinus bradycardia
    "426783006": (60.0, 100.0),  # sinus rhythm
    "427084000": (100.0, math.inf),  # sinus tachycardia
    "SBRAD": (0.0, 60.0),
    "SR": (60.0, 100.0),
    "STACH": (100.0, math.inf),
}
PTBXL_DATABASE = Path("real") / "ptbxl" / "ptbxl_database.csv"
DEVICE_ATTRIBUTES = ("VentricularRate", "QRSCount")


def peak_f1(first: np.ndarray, second: np.ndarray, tolerance: int) -> float:
    """F1 of two sorted peak lists, a peak matching at most one peak of the other list within
    ``tolerance`` samples (1.0 when both are empty)."""
    if not len(first) and not len(second):
        return 1.0
    i = j = matched = 0
    while i < len(first) and j < len(second):
        if abs(int(first[i]) - int(second[j])) <= tolerance:
            matched, i, j = matched + 1, i + 1, j + 1
        elif first[i] < second[j]:
            i += 1
        else:
            j += 1
    return 2.0 * matched / (len(first) + len(second))


def rate_bounds(statements: Sequence[str]) -> tuple[float, float] | None:
    """The rate range that all rate-bounding ``statements`` allow (None when none bounds it)."""
    bounds = [RATE_BOUNDS[s] for s in statements if s in RATE_BOUNDS]
    if not bounds:
        return None
    return max(lo for lo, _ in bounds), min(hi for _, hi in bounds)


def _ptbxl_statements(root: Path) -> dict[str, list[str]]:
    """``records500/.../00001_hr`` -> the SCP codes of its row of ptbxl_database.csv."""
    path = root / PTBXL_DATABASE
    if not path.is_file():
        return {}
    table = pd.read_csv(path, usecols=["scp_codes", "filename_hr"])
    return {row.filename_hr: list(ast.literal_eval(row.scp_codes)) for row in table.itertuples()}


def _device_values(root: Path) -> dict[str, dict[str, float]]:
    """Record name -> the GE MUSE values of :data:`DEVICE_ATTRIBUTES` of its Diagnostics.xlsx row."""
    table = pd.read_excel(root / REAL_DIAGNOSTICS).set_index("FileName")
    return {
        record: {name: float(table.at[file_name, name]) for name in DEVICE_ATTRIBUTES}
        for record, file_name in REAL_REFERENCES.items()
    }


def _timed(function: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``function(*args, **kwargs)`` and the CPU seconds of this process it took."""
    start = time.process_time()
    value = function(*args, **kwargs)
    return value, time.process_time() - start


def compare_records(data_root: str | Path, detectors: Sequence[str] = R_PEAK_DETECTORS) -> dict[str, Any]:
    """Per real record: its references and, per detector, the rate, beat count, R peaks and
    CPU seconds taken (see the module docstring). Raises ``FileNotFoundError`` without Diagnostics.xlsx
    and the detectors' option errors (an unknown one, a missing extra) before any work."""
    root = Path(data_root)
    for detector in detectors:
        load_backend(detector)
    device = _device_values(root)
    ptbxl = _ptbxl_statements(root)
    headers = sorted((root / "real").rglob("*.hea")) + sorted((root / "wfdb").glob("*.hea"))
    records: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for header in headers:
        name = header.relative_to(root).with_suffix("").as_posix()
        try:
            read = read_wfdb(header.with_suffix(""))
        except RecordError as exc:
            skipped[name] = str(exc)
            continue
        ecg = read.record
        statements = list(read.header.dx)
        if header.is_relative_to(root / PTBXL_DATABASE.parent):
            statements += ptbxl.get(header.relative_to(root / PTBXL_DATABASE.parent).with_suffix("").as_posix(), [])
        row: dict[str, Any] = {
            "record": name,
            "leads": int(np.count_nonzero(ecg.lead_present)),
            "device": device.get(header.stem, {}),
            "rate_bounds": rate_bounds(statements),
            "detectors": {},
        }
        for detector in detectors:
            peaks, detect_seconds = _timed(
                detect_r_peaks, ecg.feats, ecg.sample_rate, ecg.lead_present, detector=detector
            )
            attributes, attribute_seconds = _timed(
                compute_wave_attributes, ecg.feats, ecg.sample_rate, ecg.lead_present, detector=detector
            )
            row["detectors"][detector] = {
                "VentricularRate": attributes.values["VentricularRate"],
                "QRSCount": attributes.values["QRSCount"],
                "peaks": [] if isinstance(peaks, str) else [int(p) for p in peaks],
                "failure": peaks if isinstance(peaks, str) else None,
                "detect_cpu_seconds": detect_seconds,
                "attribute_cpu_seconds": attribute_seconds,
            }
        tolerance = round(TOLERANCE_S * FS)
        row["agreement"] = {
            f"{a}/{b}": peak_f1(
                np.asarray(row["detectors"][a]["peaks"]), np.asarray(row["detectors"][b]["peaks"]), tolerance
            )
            for a, b in itertools.combinations(detectors, 2)
        }
        records.append(row)
    return {"records": records, "skipped": skipped}


def _summary(values: list[float]) -> dict[str, float]:
    array = np.abs(np.asarray(values, dtype=float))
    if not len(array):
        return {"n": 0, "median_abs_error": math.nan, "max_abs_error": math.nan}
    return {"n": len(array), "median_abs_error": float(np.median(array)), "max_abs_error": float(array.max())}


def summarize(records: list[dict[str, Any]], detectors: Sequence[str]) -> dict[str, Any]:
    """Per detector: errors against the device and the rhythm statements, failures, CPU seconds; per
    pair of detectors: mean and lowest F1 and how many records disagree at all."""
    summary: dict[str, Any] = {"detectors": {}, "agreement": {}}
    for detector in detectors:
        rate_errors, count_errors, misses, failures = [], [], [], []
        for row in records:
            measured = row["detectors"][detector]
            rate = measured["VentricularRate"]
            if measured["failure"] is not None or not math.isfinite(rate):
                failures.append(row["record"])
                continue
            if row["device"]:
                rate_errors.append(rate - row["device"]["VentricularRate"])
                count_errors.append(measured["QRSCount"] - row["device"]["QRSCount"])
            if row["rate_bounds"] is not None:
                lo, hi = row["rate_bounds"]
                misses.append(max(lo - rate, rate - hi, 0.0))
        rate = _summary(rate_errors)
        rate["within_5_bpm"] = float(np.mean(np.abs(rate_errors) <= RATE_WITHIN_BPM)) if rate_errors else math.nan
        summary["detectors"][detector] = {
            "device_rate": rate,
            "device_count": _summary(count_errors),
            "rhythm_bounds": {
                "n": len(misses),
                "consistent": float(np.mean(np.asarray(misses) == 0.0)) if misses else math.nan,
                "max_miss_bpm": float(max(misses)) if misses else math.nan,
            },
            "failures": failures,
            "median_detect_cpu_seconds": float(
                np.median([r["detectors"][detector]["detect_cpu_seconds"] for r in records])
            ),
            "median_attribute_cpu_seconds": float(
                np.median([r["detectors"][detector]["attribute_cpu_seconds"] for r in records])
            ),
        }
    for a, b in itertools.combinations(detectors, 2):
        scores = np.asarray([row["agreement"][f"{a}/{b}"] for row in records])
        summary["agreement"][f"{a}/{b}"] = {
            "mean_f1": float(scores.mean()),
            "min_f1": float(scores.min()),
            "records_below_1": int(np.sum(scores < 1.0)),
        }
    return summary


def compare_detectors(data_root: str | Path, detectors: Sequence[str] = R_PEAK_DETECTORS) -> dict[str, Any]:
    """The JSON-ready comparison: :func:`compare_records`, :func:`summarize` and, per detector, the
    overall errors of :func:`validate_real` (the attributes against GE MUSE)."""
    compared = compare_records(data_root, detectors)
    downstream = {
        d: validate_real(data_root, ("median_beat",), d)["methods"]["median_beat"]["overall"] for d in detectors
    }
    return {
        "data_root": str(data_root),
        "tolerance_s": TOLERANCE_S,
        "summary": summarize(compared["records"], detectors),
        "downstream": downstream,
        **compared,
    }


def format_comparison(report: dict[str, Any]) -> str:
    """Plain-text tables of :func:`compare_detectors`' summary and downstream errors."""
    summary, downstream = report["summary"], report["downstream"]
    detectors = list(summary["detectors"])
    n_device = next(iter(summary["detectors"].values()))["device_rate"]["n"]
    lines = [
        f"R-peak detectors on {len(report['records'])} real records ({len(report['skipped'])} skipped: no signal)",
        f"  {'detector':<11}{'HR |err| med/max':>18}{'<=5 bpm':>9}{'count |err| med/max':>21}"
        f"{'rhythm ok':>11}{'fail':>6}{'peaks cpu ms':>14}{'attrs cpu ms':>14}",
    ]
    for detector, row in summary["detectors"].items():
        rate, count, bounds = row["device_rate"], row["device_count"], row["rhythm_bounds"]
        lines.append(
            f"  {detector:<11}{rate['median_abs_error']:>9.1f}/{rate['max_abs_error']:<8.1f}{rate['within_5_bpm']:>9.0%}"
            f"{count['median_abs_error']:>11.1f}/{count['max_abs_error']:<9.1f}"
            f"{bounds['consistent']:>7.0%} /{bounds['n']:<2}{len(row['failures']):>6}"
            f"{1000 * row['median_detect_cpu_seconds']:>14.1f}{1000 * row['median_attribute_cpu_seconds']:>14.1f}"
        )
    lines.append(f"  (HR and count against GE MUSE on {n_device} Chapman records; rhythm ok: rate within")
    lines.append("   the bounds of the record's sinus bradycardia / rhythm / tachycardia statement)")
    lines.append(f"  agreement (F1 of R peaks within {1000 * report['tolerance_s']:.0f} ms):")
    for pair, row in summary["agreement"].items():
        lines.append(
            f"    {pair:<20} mean {row['mean_f1']:.3f}  min {row['min_f1']:.3f}  records < 1: {row['records_below_1']}"
        )
    lines.append("  attributes vs GE MUSE, MAE (max):")
    names = list(next(iter(downstream.values())))
    lines.append("    " + f"{'attribute':<16}" + "".join(f"{d:>16}" for d in detectors))
    for name in names:
        cells = "".join(
            f"{downstream[d][name]['mae']:>9.1f} ({downstream[d][name]['max_abs_error']:>4.0f})" for d in detectors
        )
        lines.append(f"    {name:<16}{cells}")
    return "\n".join(lines)
