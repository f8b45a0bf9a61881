"""goodviews-synthetic-ptbxl: generate a synthetic multi-visit PTB-XL-layout set."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.synthetic.ptbxl import generate_ptbxl


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m fairseq_goodviews.synthetic.ptbxl OUT_DIR --patients N ...``."""
    parser = argparse.ArgumentParser(
        prog="goodviews-synthetic-ptbxl",
        description="Write a synthetic multi-visit PTB-XL folder (ptbxl_database.csv, scp_statements.csv, "
        "records500/, records100/).",
    )
    parser.add_argument("out_dir", help="output folder (created if missing)")
    parser.add_argument("--patients", type=int, required=True, help="number of patients")
    parser.add_argument("--min-visits", type=int, default=1, help="fewest ECGs per patient (default 1)")
    parser.add_argument("--max-visits", type=int, default=4, help="most ECGs per patient (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="record length (default 10 s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing records (default 1; same files)")

    def generate(args: argparse.Namespace) -> None:
        table = generate_ptbxl(
            args.out_dir,
            args.patients,
            visits=(args.min_visits, args.max_visits),
            seed=args.seed,
            seconds=args.seconds,
            workers=args.workers,
        )
        print(f"wrote {len(table)} ECGs of {table['patient_id'].nunique()} patients to {args.out_dir}")

    return run_command(parser, generate, argv)


if __name__ == "__main__":
    sys.exit(main())
