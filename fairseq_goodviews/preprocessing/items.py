"""The types a preparer and the pipeline share: source items, skips, options, results, errors.

A preparer lists its records as :class:`SourceItem` objects and the records it rejects up front
as :class:`Skipped` (with one of the skip categories below); its converter raises
:class:`SkipRecord` to reject a record. :class:`PrepareOptions` are the options every preparer
shares, :class:`PrepareResult` what :func:`~fairseq_goodviews.preprocessing.pipeline.prepare`
returns.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fairseq_goodviews.errors import GoodviewsError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
RECORDS_DIR = "records"
STATE_DIR = ".prepare"
JOURNAL = "journal.jsonl"
LOCK = "lock"

# Skip categories (the ``category`` column of skipped.csv and the keys of the report's counts).
FILTERED = "filtered"  # excluded by a cohort rule (age, exclude list, source subset)
MISSING_FILE = "missing_file"  # a data file the metadata refers to does not exist
UNREADABLE = "unreadable"  # corrupt, truncated or malformed data file
BAD_SIGNAL = "bad_signal"  # NaN/inf, flat or no leads (signal_problems)
UNKNOWN_LABEL = "unknown_label"  # a label/rhythm code outside the known vocabulary
TOO_SHORT = "too_short"  # shorter than one segment
DUPLICATE = "duplicate"  # the same record listed twice in the source metadata
ERROR = "error"  # an unexpected exception in the converter

# Metadata columns a converter fills when it wrote a record with a change worth knowing.
NOTE_COLUMNS: dict[str, str] = {
    "flat_leads": "with flat leads marked absent",
    "repaired_samples": "with invalid samples repaired",
}

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class PrepareError(GoodviewsError, RuntimeError):
    """Preparation cannot proceed (bad input, nothing to write, OUT in use)."""


def read_source_table(path: Path, required: Sequence[str], what: str, **read_csv: Any) -> pd.DataFrame:
    """A source collection's CSV table (``read_csv`` passed to :func:`pandas.read_csv`);
    :class:`PrepareError` naming the file when it is unreadable or lacks a ``required`` column."""
    try:
        table = pd.read_csv(path, **read_csv)
    except Exception as exc:  # pandas raises several types for garbled files
        raise PrepareError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise PrepareError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


class SkipRecord(Exception):
    """Raised by a converter to reject one record; it is listed in ``skipped.csv``."""

    def __init__(self, reason: str, *, category: str = UNREADABLE, file: str | os.PathLike | None = None):
        super().__init__(reason)
        self.reason = reason
        self.category = category
        self.file = None if file is None else str(file)

    def __reduce__(self):  # keep keyword-only fields across process boundaries
        return (_make_skip_record, (self.reason, self.category, self.file))


def _make_skip_record(reason: str, category: str, file: str | None) -> SkipRecord:
    return SkipRecord(reason, category=category, file=file)


@dataclass(frozen=True)
class SourceItem:
    """One record of a source, as listed by a preparer.

    ``key`` is unique and becomes the file stem (letters, digits and ``_ . + -``);
    ``patient_id`` groups records of one patient for the splits (empty: the key);
    ``meta`` holds metadata-table columns (age, sex, rhythm, beat, label, source, attr_*, ...);
    ``source`` is whatever the converter needs (usually the path of the raw file).
    """

    key: str
    patient_id: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: Any = None

    @property
    def file(self) -> str:
        """The file named in the skip report when a record of this item is rejected."""
        return str(self.source) if isinstance(self.source, (str, os.PathLike)) else ""


@dataclass(frozen=True)
class Skipped:
    """A record (or segment) that was not written, and why."""

    key: str
    file: str
    reason: str
    category: str = FILTERED


@dataclass
class PrepareOptions:
    """Options shared by every preparer (see :func:`add_pipeline_arguments` for the CLI)."""

    workers: int = 1
    seed: int = 0
    split_fractions: tuple[float, ...] = (0.6, 0.2, 0.2)
    split_names: tuple[str, ...] = SPLITS
    # Patients are assigned to splits per value of this column (missing column: unstratified).
    stratify_by: str | None = "label"
    # A metadata column holding each record's split name (predefined splits, e.g. PTB-XL folds
    # mapped to train/valid/test by the preparer); overrides the random assignment.
    split_column: str | None = None
    # Cut records into consecutive non-overlapping segments of this many samples (None: whole).
    segment_samples: int | None = None
    chunksize: int | None = None
    progress: bool = True
    # Replace the manifests of a folder prepared with other options (otherwise that is an error:
    # checkpoints trained on the old split would silently change meaning).
    overwrite: bool = False
    # Pack each split after writing its manifest (the fastest record path for training).
    pack: bool = False
    # (I, N): convert only shard I of N (the records whose key hashes to I, :mod:`~.shards`) and
    # journal them for goodviews-merge-shards, which writes the splits, manifests and report.
    shard: tuple[int, int] | None = None

    def validate(self) -> None:
        if self.workers < 1:
            raise PrepareError(f"workers must be >= 1, got {self.workers}")
        if self.segment_samples is not None and self.segment_samples < 1:
            raise PrepareError(f"segment_samples must be >= 1, got {self.segment_samples}")
        if len(self.split_fractions) != len(self.split_names):
            raise PrepareError(
                f"{len(self.split_fractions)} split fractions for {len(self.split_names)} splits "
                f"({', '.join(self.split_names)})"
            )
        if any(f < 0 for f in self.split_fractions) or not math.isclose(sum(self.split_fractions), 1.0, abs_tol=1e-6):
            raise PrepareError(f"split fractions must be >= 0 and sum to 1, got {list(self.split_fractions)}")
        if self.shard is not None:
            index, count = self.shard
            if count < 1 or not 0 <= index < count:
                raise PrepareError(f"shard {index}/{count}: give I/N with N >= 1 and 0 <= I < N")
            if self.pack:
                raise PrepareError("--pack packs the merged splits: give it to goodviews-merge-shards, not to a shard")


@dataclass
class PrepareResult:
    out_dir: Path
    records: int  # source records with at least one file written
    files: int  # .mat files (records x segments)
    reused: int  # records taken over from a previous run of the same OUT
    skipped: list[Skipped]
    splits: dict[str, pd.DataFrame]
    report: dict[str, Any]
    # (I, N) for a shard's run: its records only, no splits or report until the merge.
    shard: tuple[int, int] | None = None


def is_valid_key(key: Any) -> bool:
    """Whether ``key`` can be a record key (a file stem: letters, digits and ``_ . + -``)."""
    return isinstance(key, str) and _KEY_PATTERN.match(key) is not None


def validate_items(items: Sequence[SourceItem], skipped: Sequence[Skipped]) -> None:
    """Raise :class:`PrepareError` on keys unusable as file names, duplicate keys, or no records at all."""
    bad = [i.key for i in items if not is_valid_key(i.key)]
    if bad:
        raise PrepareError(
            f"record key(s) unusable as file names: {', '.join(map(repr, bad[:5]))} (use letters, digits and _ . + -)"
        )
    counts = Counter(i.key for i in items)
    duplicates = [k for k, n in counts.items() if n > 1]
    if duplicates:
        raise PrepareError(f"duplicate record key(s): {', '.join(duplicates[:5])}")
    if not items and not skipped:
        raise PrepareError("no source records to prepare")
