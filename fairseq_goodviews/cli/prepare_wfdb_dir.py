"""goodviews-prepare-wfdb-dir: prepare any folder of WFDB records."""

import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.prepare_options import run_wfdb_preparer, wfdb_preparer_parser
from fairseq_goodviews.preprocessing.wfdb_dir import (
    prepare_wfdb_dir,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = wfdb_preparer_parser(
        "goodviews-prepare-wfdb-dir",
        "Prepare any folder of WFDB records (any lead names, order, subset or rate): "
        "one .mat per record at --target-rate, splits, fairseq manifests, skip report.",
        "folder searched recursively for WFDB records (.hea)",
    )
    parser.add_argument(
        "--source-name", default=None, help="value of the 'source' column (default: the name of SRC_DIR)"
    )
    parser.add_argument(
        "--patient-from-folder",
        action="store_true",
        help="patient id = the record's folder name when the header gives none",
    )
    return run_wfdb_preparer(
        parser,
        argv,
        lambda args, converter, options: prepare_wfdb_dir(
            args.src_dir,
            args.out_dir,
            converter=converter,
            source_name=args.source_name,
            patient_from_folder=args.patient_from_folder,
            options=options,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
