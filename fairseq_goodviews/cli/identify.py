"""goodviews-identify: patient identification (gallery/probe retrieval) with a checkpoint's frozen encoder."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.cli.scoring_options import add_bootstrap_arguments, add_device_argument, print_warnings
from fairseq_goodviews.evaluation.identification import format_identification, identify
from fairseq_goodviews.io.atomic import write_json
from fairseq_goodviews.leads import parse_leads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goodviews-identify", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", help="any checkpoint of this project (pretraining, classification, identification)"
    )
    parser.add_argument(
        "--data", required=True, help="manifest folder with <split>.tsv and <split>.csv (patient_id column)"
    )
    parser.add_argument(
        "--split",
        default="test",
        help="split to identify in, or several pooled: train,valid or all (default: test)",
    )
    parser.add_argument("--leads", help="comma-separated leads to keep, e.g. I,II,V2 (default: all 12)")
    parser.add_argument("--sample-size", type=int, help="samples per centred crop (default: the checkpoint task's)")
    parser.add_argument("--distractors", action="store_true", help="add single-record patients to the gallery")
    parser.add_argument(
        "--standardize",
        metavar="SPLIT",
        nargs="?",
        const="train",
        help="standardise embeddings with this split's statistics (default when given: train)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="write the metrics here as JSON")
    add_bootstrap_arguments(parser)
    add_device_argument(parser)

    def identify_patients(args: argparse.Namespace) -> None:
        quiet_fairseq_logging()
        result = identify(
            args.checkpoint,
            args.data,
            args.split,
            None if args.leads is None else parse_leads(args.leads),
            args.sample_size,
            args.distractors,
            args.standardize,
            args.batch_size,
            args.device,
            args.bootstrap,
            args.bootstrap_seed,
        )
        print(format_identification(result))
        print_warnings(parser.prog, result["warnings"])
        if args.json:
            write_json(args.json, result)

    return run_command(parser, identify_patients, argv)


if __name__ == "__main__":
    sys.exit(main())
