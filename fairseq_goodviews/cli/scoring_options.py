"""The options the scoring commands share: where the forward pass runs, the bootstrap intervals; their warnings."""

import argparse
import sys

from fairseq_goodviews.scoring.bootstrap import DEFAULT_REPLICATES


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: auto (the first visible GPU, else the CPU), cpu, cuda or cuda:N."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where the forward passes run: cpu, cuda, cuda:N (default: the GPU when one is visible, else cpu)",
    )


def _replicates(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap N`` (replicates of the 95 % intervals; 0 skips them) and ``--bootstrap-seed``."""
    parser.add_argument(
        "--bootstrap",
        type=_replicates,
        default=DEFAULT_REPLICATES,
        metavar="N",
        help=f"replicates of the percentile bootstrap behind every metric's 95 %% interval, resampling "
        f"patients where the split has patient_id, else records (default: {DEFAULT_REPLICATES}; 0: no intervals)",
    )
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap draws (default: 0)")


def print_warnings(prog: str, warnings: list[str]) -> None:
    """Each warning as one ``<prog>: warning: ...`` line on stderr."""
    for warning in warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
