"""goodviews-prepare-ptbxl: prepare PTB-XL with its published folds."""

import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.prepare_options import run_wfdb_preparer, wfdb_preparer_parser
from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl


def main(argv: Sequence[str] | None = None) -> int:
    parser = wfdb_preparer_parser(
        "goodviews-prepare-ptbxl",
        "Prepare PTB-XL (ptbxl_database.csv + 500 Hz WFDB records): one .mat per record "
        "at --target-rate, the published folds (1-8 train, 9 valid, 10 test), SCP codes "
        "and rhythm classes, fairseq manifests, skip report.",
        "PTB-XL folder (with ptbxl_database.csv and records500/)",
    )
    return run_wfdb_preparer(
        parser,
        argv,
        lambda args, converter, options: prepare_ptbxl(
            args.src_dir, args.out_dir, converter=converter, options=options
        ),
        split_options=False,  # the published folds are the splits
    )


if __name__ == "__main__":
    sys.exit(main())
