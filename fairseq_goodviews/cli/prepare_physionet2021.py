"""goodviews-prepare-physionet2021: prepare PhysioNet/CinC Challenge 2020-2021 records."""

import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.prepare_options import run_wfdb_preparer, wfdb_preparer_parser
from fairseq_goodviews.preprocessing.physionet2021 import parse_subsets, prepare_physionet2021


def main(argv: Sequence[str] | None = None) -> int:
    parser = wfdb_preparer_parser(
        "goodviews-prepare-physionet2021",
        "Prepare PhysioNet/CinC Challenge 2021 (WFDB + .mat): one .mat per record at "
        "--target-rate, SNOMED Dx codes and rhythm classes, subset per record, splits, "
        "fairseq manifests, skip report.",
        "folder searched recursively for WFDB records (e.g. training/)",
    )
    parser.add_argument(
        "--exclude-subsets",
        default=None,
        help="comma-separated subsets to leave out, e.g. chapman_shaoxing,ningbo "
        "(to evaluate on Chapman without leakage)",
    )
    return run_wfdb_preparer(
        parser,
        argv,
        lambda args, converter, options: prepare_physionet2021(
            args.src_dir,
            args.out_dir,
            exclude_subsets=parse_subsets(args.exclude_subsets),
            converter=converter,
            options=options,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
