"""The options every preparer shares (pipeline) and the WFDB preparers add (reading), and their runner."""

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions, PrepareResult
from fairseq_goodviews.preprocessing.shards import parse_shard
from fairseq_goodviews.preprocessing.wfdb_dir import (
    WfdbConverter,
    quiet_file_logging,
    summarise_channels,
)
from fairseq_goodviews.preprocessing.wfdb_reader import (
    DEFAULT_FLAT_LEADS,
    DEFAULT_MAX_RATE,
    DEFAULT_MIN_RATE,
    DEFAULT_TARGET_RATE,
    FLAT_LEADS_MODES,
)


def add_pipeline_arguments(parser: argparse.ArgumentParser, *, split_options: bool = True) -> None:
    """Add the options every preparer shares (workers, seed, splits, segmentation, shard, progress, packing).

    ``split_options=False`` leaves out ``--seed`` and ``--split``, which only act on the random
    split assignment: a preparer with published splits (PTB-XL's folds) does not offer them.
    """
    group = parser.add_argument_group("pipeline")
    add_run_arguments(group)
    if split_options:
        group.add_argument("--seed", type=int, default=0, help="seed of the split assignment (default: 0)")
        group.add_argument(
            "--split",
            type=float,
            nargs=3,
            metavar=("TRAIN", "VALID", "TEST"),
            default=(0.6, 0.2, 0.2),
            help="patient-wise split fractions (default: 0.6 0.2 0.2)",
        )
    group.add_argument(
        "--segment-samples",
        type=int,
        default=None,
        help="cut records into non-overlapping segments of this many samples",
    )
    group.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="convert only shard I of N (0 <= I < N; a stable hash of each record's key) into OUT_DIR, "
        "beside the other shards running at the same time; goodviews-merge-shards OUT_DIR then writes "
        "the splits, manifests and report (an array job: examples/slurm_prepare_array.sbatch)",
    )


def add_run_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How any preparation runs, the fairseq-signals import included: workers, progress, overwrite, packing."""
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the manifests of a folder prepared with other options"
    )
    parser.add_argument(
        "--pack",
        action="store_true",
        help="then pack each split into <split>.packed/ beside its manifest, the fastest record path for "
        "training (int16 where exact: about half the records' disk; without it, outdated packs are removed)",
    )


def options_from_args(args: argparse.Namespace, **overrides: Any) -> PrepareOptions:
    """:class:`PrepareOptions` from arguments added by :func:`add_pipeline_arguments` (without its
    split options, the seed and split fractions keep their defaults); a malformed ``--shard`` is a
    :class:`PrepareError`."""
    values: dict[str, Any] = dict(
        workers=args.workers,
        segment_samples=args.segment_samples,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        pack=args.pack,
        shard=None if args.shard is None else parse_shard(args.shard),
    )
    if "split" in args:
        values.update(seed=args.seed, split_fractions=tuple(args.split))
    values.update(overrides)
    return PrepareOptions(**values)


def add_wfdb_arguments(parser: argparse.ArgumentParser) -> None:
    """Reader options shared by the WFDB preparers (rate, segments in seconds, flat leads, attributes)."""
    group = parser.add_argument_group("WFDB reading")
    group.add_argument(
        "--target-rate",
        type=float,
        default=DEFAULT_TARGET_RATE,
        help="resample every record to this rate in Hz (default: 500)",
    )
    group.add_argument(
        "--min-rate",
        type=float,
        default=DEFAULT_MIN_RATE,
        help="skip records sampled below this rate in Hz (default: 100)",
    )
    group.add_argument(
        "--max-rate",
        type=float,
        default=DEFAULT_MAX_RATE,
        help="skip records whose header gives a rate above this in Hz (default: 20000)",
    )
    group.add_argument(
        "--segment-seconds",
        type=float,
        default=None,
        help="cut records into non-overlapping segments of this many seconds "
        "(e.g. 5 or 10; the remainder is dropped; segments keep record_id)",
    )
    group.add_argument(
        "--flat-leads",
        choices=FLAT_LEADS_MODES,
        default=DEFAULT_FLAT_LEADS,
        help="a flat lead (e.g. recorded as zeros) is marked absent and reported (absent, "
        "default) or skips the record (error)",
    )
    group.add_argument(
        "--no-attributes",
        action="store_true",
        help="do not measure the wave attributes (faster; attr_* columns stay empty)",
    )


def converter_from_args(args: argparse.Namespace) -> WfdbConverter:
    if args.target_rate <= 0:
        raise PrepareError(f"--target-rate must be positive, got {args.target_rate:g}")
    if args.max_rate <= args.min_rate:
        raise PrepareError(f"--max-rate ({args.max_rate:g}) must be above --min-rate ({args.min_rate:g})")
    return WfdbConverter(
        target_rate=args.target_rate,
        min_rate=args.min_rate,
        max_rate=args.max_rate,
        flat_leads=args.flat_leads,
        attributes=not args.no_attributes,
    )


def wfdb_options_from_args(args: argparse.Namespace, **overrides: Any) -> PrepareOptions:
    """Pipeline options, with ``--segment-seconds`` turned into samples at ``--target-rate``."""
    if args.segment_seconds is not None:
        if args.segment_samples is not None:
            raise PrepareError("give --segment-seconds or --segment-samples, not both")
        if args.segment_seconds <= 0:
            raise PrepareError(f"--segment-seconds must be positive, got {args.segment_seconds:g}")
        overrides["segment_samples"] = round(args.segment_seconds * args.target_rate)
    return options_from_args(args, **overrides)


def wfdb_preparer_parser(prog: str, description: str, src_help: str) -> argparse.ArgumentParser:
    """The command line of a WFDB preparer: ``SRC_DIR OUT_DIR`` (its own options are added after)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("src_dir", help=src_help)
    parser.add_argument("out_dir", help="output folder (records/, train/valid/test .tsv and .csv)")
    return parser


def run_wfdb_preparer(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    prepare_with: Callable[[argparse.Namespace, WfdbConverter, PrepareOptions], PrepareResult],
    *,
    split_options: bool = True,
) -> int:
    """Add the shared WFDB and pipeline options (``split_options``: see :func:`add_pipeline_arguments`),
    parse, prepare and print the summary (through :func:`run_command`: a :class:`PrepareError` is
    one line on stderr and exit status 2)."""
    add_wfdb_arguments(parser)
    add_pipeline_arguments(parser, split_options=split_options)

    def prepare(args: argparse.Namespace) -> None:
        quiet_file_logging()
        result = prepare_with(args, converter_from_args(args), wfdb_options_from_args(args))
        if result.shard is None:  # a shard's records are counted when the shards are merged
            print(summarise_channels(result))

    return run_command(parser, prepare, argv)
