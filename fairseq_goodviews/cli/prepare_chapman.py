"""goodviews-prepare-chapman: prepare the Chapman/Shaoxing database."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.prepare_options import add_pipeline_arguments, options_from_args
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.preprocessing.chapman import prepare_chapman, read_exclude_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-prepare-chapman",
        description="Prepare the Chapman/Shaoxing 12-lead ECG database: one .mat per record, "
        "patient-wise stratified splits, fairseq manifests, skip report.",
    )
    parser.add_argument("src_dir", help="folder with Diagnostics.xlsx and ECGDataDenoised/ (or ECGData/)")
    parser.add_argument("out_dir", help="output folder (records/, train/valid/test .tsv and .csv)")
    parser.add_argument(
        "--min-age", type=float, default=None, help="keep patients at least this old (the paper's cohort: 18)"
    )
    parser.add_argument("--exclude", default=None, help="text file of FileNames to leave out")
    parser.add_argument("--raw", action="store_true", help="use ECGData/ instead of ECGDataDenoised/")
    add_pipeline_arguments(parser)

    def prepare(args: argparse.Namespace) -> None:
        exclude = read_exclude_file(args.exclude) if args.exclude else ()
        prepare_chapman(
            args.src_dir,
            args.out_dir,
            min_age=args.min_age,
            exclude=exclude,
            raw=args.raw,
            options=options_from_args(args),
        )

    return run_command(parser, prepare, argv)


if __name__ == "__main__":
    sys.exit(main())
