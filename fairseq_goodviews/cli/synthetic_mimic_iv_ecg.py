"""goodviews-synthetic-mimic-iv-ecg: generate a synthetic MIMIC-IV-ECG-layout set with several studies per subject."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.synthetic.mimic_iv_ecg import generate_mimic_iv_ecg


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-synthetic-mimic-iv-ecg",
        description="Write a synthetic MIMIC-IV-ECG folder (record_list.csv, machine_measurements.csv, "
        "waveform_note_links.csv, files/).",
    )
    parser.add_argument("out_dir", help="output folder (created if missing)")
    parser.add_argument("--subjects", type=int, required=True, help="number of subjects (patients)")
    parser.add_argument("--min-visits", type=int, default=1, help="fewest studies per subject (default 1)")
    parser.add_argument("--max-visits", type=int, default=3, help="most studies per subject (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="record length (default 10 s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes writing records (default 1; same files)")

    def generate(args: argparse.Namespace) -> None:
        truth = generate_mimic_iv_ecg(
            args.out_dir,
            args.subjects,
            visits=(args.min_visits, args.max_visits),
            seed=args.seed,
            seconds=args.seconds,
            workers=args.workers,
        )
        print(f"wrote {len(truth)} studies of {truth['subject_id'].nunique()} subjects to {args.out_dir}")

    return run_command(parser, generate, argv)


if __name__ == "__main__":
    sys.exit(main())
