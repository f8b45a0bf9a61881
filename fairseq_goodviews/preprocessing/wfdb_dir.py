"""Any directory of WFDB records -> per-record ``.mat`` files, splits and manifests.

Records are found recursively (every ``.hea`` file under SRC); any lead names (case-insensitive,
aliases), order, subset and sample rate are accepted (see :mod:`.wfdb_reader`). The patient id is
the one the header comments give (``patient:``/``patient id:``/``subject:``), else the record name
(``--patient-from-folder``: the name of the record's folder, as in PTB Diagnostic's
``patient001/s0010_re``). Wave attributes are measured automatically (``--no-attributes`` to skip).
The record files' ``label`` vector is the 26 scored CinC 2021 classes of the headers' ``#Dx``
codes (all zeros without any).

This module also holds what the three WFDB preparers (this one, PhysioNet 2021, PTB-XL) share:
the picklable :class:`WfdbConverter` and the command-line options of the reader.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.io.records import EcgRecord, RecordError
from fairseq_goodviews.labels import CINC2021_LABEL_SET
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.pipeline import (
    BAD_SIGNAL,
    MISSING_FILE,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SkipRecord,
    SourceItem,
    add_pipeline_arguments,
    options_from_args,
    prepare,
)
from fairseq_goodviews.preprocessing.wave_attributes import compute_wave_attributes, load_backend
from fairseq_goodviews.preprocessing.wfdb_reader import (
    DEFAULT_FLAT_LEADS,
    DEFAULT_MAX_RATE,
    DEFAULT_MIN_RATE,
    DEFAULT_TARGET_RATE,
    FLAT_LEADS_MODES,
    BadSignalError,
    MissingFileError,
    find_records,
    read_header_comments,
    read_wfdb,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass(frozen=True)
class WfdbConverter:
    """Picklable converter: ``item.source`` is the record path (without ``.hea``).

    The ``.mat`` file gets ``item.meta`` (scalars), the header's age/sex where the item has none,
    ``leads`` (present leads), ``ignored_channels``, ``flat_leads`` (marked absent) and
    ``repaired_samples`` (``lead:count`` of interpolated invalid samples) where any,
    ``source_sample_rate`` and, with
    ``attributes``, the eleven ``attr_*`` values (also as the ``attributes`` vector, as the
    Chapman preparer stores them) and ``attr_missing`` (why any is NaN).
    """

    target_rate: float = DEFAULT_TARGET_RATE
    min_rate: float = DEFAULT_MIN_RATE
    flat_leads: str = DEFAULT_FLAT_LEADS
    attributes: bool = True
    max_rate: float = DEFAULT_MAX_RATE

    def __call__(self, item: SourceItem) -> EcgRecord:
        try:
            read = read_wfdb(
                item.source,
                target_rate=self.target_rate,
                min_rate=self.min_rate,
                flat_leads=self.flat_leads,
                max_rate=self.max_rate,
            )
        except MissingFileError as exc:
            raise SkipRecord(exc.problem, category=MISSING_FILE, file=exc.path) from None
        except BadSignalError as exc:
            raise SkipRecord(exc.problem, category=BAD_SIGNAL, file=exc.path) from None
        record = read.record
        meta: dict[str, Any] = {k: v for k, v in item.meta.items() if np.ndim(v) == 0}
        if _missing(meta.get("age")):
            meta["age"] = age_value(read.header.age)
        if not meta.get("sex"):
            meta["sex"] = read.header.sex
        meta["leads"] = ",".join(np.array(CANONICAL_LEADS)[record.lead_present])
        meta["ignored_channels"] = ",".join(read.ignored_channels)
        if read.flat_leads:
            meta["flat_leads"] = ",".join(read.flat_leads)
        if read.repaired_samples:
            meta["repaired_samples"] = ",".join(read.repaired_samples)
        meta["source_sample_rate"] = read.source_rate
        if self.attributes:
            measured = compute_wave_attributes(record.feats, record.sample_rate, record.lead_present)
            meta.update(measured.as_columns())
            meta["attributes"] = np.array([measured.values[n] for n in ATTRIBUTE_NAMES], dtype=np.float32)
            meta["attr_missing"] = "; ".join(f"{n}: {r}" for n, r in measured.reasons.items())
        record.meta = meta
        return record


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def age_value(age: float) -> Any:
    """A header age for the metadata table: None when unknown, an int when whole."""
    if age != age:
        return None
    return int(age) if float(age).is_integer() else age


def record_keys(records: Sequence[Path], root: Path) -> list[str]:
    """File-name-safe unique keys: the record name, or its path under ``root`` where names clash."""
    names = [_UNSAFE.sub("_", r.name) for r in records]
    counts = Counter(names)
    keys = []
    for record, name in zip(records, names, strict=True):
        if counts[name] > 1:
            name = _UNSAFE.sub("_", "_".join(record.relative_to(root).parts))
        keys.append(name)
    return keys


def list_records(src_dir: str | Path) -> list[Path]:
    """Every WFDB record under ``src_dir``; :class:`PrepareError` naming the folder if none."""
    try:
        return find_records(src_dir)
    except RecordError as exc:
        raise PrepareError(str(exc)) from None


def wfdb_dir_items(
    src_dir: str | Path,
    *,
    source_name: str | None = None,
    patient_from_folder: bool = False,
) -> tuple[list[SourceItem], list[Skipped], dict[str, Any]]:
    """List the records of a WFDB folder; return (items, rejected up front, facts for the report)."""
    src_dir = Path(src_dir)
    records = list_records(src_dir)
    source = source_name or src_dir.resolve().name
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    for record, key in zip(records, record_keys(records, src_dir), strict=True):
        try:
            info = read_header_comments(record)
        except (RecordError, OSError) as exc:
            skipped.append(Skipped(key, str(record) + ".hea", str(exc), MISSING_FILE))
            continue
        if info.patient_id:
            patient = info.patient_id
        elif patient_from_folder and record.parent != src_dir:
            patient = record.parent.name
        else:
            patient = record.name
        meta = {"age": age_value(info.age), "sex": info.sex, "source": source, "record_name": record.name}
        if info.dx:
            meta["dx"] = " ".join(info.dx)
        if info.dx_unknown:
            meta["dx_unknown"] = " ".join(info.dx_unknown)
        items.append(SourceItem(key=key, patient_id=str(patient), meta=meta, source=record))
    facts = {"headers": len(records)}
    return items, skipped, facts


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


def quiet_file_logging() -> None:
    """Keep wfdb's file system layer (fsspec) from logging every file it opens: importing fairseq
    sets the root logger to DEBUG, which would print three lines per record."""
    logging.getLogger("fsspec").setLevel(logging.WARNING)


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


def converter_config(converter: WfdbConverter) -> Mapping[str, Any]:
    """The converter's options for the report; loads the attribute backend here first when the
    converter measures attributes, so that forked workers inherit it instead of each importing it."""
    if converter.attributes:
        load_backend()
    return {
        "target_rate": converter.target_rate,
        "min_rate": converter.min_rate,
        "max_rate": converter.max_rate,
        "flat_leads": converter.flat_leads,
        "attributes": converter.attributes,
    }


def summarise_channels(result: PrepareResult) -> str:
    """One line on the channels that were left out, counted over the written records."""
    counts: Counter = Counter()
    for part in result.splits.values():
        if "ignored_channels" not in part.columns:
            continue
        for value in part.drop_duplicates("record_id")["ignored_channels"]:
            if isinstance(value, str) and value:
                counts.update(value.split(","))
    if not counts:
        return "ignored channels: none"
    return "ignored channels (records): " + ", ".join(f"{name} {n}" for name, n in counts.most_common())


def prepare_wfdb_dir(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    converter: WfdbConverter | None = None,
    source_name: str | None = None,
    patient_from_folder: bool = False,
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a folder of WFDB records into ``out_dir`` (see :func:`~.pipeline.prepare`)."""
    converter = converter or WfdbConverter()
    items, skipped, facts = wfdb_dir_items(src_dir, source_name=source_name, patient_from_folder=patient_from_folder)
    config = {
        "src_dir": str(Path(src_dir).resolve()),
        "patient_from_folder": patient_from_folder,
        **converter_config(converter),
        **facts,
    }
    return prepare(
        items,
        converter,
        out_dir,
        options=options,
        skipped=skipped,
        source="wfdb_dir",
        config=config,
        labels=CINC2021_LABEL_SET,
    )


