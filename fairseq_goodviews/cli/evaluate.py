"""goodviews-evaluate: score a classification checkpoint on a split (metrics, CinC 2021 score, predictions)."""

import argparse
import sys

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.cli.scoring_options import add_bootstrap_arguments, add_device_argument, print_warnings
from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint, format_metrics
from fairseq_goodviews.io.atomic import write_json
from fairseq_goodviews.leads import parse_leads


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="goodviews-evaluate", description=__doc__)
    parser.add_argument("checkpoint", help="a checkpoint written by fairseq-hydra-train for ecg_classification")
    parser.add_argument("--data", help="manifest folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--leads", help="comma-separated leads to keep, e.g. I,II,V2 (default: all 12)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--threshold-split",
        default="valid",
        help="split whose predictions choose the CinC 2021 per-class thresholds (default: valid)",
    )
    parser.add_argument("--json", help="write the metrics here as JSON")
    parser.add_argument("--predictions", help="write every record's class probabilities here as CSV")
    add_bootstrap_arguments(parser)
    add_device_argument(parser)

    def evaluate(args: argparse.Namespace) -> None:
        quiet_fairseq_logging()
        result = evaluate_checkpoint(
            args.checkpoint,
            args.data,
            args.split,
            parse_leads(args.leads),
            args.batch_size,
            threshold_split=args.threshold_split,
            predictions=args.predictions,
            device=args.device,
            bootstrap=args.bootstrap,
            seed=args.bootstrap_seed,
        )
        print(format_metrics(result))
        print_warnings(parser.prog, result["warnings"])
        if args.json:
            write_json(args.json, result)

    return run_command(parser, evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
