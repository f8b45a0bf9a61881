"""goodviews-import-fairseq-signals-checkpoint: a fairseq-signals checkpoint as an encoder checkpoint of this plugin."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.interop.fairseq_signals_checkpoint import INPUT_NORMALISATIONS, import_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-import-fairseq-signals-checkpoint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("source", metavar="IN", help="a fairseq-signals wav2vec2 / wav2vec2_cmsc checkpoint (.pt)")
    parser.add_argument("out", metavar="OUT", help="the wav2vec2_ecg checkpoint to write (.pt)")
    parser.add_argument(
        "--sample-size",
        type=int,
        help="crop the encoder expects, in samples (default: the task's max_sample_size, else 2500 for "
        "wav2vec2_cmsc and 5000 for wav2vec2)",
    )
    parser.add_argument(
        "--input-normalisation",
        choices=INPUT_NORMALISATIONS,
        default="none",
        help="how the checkpoint's training inputs were normalised, applied by the imported model to every "
        "input: per_lead_standardise (each lead at mean 0, std 1: fairseq-signals' preprocessing, which "
        "ECG-FM's checkpoints expect) or none (signals in mV; default)",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load IN with full pickle (arbitrary code can run): only for a file you trust whose extra "
        "Python objects safe loading refuses",
    )

    def import_(args: argparse.Namespace) -> None:
        if args.sample_size is not None and args.sample_size <= 0:
            parser.error("--sample-size must be a positive number of samples")
        quiet_fairseq_logging()
        report = import_checkpoint(args.source, args.out, args.sample_size, args.trust_pickle, args.input_normalisation)
        print("\n".join(report.lines()))

    return run_command(parser, import_, argv)


if __name__ == "__main__":
    sys.exit(main())