def wfdb_preparer_parser(description: str, src_help: str) -> argparse.ArgumentParser:
    """The command line of a WFDB preparer: ``SRC_DIR OUT_DIR`` (its own options are added after)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("src_dir", help=src_help)
    parser.add_argument("out_dir", help="output folder (records/, train/valid/test .tsv and .csv)")
    return parser


def run_wfdb_preparer(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    prepare_with: Callable[[argparse.Namespace, WfdbConverter, PrepareOptions], PrepareResult],
) -> int:
    """Add the shared WFDB and pipeline options, parse, prepare, print the summary; a
    :class:`PrepareError` is one line on stderr and exit status 2."""
    add_wfdb_arguments(parser)
    add_pipeline_arguments(parser)
    args = parser.parse_args(argv)
    quiet_file_logging()
    try:
        result = prepare_with(args, converter_from_args(args), wfdb_options_from_args(args))
    except PrepareError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(summarise_channels(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = wfdb_preparer_parser(
        "Prepare any folder of WFDB records (any lead names, order, subset or rate): "
        "one .mat per record at --target-rate, splits, fairseq manifests, skip report.",
        "folder searched recursively for WFDB records (.hea)",
    )
    parser.add_argument(
        "--source-name", default=None, help="value of the 'source' column (default: the name of SRC_DIR)"
    )
    parser.add_argument(
        "--patient-from-folder",
        action="store_true",
        help="patient id = the record's folder name when the header gives none",
    )
    return run_wfdb_preparer(
        parser,
        argv,
        lambda args, converter, options: prepare_wfdb_dir(
            args.src_dir,
            args.out_dir,
            converter=converter,
            source_name=args.source_name,
            patient_from_folder=args.patient_from_folder,
            options=options,
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
