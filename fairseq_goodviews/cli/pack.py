"""goodviews-pack: pack each split's records into one memory-mappable array beside its manifest."""

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.io.packed import pack_line, split_manifests, write_pack


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-pack",
        description="Pack each split's .mat records into <split>.packed.npy + <split>.packed_index.npy "
        "beside its manifest; training uses a pack while it matches the manifest.",
    )
    parser.add_argument("manifest_dir", type=Path, help="folder with <split>.tsv manifests")
    parser.add_argument(
        "--splits",
        type=lambda s: [x for x in s.split(",") if x],
        help="comma-separated splits (default: whichever of train,valid,test exist)",
    )

    def pack(args: argparse.Namespace) -> None:
        for manifest in split_manifests(args.manifest_dir, args.splits):
            print(pack_line(manifest.stem, write_pack(manifest)))

    return run_command(parser, pack, argv)


if __name__ == "__main__":
    sys.exit(main())
