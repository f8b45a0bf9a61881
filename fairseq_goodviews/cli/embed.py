"""goodviews-embed: write a checkpoint's frozen-encoder embeddings of a split or of raw records."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.cli.scoring_options import add_device_argument
from fairseq_goodviews.evaluation.embed import CROPS, write_embeddings
from fairseq_goodviews.leads import parse_leads


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goodviews-embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="any checkpoint of this project (pretraining, probe, fine-tune)")
    parser.add_argument(
        "records",
        nargs="*",
        help="record files to embed instead of --data: WFDB records (.hea, or the .mat/.dat beside one) "
        "or .mat records of ours",
    )
    parser.add_argument(
        "--data",
        help="a prepared folder (with --split), or a folder of WFDB records (.hea) or .mat records, "
        "read without preparation",
    )
    parser.add_argument("--split", help="split of a prepared folder (default: test)")
    parser.add_argument("--out", required=True, help="output .npz (embedding [N, D], record [N])")
    parser.add_argument(
        "--crop",
        choices=CROPS,
        default="whole",
        help="whole: mean embedding of the consecutive crops covering each record (as goodviews-evaluate "
        "scores a record); centre: the centred crop alone",
    )
    parser.add_argument(
        "--leads", help="leads to keep, e.g. I,II,V2; the others are zero-filled (default: the checkpoint's leads)"
    )
    parser.add_argument("--sample-size", type=int, help="samples per crop (default: the checkpoint's crop)")
    parser.add_argument("--batch-size", type=int, default=64, help="records per forward pass")
    add_device_argument(parser)

    def embed(args: argparse.Namespace) -> None:
        quiet_fairseq_logging()
        done = write_embeddings(
            args.checkpoint,
            args.out,
            data=args.data,
            split=args.split,
            records=args.records,
            crop=args.crop,
            leads=None if args.leads is None else parse_leads(args.leads),
            sample_size=args.sample_size,
            batch_size=args.batch_size,
            device=args.device,
        )
        for line in done.skipped:
            print(f"skipped {line}", file=sys.stderr)
        skipped = f", {len(done.skipped)} skipped" if done.skipped else ""
        print(f"{done.n} embeddings of {done.source} (crop {args.crop}{skipped}) written to {args.out}")

    return run_command(parser, embed, argv)


if __name__ == "__main__":
    sys.exit(main())
