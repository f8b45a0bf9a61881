"""goodviews-lead-subsets: score a classifier with only some leads present (the others zeroed)."""

import argparse
import json
import sys

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.cli.scoring_options import add_device_argument
from fairseq_goodviews.evaluation.lead_subsets import evaluate_lead_subsets, format_table
from fairseq_goodviews.io.atomic import json_safe, write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-lead-subsets",
        description="Score a classifier checkpoint with the CinC 2021 lead sets (12; 6 limb; 4 = I, II, III, V2; "
        "3 = I, II, V2; 2 = I, II) and 1 lead (II).",
    )
    parser.add_argument("checkpoint", help="a linear-probe or fine-tuned ecg_classification checkpoint")
    parser.add_argument("--data", help="manifest folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="also write every metric of every subset as JSON here ('-': stdout)")
    add_device_argument(parser)

    def score_lead_subsets(args: argparse.Namespace) -> None:
        quiet_fairseq_logging()
        results = evaluate_lead_subsets(
            args.checkpoint, args.data, args.split, batch_size=args.batch_size, device=args.device
        )
        print(f"{args.checkpoint} on split {args.split!r}")
        print(format_table(results))
        payload = {
            "checkpoint": str(args.checkpoint),
            "split": args.split,
            "subsets": [{"name": name, **entry} for name, entry in results.items()],
        }
        if args.json == "-":
            print(json.dumps(json_safe(payload), indent=2, sort_keys=True, default=float))
        elif args.json:
            write_json(args.json, payload)

    return run_command(parser, score_lead_subsets, argv)


if __name__ == "__main__":
    sys.exit(main())
