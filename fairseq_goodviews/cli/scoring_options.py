"""The option the scoring commands share: where the forward pass runs."""

import argparse


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: auto (the first visible GPU, else the CPU), cpu, cuda or cuda:N."""
    parser.add_argument(
        "--device",
        default="auto",
        help="where the forward passes run: cpu, cuda, cuda:N (default: the GPU when one is visible, else cpu)",
    )
