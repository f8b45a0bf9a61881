"""goodviews-synthetic-chapman: generate synthetic records in the real Chapman/Shaoxing layout."""

import argparse
import sys
import time
from collections.abc import Sequence

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.labels import RHYTHM_TO_CLASS
from fairseq_goodviews.synthetic.chapman import generate_chapman


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``goodviews-synthetic-chapman OUT_DIR --records N --seed S ...``."""
    parser = argparse.ArgumentParser(
        prog="goodviews-synthetic-chapman",
        description="Write a synthetic Chapman/Shaoxing database (Diagnostics.xlsx + ECGDataDenoised/*.csv).",
    )
    parser.add_argument("out_dir", help="output folder (created if missing)")
    parser.add_argument(
        "--records",
        type=int,
        default=None,
        help="number of records; with --from-diagnostics, the first N rows (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--from-diagnostics",
        dest="diagnostics",
        default=None,
        metavar="PATH",
        help="synthesise one waveform per row of this Diagnostics.xlsx and keep its rows",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--header", action="store_true", help="write the lead names as the first CSV row")

    def generate(args: argparse.Namespace) -> None:
        if args.records is None and args.diagnostics is None:
            parser.error("--records is required unless --from-diagnostics is given")
        started = time.perf_counter()
        table = generate_chapman(
            args.out_dir,
            args.records,
            seed=args.seed,
            diagnostics=args.diagnostics,
            workers=args.workers,
            header=args.header,
        )
        elapsed = time.perf_counter() - started
        classes = table["Rhythm"].map(RHYTHM_TO_CLASS).value_counts().to_dict()
        print(
            f"wrote {len(table)} records to {args.out_dir} in {elapsed:.1f} s "
            f"({60.0 * len(table) / max(elapsed, 1e-9):.0f} records/min); classes {classes}"
        )

    return run_command(parser, generate, argv)


if __name__ == "__main__":
    sys.exit(main())
