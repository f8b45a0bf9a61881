"""Validate the automatic wave attributes against synthetic records with known values.

:func:`validate_attributes` generates ``n_records`` synthetic Chapman records
(:func:`~fairseq_goodviews.preprocessing.synthetic.generate_chapman`, whose attribute columns are
measured on the generated signal the way MUSE reports them), runs
:func:`~fairseq_goodviews.preprocessing.wave_attributes.compute_wave_attributes` on each signal
and reports, per attribute: how many records both sides measured, how many the extractor left NaN,
the mean and median absolute error and the fraction within :data:`TOLERANCES`. Axis errors are
circular (359 deg vs 1 deg is 2 deg). Results are broken down by merged rhythm class as well,
since atrial fibrillation and flutter have no P-wave atrial rate to measure.

    python -m fairseq_goodviews.preprocessing.validate_attributes --records 300 --out attr.json
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.labels import RHYTHM_TO_CLASS
from fairseq_goodviews.preprocessing.wave_attributes import METHODS, compute_wave_attributes

# Agreement counted as correct (units of each attribute: bpm, ms, degrees, beats, samples at 500 Hz).
TOLERANCES: Dict[str, float] = {
    "VentricularRate": 2.0, "AtrialRate": 5.0, "QRSDuration": 10.0, "QTInterval": 20.0,
    "QTCorrected": 25.0, "RAxis": 15.0, "TAxis": 25.0, "QRSCount": 1.0,
    "QOnset": 5.0, "QOffset": 5.0, "TOffset": 10.0,
}
_ANGLES = ("RAxis", "TAxis")


def attribute_errors(truth: pd.DataFrame, predicted: pd.DataFrame) -> Dict[str, Dict[str, Any]]:
    """Per-attribute error summary of ``predicted`` against ``truth`` (same rows, ATTRIBUTE_NAMES columns)."""
    summary: Dict[str, Dict[str, Any]] = {}
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
            "within_tolerance": float((absolute <= TOLERANCES[name]).mean()) if len(absolute) else math.nan,
        }
    return summary


def _measure(job: tuple[str, str]) -> Dict[str, float]:
    path, method = job
    from fairseq_goodviews.preprocessing.chapman import read_chapman_csv

    microvolts = read_chapman_csv(path)
    return compute_wave_attributes(microvolts / 1000.0, 500.0, method=method).values


def validate_attributes(
    n_records: int = 200,
    seed: int = 0,
    workers: int = 1,
    methods: Sequence[str] = ("median_beat",),
    work_dir: Optional[str | Path] = None,
) -> Dict[str, Any]:
    """Generate, measure, compare; returns the JSON-ready report (see the module docstring)."""
    from fairseq_goodviews.preprocessing.synthetic import DIAGNOSTICS_NAME, SIGNAL_DIR, generate_chapman

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        start = time.perf_counter()
        truth = generate_chapman(tmp, n_records, seed=seed, workers=workers)
        generated = time.perf_counter() - start
        paths = [str(Path(tmp) / SIGNAL_DIR / f"{name}.csv") for name in truth["FileName"]]
        report: Dict[str, Any] = {
            "records": n_records, "seed": seed, "generator_seconds": round(generated, 2),
            "source": f"synthetic {DIAGNOSTICS_NAME} (fairseq_goodviews.preprocessing.synthetic)",
            "methods": {},
        }
        classes = truth["Rhythm"].map(RHYTHM_TO_CLASS)
        for method in methods:
            start = time.perf_counter()
            jobs = [(p, method) for p in paths]
            if workers > 1:
                with ProcessPoolExecutor(workers) as pool:
                    values: List[Dict[str, float]] = list(pool.map(_measure, jobs, chunksize=8))
            else:
                values = [_measure(job) for job in jobs]
            seconds = time.perf_counter() - start
            predicted = pd.DataFrame(values, columns=list(ATTRIBUTE_NAMES))
            report["methods"][method] = {
                "seconds_per_record": round(seconds / n_records * max(workers, 1), 4),
                "overall": attribute_errors(truth, predicted),
                "by_class": {
                    name: attribute_errors(truth[classes == name].reset_index(drop=True),
                                           predicted[(classes == name).to_numpy()].reset_index(drop=True))
                    for name in sorted(classes.dropna().unique())
                },
            }
    return report


def format_report(report: Dict[str, Any]) -> str:
    """A plain-text table of the overall figures of every method."""
    lines = []
    for method, result in report["methods"].items():
        lines.append(f"{method} ({report['records']} synthetic records, {result['seconds_per_record']:.3f} s/record)")
        lines.append(f"  {'attribute':<16}{'n':>5}{'NaN':>5}{'MAE':>9}{'median':>9}{'bias':>9}{'tol':>7}{'within':>8}")
        for name, row in result["overall"].items():
            lines.append(f"  {name:<16}{row['measured']:>5}{row['missing']:>5}{row['mae']:>9.2f}"
                         f"{row['median_abs_error']:>9.2f}{row['bias']:>9.2f}{row['tolerance']:>7g}"
                         f"{row['within_tolerance']:>8.1%}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the automatic wave attributes on synthetic "
                                                 "records with known values; report the errors as JSON.")
    parser.add_argument("--records", type=int, default=200, help="synthetic records (default: 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--method", choices=(*METHODS, "all"), default="all",
                        help="delineation method(s) to validate (default: all)")
    parser.add_argument("--out", default="attribute_validation.json", help="JSON report path")
    args = parser.parse_args(argv)
    methods = METHODS if args.method == "all" else (args.method,)
    report = validate_attributes(args.records, seed=args.seed, workers=args.workers, methods=methods)
    with atomic_open(args.out) as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(format_report(report))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
