"""goodviews-pack: pack each split's records into memory-mappable shards beside its manifest."""

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.io.packed import (
    DEFAULT_SHARD_BYTES,
    ENCODINGS,
    pack_line,
    parse_size,
    split_manifests,
    write_pack,
)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-pack",
        description="Pack each split's .mat records into <split>.packed/ (shards and an index) beside its "
        "manifest: int16 with a per-lead gain where that gives the records' values exactly, float32 "
        "where not. Training uses a pack while it matches the manifest.",
    )
    parser.add_argument("manifest_dir", type=Path, help="folder with <split>.tsv manifests")
    parser.add_argument(
        "--splits",
        type=lambda s: [x for x in s.split(",") if x],
        help="comma-separated splits (default: whichever of train,valid,test exist)",
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="int16",
        help="int16 (default): each record as int16 where exact, else float32; float32: every record as float32",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--shard-size",
        type=_size,
        default=DEFAULT_SHARD_BYTES,
        help="bytes per shard at most, e.g. 512M or 2G (default 1G; a larger record gets a shard of its own)",
    )
    size.add_argument("--shard-records", type=_positive, help="records per shard instead of a size")
    parser.add_argument(
        "--workers", type=_positive, default=1, help="processes writing shards at once (default 1; the same pack)"
    )

    def pack(args: argparse.Namespace) -> None:
        shard_bytes = None if args.shard_records else args.shard_size
        for manifest in split_manifests(args.manifest_dir, args.splits):
            summary = write_pack(
                manifest,
                encoding=args.encoding,
                shard_bytes=shard_bytes,
                shard_records=args.shard_records,
                workers=args.workers,
            )
            print(pack_line(manifest.stem, summary))

    return run_command(parser, pack, argv)


if __name__ == "__main__":
    sys.exit(main())
