"""goodviews-import-fairseq-signals: list a fairseq-signals folder as manifests and metadata of this plugin."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.prepare_options import add_run_arguments
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.interop.fairseq_signals_data import DEFAULT_SAMPLE_RATE, import_fairseq_signals, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-import-fairseq-signals",
        description="Import a fairseq-signals manifest folder (<split>.tsv + .mat records): write our "
        "manifests and metadata tables for it, reading the records where they are (no signal is copied).",
    )
    parser.add_argument("src_dir", help="the fairseq-signals manifest folder (train.tsv, valid.tsv, ...)")
    parser.add_argument("out_dir", help="output folder (<split>.tsv and .csv, skipped.csv, prepare_report.json)")
    parser.add_argument(
        "--splits", default=None, help="comma-separated splits to import (default: every <split>.tsv of SRC_DIR)"
    )
    parser.add_argument(
        "--label-names", default=None, help="text file of class names, one per line in label order (default: class_<i>)"
    )
    parser.add_argument(
        "--label-file",
        default=None,
        help="fairseq-signals' label array (y.npy, a row per idx) for records that carry an idx but no label "
        "(default: labels/y.npy of each record's processed root, where there is one)",
    )
    parser.add_argument(
        "--standardised-inputs",
        action="store_true",
        help="accept records whose leads are standardised (std about 1) and hold no mean/std to restore "
        "millivolts: import them as they are, recorded as standardised (refused without it)",
    )
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=DEFAULT_SAMPLE_RATE,
        help="the rate the records must have, Hz; others are skipped (default: 500)",
    )
    add_run_arguments(parser)

    def import_(args: argparse.Namespace) -> None:
        splits = [s.strip() for s in args.splits.split(",") if s.strip()] if args.splits else None
        report = import_fairseq_signals(
            args.src_dir,
            args.out_dir,
            splits=splits,
            label_names=args.label_names,
            label_file=args.label_file,
            standardised_inputs=args.standardised_inputs,
            sample_rate=args.sample_rate,
            workers=args.workers,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            pack=args.pack,
        )
        print("\n".join(summary(report, args.out_dir)))

    return run_command(parser, import_, argv)


if __name__ == "__main__":
    sys.exit(main())
