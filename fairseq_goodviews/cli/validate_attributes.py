"""goodviews-validate-attributes: automatic wave attributes against device measurements and synthetic ground truth."""

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.evaluation.detector_comparison import compare_detectors, format_comparison
from fairseq_goodviews.evaluation.validate_attributes import (
    RECORD_COLUMN,
    format_report,
    validate_attributes,
    validate_real,
    validate_reference,
)
from fairseq_goodviews.io.atomic import write_json
from fairseq_goodviews.preprocessing.wave_attributes import DEFAULT_R_PEAK_DETECTOR, METHODS, R_PEAK_DETECTORS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-validate-attributes",
        description="Measure the automatic wave attributes on real records with "
        "GE MUSE measurements and on synthetic records with known "
        "values; report the errors as JSON.",
    )
    parser.add_argument("--records", type=int, default=200, help="synthetic records (default: 200; 0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--real",
        default=os.environ.get("GOODVIEWS_SHARED_DATA"),
        metavar="DATA_DIR",
        help="shared data folder holding real/ and chapman/Diagnostics.xlsx "
        "(default: $GOODVIEWS_SHARED_DATA; without it, no real records)",
    )
    parser.add_argument(
        "--reference",
        metavar="CSV",
        help=f"your own device measurements: a CSV with a {RECORD_COLUMN} column (WFDB record path or name) "
        "and any of rate/VentricularRate, qrs_duration/QRSDuration, qt/QTInterval, qtc/QTCorrected, "
        "r_axis/RAxis, t_axis/TAxis, optionally rhythm/Rhythm (docs/data.md)",
    )
    parser.add_argument(
        "--records-dir",
        metavar="DIR",
        help=f"folder the {RECORD_COLUMN} column of --reference is relative to (default: the CSV's folder)",
    )
    parser.add_argument(
        "--method", choices=(*METHODS, "all"), default="all", help="delineation method(s) to validate (default: all)"
    )
    parser.add_argument("--detector", choices=R_PEAK_DETECTORS, default=DEFAULT_R_PEAK_DETECTOR, help="R-peak detector")
    parser.add_argument(
        "--compare-detectors", action="store_true", help="also compare every R-peak detector on all real records"
    )
    parser.add_argument("--out", default="attribute_validation.json", help="JSON report path")

    def validate(args: argparse.Namespace) -> None:
        methods = METHODS if args.method == "all" else (args.method,)
        report: dict[str, Any] = {}
        if args.real:
            report["real"] = validate_real(args.real, methods, args.detector)
            print(format_report(report["real"], f"{len(report['real']['records'])} real records vs GE MUSE"))
            if args.compare_detectors:
                report["detectors"] = compare_detectors(args.real)
                print(format_comparison(report["detectors"]))
        if args.reference:
            report["reference"] = validate_reference(args.reference, args.records_dir, methods, args.detector)
            print(
                format_report(report["reference"], f"{len(report['reference']['records'])} records vs {args.reference}")
            )
        if args.records > 0:
            report["synthetic"] = validate_attributes(
                args.records, seed=args.seed, workers=args.workers, methods=methods, detector=args.detector
            )
            print(format_report(report["synthetic"], f"{args.records} synthetic records vs true fiducials"))
        write_json(args.out, report)
        print(f"written: {args.out}")

    return run_command(parser, validate, argv)


if __name__ == "__main__":
    sys.exit(main())
