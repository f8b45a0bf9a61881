"""goodviews-embed: write a checkpoint's frozen-encoder embeddings of a split."""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.cli.scoring_options import add_device_argument
from fairseq_goodviews.evaluation.embed import embed_split


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goodviews-embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="any checkpoint of this project (pretraining, probe, fine-tune)")
    parser.add_argument("--data", required=True, help="prepared manifest folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, help="output .npz (embedding [N, D], record [N])")
    parser.add_argument("--sample-size", type=int, help="samples per centred crop (default: the checkpoint's crop)")
    parser.add_argument("--batch-size", type=int, default=64)
    add_device_argument(parser)

    def embed(args: argparse.Namespace) -> None:
        quiet_fairseq_logging()
        n = embed_split(
            args.checkpoint, args.data, args.split, args.out, args.sample_size, args.batch_size, args.device
        )
        print(f"{n} embeddings of {Path(args.data) / args.split}.tsv written to {args.out}")

    return run_command(parser, embed, argv)


if __name__ == "__main__":
    sys.exit(main())
