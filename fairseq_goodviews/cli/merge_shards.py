"""goodviews-merge-shards: merge the shards of a preparation into its splits, manifests and report."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.preprocessing.items import PrepareResult
from fairseq_goodviews.preprocessing.mimic_iv_ecg import supported_strategies
from fairseq_goodviews.preprocessing.pipeline import merge_shards
from fairseq_goodviews.preprocessing.ptbxl import missing_split_warning
from fairseq_goodviews.preprocessing.wfdb_dir import summarise_channels

# The sources read from WFDB records, whose preparers print the channels they left out.
_WFDB_SOURCES = ("physionet2021", "ptbxl", "wfdb_dir", "mimic_iv_ecg")


def source_lines(result: PrepareResult) -> list[str]:
    """The lines the source's own preparer prints after its summary, for the merged records."""
    source = result.report["source"]
    lines = []
    if source == "ptbxl":
        lines.append(missing_split_warning(result.splits))
    if source == "mimic_iv_ecg":
        lines.append(supported_strategies(result))
    if source in _WFDB_SOURCES:
        lines.append(summarise_channels(result))
    return [line for line in lines if line]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-merge-shards",
        description="Merge the finished shards of a preparation (each preparer's --shard I/N into one "
        "OUT_DIR): splits over all records, manifests, metadata tables, skipped.csv and "
        "prepare_report.json, the same bytes as one process preparing OUT_DIR writes.",
    )
    parser.add_argument("out_dir", help="the output folder the shards wrote")
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        metavar="N",
        help="merge the shards of N (needed only when OUT_DIR holds shards of several counts)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the manifests of a folder prepared with other options"
    )
    parser.add_argument(
        "--pack",
        action="store_true",
        help="then pack each split into <split>.packed/ beside its manifest (the shards do not pack)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes writing the packs (default 1; same packs)")

    def merge(args: argparse.Namespace) -> None:
        result = merge_shards(
            args.out_dir, shards=args.shards, pack=args.pack, overwrite=args.overwrite, workers=args.workers
        )
        for line in source_lines(result):
            print(line)

    return run_command(parser, merge, argv)


if __name__ == "__main__":
    sys.exit(main())
