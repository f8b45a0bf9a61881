"""The shared preprocessing engine: source items -> per-record ``.mat`` files, splits, manifests.

Every preparer (Chapman, PhysioNet 2021, PTB-XL, generic WFDB) does two things of its own:

1. lists its records as :class:`SourceItem` objects (a unique ``key`` that becomes the file
   stem, a ``patient_id``, metadata for the table, and whatever ``source`` its converter needs),
   reporting records it rejects up front (cohort rules, missing files) as :class:`Skipped`;
2. supplies a picklable ``convert(item) -> EcgRecord`` that loads one record, or raises
   :class:`SkipRecord` (or :class:`~fairseq_goodviews.io.records.RecordError`) to reject it.

:func:`prepare` does the rest, identically for every source::

    OUT/records/<key>.mat            one file per record (or <key>_s<k>.mat per segment)
    OUT/train.tsv, valid.tsv, ...    manifests (root line = OUT, paths relative to it)
    OUT/train.csv, valid.csv, ...    metadata tables, row for row with the manifests
    OUT/skipped.csv                  key, file, reason, category of every record not written
    OUT/prepare_report.json          counts by outcome, reason and split, options used
    OUT/train.packed.npy, ...        with ``pack``: each split packed (:mod:`~fairseq_goodviews.io.packed`)

An output folder that cannot be written (its path is a file, no permission) is a
:class:`PrepareError` naming it, raised before anything is written. Records written with a
note (leads marked absent because flat, invalid samples repaired: the columns of
:data:`NOTE_COLUMNS`) are counted in the report and the summary line.

It runs ``options.workers`` processes, and the output does not depend on their number. It is
resumable: each finished record is logged in ``OUT/.prepare/journal.jsonl`` after its files are
written, so a re-run (after a crash, ``kill -9`` or Ctrl-C) converts only what is missing and
writes byte-identical manifests. A record is converted again when its item, the converter or
the options that shape its files change. After a complete run ``OUT/records`` holds exactly
the files the manifests list.

Rewritten manifests outdate the packs beside them, so a run removes the packs of its splits and,
with ``options.pack``, packs each split again (training reads a pack while it matches its
manifest, else the ``.mat`` files): no outdated pack is left behind.

Metadata flows as follows: ``item.meta`` goes to the metadata table; ``record.meta`` (what the
converter returns) goes into the ``.mat`` file and its scalar values into the table as well
(they win over ``item.meta``, e.g. an age read from a WFDB header). The pipeline adds
``record_id`` (the key), ``segment``, ``patient_id``, ``path``, ``n_samples`` and
``sample_rate``.

The record files hold the label and the patient in the numeric forms fairseq-signals' readers
take, so its fine-tuning and identification datasets read a prepared folder as it is:
``label`` is a multi-hot logical vector over the classes named in ``label_classes`` (the
preparer's :class:`~fairseq_goodviews.labels.RecordLabels`: the four rhythm classes, or the 26
CinC 2021 classes for WFDB sources), ``patient_id`` an integer (:func:`patient_numbers`). Our
string forms are kept as ``label_name`` (the table's ``label``) and ``patient`` (the table's
``patient_id``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from fairseq_goodviews.io.atomic import OutputPathError, atomic_open, ensure_writable_dir
from fairseq_goodviews.io.locks import exclusive_lock
from fairseq_goodviews.io.manifest import ManifestError, write_manifest
from fairseq_goodviews.io.packed import pack_line, remove_pack, write_pack
from fairseq_goodviews.io.records import (
    LABEL_CLASSES_KEY,
    LABEL_NAME_KEY,
    N_LEADS,
    PATIENT_KEY,
    EcgRecord,
    RecordError,
    write_record,
)
from fairseq_goodviews.labels import RecordLabels, record_labels

SPLITS: tuple[str, ...] = ("train", "valid", "test")
RECORDS_DIR = "records"
STATE_DIR = ".prepare"
JOURNAL = "journal.jsonl"

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
_INTEGER = re.compile(r"-?[0-9]+")
_IDENTITY_COLUMNS = ("path", "n_samples", "record_id", "segment", "patient_id")


class PrepareError(RuntimeError):
    """Preparation cannot proceed (bad input, nothing to write, OUT in use)."""


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


@dataclass
class PrepareResult:
    out_dir: Path
    records: int  # source records with at least one file written
    files: int  # .mat files (records x segments)
    reused: int  # records taken over from a previous run of the same OUT
    skipped: list[Skipped]
    splits: dict[str, pd.DataFrame]
    report: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# per-record work (runs in worker processes)


@dataclass(frozen=True)
class _Job:
    records_dir: str
    segment_samples: int | None
    convert_id: str
    record_labels: RecordLabels
    # The integer each patient id gets in the record files (fairseq-signals' ``patient_id``).
    patient_numbers: Mapping[str, int]


_NOT_SCALAR = object()


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (missing values -> None), or ``_NOT_SCALAR`` for arrays etc."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (str, bool, int, float)):
        return value
    return _NOT_SCALAR


def _fingerprint(item: SourceItem, job: _Job) -> str:
    """What a record's files depend on: the item, the converter and the segmentation."""
    payload = json.dumps(
        [
            item.key,
            item.patient_id,
            {k: _plain_or_repr(v) for k, v in item.meta.items()},
            repr(item.source),
            job.segment_samples,
            job.convert_id,
            job.record_labels.name,
            job.patient_numbers[item.patient_id or item.key],
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(payload.encode()).hexdigest()


def _plain_or_repr(value: Any) -> Any:
    plain = _plain(value)
    return repr(value) if plain is _NOT_SCALAR else plain


def _describe_converter(convert: Callable) -> str:
    """A stable description: dataclass converters by their fields, functions by their name."""
    if dataclasses.is_dataclass(convert) and not isinstance(convert, type):
        return repr(convert)
    if isinstance(convert, functools.partial):
        return f"{_describe_converter(convert.func)}{convert.args!r}{convert.keywords!r}"
    named = convert if hasattr(convert, "__qualname__") else type(convert)
    return f"{named.__module__}.{named.__qualname__}"


def _skip_entry(key: str, file: str, reason: str, category: str) -> dict[str, str]:
    return {"key": key, "file": file, "reason": reason, "category": category}


def _segments(record: EcgRecord, segment_samples: int | None) -> list[tuple[int | None, np.ndarray]]:
    if segment_samples is None:
        return [(None, record.feats)]
    count = record.n_samples // segment_samples
    return [(k, record.feats[:, k * segment_samples : (k + 1) * segment_samples]) for k in range(count)]


def _process_item(item: SourceItem, convert: Callable[[SourceItem], EcgRecord], job: _Job) -> str:
    """Convert one item, write its files, and return its journal line (JSON)."""
    fingerprint = _fingerprint(item, job)
    entry: dict[str, Any] = {"key": item.key, "fp": fingerprint, "rows": [], "skips": []}
    try:
        record = convert(item)
        if not isinstance(record, EcgRecord):
            raise TypeError(f"converter returned {type(record).__name__}, expected EcgRecord")
        shape = np.shape(record.feats)
        if len(shape) != 2 or shape[0] != N_LEADS:
            raise ValueError(f"converter returned feats of shape {list(shape)}, expected [{N_LEADS}, T]")
    except SkipRecord as exc:
        entry["skips"].append(_skip_entry(item.key, exc.file or item.file, exc.reason, exc.category))
        return json.dumps(entry)
    except RecordError as exc:
        entry["skips"].append(_skip_entry(item.key, exc.path, exc.problem, UNREADABLE))
        return json.dumps(entry)
    except Exception as exc:  # a converter bug or an unforeseen file problem: report, go on
        entry["skips"].append(_skip_entry(item.key, item.file, f"{type(exc).__name__}: {exc}", ERROR))
        return json.dumps(entry)

    segments = _segments(record, job.segment_samples)
    if not segments:
        entry["skips"].append(
            _skip_entry(
                item.key,
                item.file,
                f"{record.n_samples} samples, shorter than one segment of {job.segment_samples}",
                TOO_SHORT,
            )
        )
        return json.dumps(entry)

    table_meta = {}
    for name, value in [*item.meta.items(), *record.meta.items()]:
        plain = _plain(value)
        if plain is not _NOT_SCALAR and name not in _IDENTITY_COLUMNS:
            table_meta[name] = plain
    patient_id = item.patient_id or item.key
    file_meta = _file_meta(item, record, patient_id, job)
    for segment, feats_k in segments:
        stem = item.key if segment is None else f"{item.key}_s{segment}"
        mat_meta = dict(file_meta)
        if segment is not None:
            mat_meta["segment"] = segment
        path = Path(job.records_dir) / f"{stem}.mat"
        try:
            write_record(
                path,
                EcgRecord(
                    feats=feats_k, sample_rate=record.sample_rate, lead_present=record.lead_present, meta=mat_meta
                ),
            )
        except RecordError as exc:  # write_record refuses NaN/inf, flat leads and no leads
            entry["skips"].append(_skip_entry(stem, item.file, exc.problem, BAD_SIGNAL))
            continue
        row = {
            "path": f"{RECORDS_DIR}/{stem}.mat",
            "n_samples": int(feats_k.shape[1]),
            "record_id": item.key,
            "segment": 0 if segment is None else segment,
            "patient_id": patient_id,
            **table_meta,
            "sample_rate": float(record.sample_rate),
        }
        entry["rows"].append(row)
    return json.dumps(entry)


def _file_meta(item: SourceItem, record: EcgRecord, patient_id: str, job: _Job) -> dict[str, Any]:
    """What a record file holds beside its signal: the converter's metadata, the record id, and
    the label and patient in the numeric forms fairseq-signals reads (``label``: the multi-hot
    vector of ``job.record_labels``; ``patient_id``: the patient's integer) with our string
    forms under :data:`~fairseq_goodviews.io.records.LABEL_NAME_KEY` and
    :data:`~fairseq_goodviews.io.records.PATIENT_KEY`."""
    meta = dict(record.meta)
    merged = {**item.meta, **record.meta}  # as the metadata table has it: the converter's values win
    meta.pop("label", None)
    if isinstance(merged.get("label"), str):
        meta[LABEL_NAME_KEY] = merged["label"]
    meta.update(
        record_id=item.key,
        patient_id=job.patient_numbers[patient_id],
        label=job.record_labels.vector(merged),
        **{PATIENT_KEY: patient_id, LABEL_CLASSES_KEY: ",".join(job.record_labels.classes)},
    )
    return meta


def patient_numbers(patient_ids: Iterable[str]) -> dict[str, int]:
    """The integer of each patient id in the record files: the id itself when every id is a
    decimal integer that fits int32 (PTB-XL's patients; fairseq-signals' identification batch
    holds them in an ``IntTensor``), else the id's rank among the sorted distinct ids."""
    ids = sorted(set(patient_ids))
    if all(_INTEGER.fullmatch(i) and abs(int(i)) < 2**31 and str(int(i)) == i for i in ids):
        return {i: int(i) for i in ids}
    return {i: n for n, i in enumerate(ids)}


_WORKER_STATE: dict[str, Any] = {}


def _init_worker(convert: Callable, job: _Job) -> None:
    _WORKER_STATE["convert"] = convert
    _WORKER_STATE["job"] = job


def _worker(item: SourceItem) -> str:
    return _process_item(item, _WORKER_STATE["convert"], _WORKER_STATE["job"])


# ---------------------------------------------------------------------------------------------
# journal, lock, clean-up


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """Entries by key (last wins). A line cut short by a kill is dropped and truncated away."""
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    for line in complete.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "key" in entry:
            entries[entry["key"]] = entry
    return entries


def _remove_temporaries(folder: Path) -> None:
    """Remove temporary files that atomic writes of a killed run left behind."""
    if folder.is_dir():
        for path in folder.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _check_out_dir(out_dir: Path) -> None:
    records = out_dir / RECORDS_DIR
    if records.is_dir() and not (out_dir / STATE_DIR).is_dir():
        if any(records.glob("*.mat")):
            raise PrepareError(
                f"{out_dir}: {RECORDS_DIR}/ holds .mat files that this pipeline did not write; "
                "choose an empty output directory"
            )


# ---------------------------------------------------------------------------------------------
# splits


def assign_splits(
    table: pd.DataFrame,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify_by: str | None = None,
    names: Sequence[str] = SPLITS,
    patient_column: str = "patient_id",
) -> pd.Series:
    """Patient-wise, seeded, optionally stratified split assignment; returns names per row.

    Each patient's stratum is its most frequent ``stratify_by`` value (ties: the smallest value;
    missing values form a stratum of their own). Within a stratum, patients (sorted by id, then
    shuffled) get evenly spaced positions (rank + 0.5) / n in [0, 1); all patients, ordered by
    position (random tie-break), are cut at the cumulative fractions. So the split sizes match
    the fractions over all patients, every stratum is spread over the splits in proportion
    (within one patient), and no patient appears in two splits. The result depends only on
    the table's content and ``seed``.
    """
    if len(fractions) != len(names):
        raise PrepareError(f"{len(fractions)} split fractions for {len(names)} split names")
    patients = table[patient_column].astype(str)
    if stratify_by is not None and stratify_by in table.columns:
        labels = table[stratify_by].map(lambda v: "" if pd.isna(v) else str(v))
        counts = pd.DataFrame({"p": patients, "l": labels}).value_counts().reset_index(name="n")
        counts = counts.sort_values(["p", "n", "l"], ascending=[True, False, True])
        stratum_of = counts.drop_duplicates("p").set_index("p")["l"]
    else:
        stratum_of = pd.Series("", index=pd.Index(sorted(patients.unique()), name="p"))
    rng = np.random.default_rng(seed)
    members: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for stratum in sorted(stratum_of.unique()):
        group = np.array(sorted(stratum_of.index[stratum_of == stratum]), dtype=object)
        members.append(group[rng.permutation(len(group))])
        positions.append((np.arange(len(group)) + 0.5) / len(group))
    ordered = np.concatenate(members)
    ordered = ordered[np.lexsort((rng.random(len(ordered)), np.concatenate(positions)))]
    bounds = np.concatenate([[0], np.round(np.cumsum(fractions) * len(ordered)).astype(int)])
    bounds[-1] = len(ordered)
    split_of: dict[str, str] = {}
    for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
        split_of.update((p, name) for p in ordered[start:stop])
    return patients.map(split_of)


def _predefined_splits(table: pd.DataFrame, column: str, names: Sequence[str]) -> pd.Series:
    if column not in table.columns:
        raise PrepareError(f"split column {column!r} is not in the metadata of the written records")
    splits = table[column].astype(str)
    bad = table.loc[~splits.isin(names), "record_id"]
    if len(bad):
        raise PrepareError(
            f"split column {column!r} has values outside {', '.join(names)} for record(s) "
            f"{', '.join(bad.astype(str).unique()[:5])}"
        )
    return splits


# ---------------------------------------------------------------------------------------------
# the pipeline


def is_valid_key(key: Any) -> bool:
    """Whether ``key`` can be a record key (a file stem: letters, digits and ``_ . + -``)."""
    return isinstance(key, str) and _KEY_PATTERN.match(key) is not None


def _validate_items(items: Sequence[SourceItem], skipped: Sequence[Skipped]) -> None:
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


def metadata_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> table; integer columns with missing values stay integer (``Int64``), not float."""
    table = pd.DataFrame.from_records(rows)
    for column in table.columns[(table.dtypes == np.float64).to_numpy() & table.isna().any().to_numpy()]:
        values = [r.get(column) for r in rows]
        if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            table[column] = table[column].astype("Int64")
    return table


def _run(todo: list[SourceItem], convert: Callable, job: _Job, options: PrepareOptions, desc: str) -> Iterator[str]:
    progress = tqdm(total=len(todo), desc=desc, unit="rec", disable=not options.progress, leave=False)
    with progress:
        if options.workers == 1 or len(todo) <= 1:
            for item in todo:
                yield _process_item(item, convert, job)
                progress.update()
            return
        chunksize = options.chunksize or max(1, min(32, len(todo) // (options.workers * 8)))
        # A worker that dies (OOM, kill) breaks the executor instead of hanging it, as Pool would.
        # Forked workers inherit the imported modules (the package imports fairseq when present).
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        executor = ProcessPoolExecutor(
            options.workers, mp_context=context, initializer=_init_worker, initargs=(convert, job)
        )
        try:
            for line in executor.map(_worker, todo, chunksize=chunksize):
                yield line
                progress.update()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


def prepare(
    items: Sequence[SourceItem],
    convert: Callable[[SourceItem], EcgRecord],
    out_dir: str | Path,
    *,
    options: PrepareOptions | None = None,
    skipped: Iterable[Skipped] = (),
    source: str = "prepare",
    config: Mapping[str, Any] | None = None,
    labels: str = "rhythm",
) -> PrepareResult:
    """Convert ``items`` with ``convert`` into ``out_dir`` (records, splits, manifests, reports).

    ``skipped`` lists records the preparer rejected before conversion (cohort rules, missing
    files); they appear in ``skipped.csv`` with the converter's rejections. ``source`` names the
    dataset in messages and the report; ``config`` (JSON-serialisable) records the preparer's
    own options and facts in the report. ``labels`` names the label vector every record file
    gets (:func:`~fairseq_goodviews.labels.record_labels`: ``rhythm`` or ``cinc2021``).

    On a re-run into the same ``out_dir`` a record is converted again only if its item (key,
    patient, meta, source), the converter (a dataclass converter by its fields, a function by
    its name) or ``segment_samples`` changed: put every option that changes a record's content
    into the item or the converter's fields.
    Raises :class:`PrepareError` on unusable input or when no record could be written (the
    skip report is written first, so the reasons can be read).
    """
    options = options or PrepareOptions()
    options.validate()
    items = list(items)
    pre_skipped = list(skipped)
    _validate_items(items, pre_skipped)
    out_dir = Path(out_dir)

    records_dir = out_dir / RECORDS_DIR
    state_dir = out_dir / STATE_DIR
    try:
        ensure_writable_dir(out_dir)
        _check_out_dir(out_dir)
        ensure_writable_dir(records_dir)
        ensure_writable_dir(state_dir)
    except OutputPathError as exc:
        raise PrepareError(str(exc)) from None
    check_same_preparation(out_dir, source, dataclasses.asdict(options), config, options.overwrite)
    job = _Job(
        str(records_dir),
        options.segment_samples,
        _describe_converter(convert),
        record_labels(labels),
        patient_numbers(item.patient_id or item.key for item in items),
    )

    with exclusive_lock(state_dir / "lock", f"another preparation is writing {out_dir}", PrepareError):
        for folder in (records_dir, out_dir, state_dir):
            _remove_temporaries(folder)
        entries, reused = _convert(items, convert, job, options, state_dir / JOURNAL, source)
        rows = [row for entry in entries for row in entry["rows"]]
        all_skipped = pre_skipped + [Skipped(**s) for entry in entries for s in entry["skips"]]
        write_skipped(out_dir / "skipped.csv", all_skipped)
        if not rows:  # leave an earlier run's records and manifests alone
            write_report(
                out_dir, _report(source, options, config, items, pre_skipped, rows, all_skipped, {}, None, job)
            )
            reasons = ", ".join(f"{k}: {n}" for k, n in sorted(Counter(s.category for s in all_skipped).items()))
            raise PrepareError(
                f"{source}: no record written ({len(all_skipped)} skipped: {reasons}); see {out_dir / 'skipped.csv'}"
            )

        table = metadata_table(rows)
        if options.split_column:
            split = _predefined_splits(table, options.split_column, options.split_names)
            stratified = None
        else:
            stratify_by = options.stratify_by
            stratified = stratify_by if stratify_by in table.columns and table[stratify_by].notna().any() else None
            split = assign_splits(table, options.split_fractions, options.seed, stratified, options.split_names)
        removed_packs = remove_outdated_packs(out_dir, options.split_names)
        splits: dict[str, pd.DataFrame] = {}
        for name in options.split_names:
            part = table[(split == name).to_numpy()].reset_index(drop=True)
            if len(part):
                write_manifest(out_dir, name, out_dir, part)
                splits[name] = part
            else:
                for suffix in (".tsv", ".csv"):
                    with contextlib.suppress(FileNotFoundError):
                        (out_dir / f"{name}{suffix}").unlink()
        report = _report(source, options, config, items, pre_skipped, rows, all_skipped, splits, stratified, job)
        report.update(packed=None, removed_packs=removed_packs)  # packed: with --pack, each split's pack
        write_report(out_dir, report)
        _remove_unlisted(records_dir, {out_dir / row["path"] for row in rows})
        if options.pack:
            report["packed"] = pack_splits(out_dir, list(splits))
            write_report(out_dir, report)

    result = PrepareResult(
        out_dir=out_dir,
        records=sum(1 for e in entries if e["rows"]),
        files=len(rows),
        reused=reused,
        skipped=all_skipped,
        splits=splits,
        report=report,
    )
    print(_summary_line(result, source))
    for line in pack_report_lines(out_dir, report):
        print(line)
    return result


def _convert(
    items: Sequence[SourceItem], convert: Callable, job: _Job, options: PrepareOptions, journal_path: Path, source: str
) -> tuple[list[dict[str, Any]], int]:
    """Journal entries of ``items`` in their order (finished ones reused), and how many were reused.

    An entry is appended to the journal as soon as its files are written; at the end the journal
    is rewritten with the current entries only.
    """
    previous = _read_journal(journal_path)
    results: dict[str, dict[str, Any]] = {}
    todo: list[SourceItem] = []
    for item in items:
        entry = previous.get(item.key)
        if (
            entry is not None
            and entry.get("fp") == _fingerprint(item, job)
            and all((Path(job.records_dir).parent / row["path"]).is_file() for row in entry["rows"])
        ):
            results[item.key] = entry
        else:
            todo.append(item)
    reused = len(results)
    with open(journal_path, "a") as journal:
        for line in _run(todo, convert, job, options, source):
            entry = json.loads(line)
            results[entry["key"]] = entry
            if entry["rows"]:
                journal.write(line + "\n")
                journal.flush()
    entries = [results[item.key] for item in items]
    with atomic_open(journal_path) as handle:
        handle.writelines(json.dumps(entry) + "\n" for entry in entries if entry["rows"])
    return entries, reused


def _remove_unlisted(records_dir: Path, keep: set) -> None:
    """Delete record files of earlier runs that the new manifests no longer list."""
    for path in records_dir.glob("*.mat"):
        if path not in keep:
            path.unlink()


def write_skipped(path: Path, skipped: Sequence[Skipped]) -> None:
    """``skipped.csv``: key, file, reason and category of every record not written."""
    frame = pd.DataFrame(
        [dataclasses.astuple(s) for s in skipped], columns=[f.name for f in dataclasses.fields(Skipped)]
    )
    with atomic_open(path, newline="") as handle:
        frame.to_csv(handle, index=False)


def _report(
    source: str,
    options: PrepareOptions,
    config: Mapping[str, Any] | None,
    items: Sequence[SourceItem],
    pre_skipped: Sequence[Skipped],
    rows: Sequence[dict[str, Any]],
    skipped: Sequence[Skipped],
    splits: Mapping[str, pd.DataFrame],
    stratified: str | None,
    job: _Job,
) -> dict[str, Any]:
    written = {row["record_id"] for row in rows}
    return {
        "source": source,
        "source_records": len(items) + len(pre_skipped),
        "written_records": len(written),
        "written_files": len(rows),
        "skipped": len(skipped),
        "skipped_by_category": dict(sorted(Counter(s.category for s in skipped).items())),
        "written_with_notes": {
            column: len({row["record_id"] for row in rows if row.get(column)}) for column in NOTE_COLUMNS
        },
        "splits": {
            name: {
                "records": int(part["record_id"].nunique()),
                "files": len(part),
                "patients": int(part["patient_id"].nunique()),
            }
            for name, part in splits.items()
        },
        "stratified_by": stratified,
        # The classes of the record files' ``label`` vector (fairseq-signals' num_labels).
        "record_labels": {"name": job.record_labels.name, "classes": list(job.record_labels.classes)},
        "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "progress"},
        "config": dict(config or {}),
    }


#: Options that do not change what a preparation writes (how fast, how verbose).
_RUN_OPTIONS = ("workers", "chunksize", "progress", "overwrite", "pack")


def _shaping(options: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options and preparer config that decide a preparation's records and splits (JSON form)."""
    kept = {k: v for k, v in options.items() if k not in _RUN_OPTIONS}
    return json.loads(json.dumps({"options": kept, "config": dict(config or {})}, default=str))


def check_same_preparation(
    out_dir: Path,
    source: str,
    options: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    overwrite: bool,
) -> None:
    """Refuse to rewrite a folder prepared from another source or with other options (what its
    ``prepare_report.json`` says), unless ``overwrite``: checkpoints trained on its splits would
    silently change meaning. ``options`` and ``config`` are as the report records them."""
    report_path = out_dir / "prepare_report.json"
    if overwrite or not report_path.is_file():
        return
    try:
        before = json.loads(report_path.read_text())
    except (OSError, json.JSONDecodeError):
        return  # an unreadable report is rewritten by this run
    advice = (
        "pass --overwrite to replace its manifests (checkpoints trained on the old split then refer to "
        "another split), or prepare into another folder"
    )
    if before.get("source", source) != source:
        raise PrepareError(f"{out_dir} was prepared from {before['source']}, not {source}: {advice}")
    old = _shaping(before.get("options", {}), before.get("config"))
    new = _shaping(options, config)
    changed = [
        f"{key} {old[part].get(key)!r} -> {new[part].get(key)!r}"
        for part in ("options", "config")
        for key in sorted(set(old[part]) | set(new[part]))
        if old[part].get(key) != new[part].get(key)
    ]
    if changed:
        raise PrepareError(f"{out_dir} was prepared with other options ({'; '.join(changed)}): {advice}")


def remove_outdated_packs(out_dir: Path, splits: Iterable[str]) -> list[str]:
    """Delete the packs of ``splits`` in ``out_dir``, whose manifests are about to be rewritten (or
    removed) and would no longer match them; return the splits that had one."""
    return [name for name in splits if remove_pack(out_dir / f"{name}.tsv")]


def pack_splits(out_dir: Path, splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Pack each split of ``out_dir`` (:func:`~fairseq_goodviews.io.packed.write_pack`); return
    the report's ``packed`` entry: per split its records, samples, bytes, seconds and data file.

    A pack that cannot be written (no room, an unwritable folder, a record that changed) is one
    :class:`PrepareError` line, and every pack of ``splits`` is removed first: the records and
    manifests are complete, and training reads the ``.mat`` files.
    """
    packed: dict[str, dict[str, Any]] = {}
    for name in splits:
        try:
            summary = write_pack(out_dir / f"{name}.tsv")
        except (ManifestError, RecordError, OSError) as exc:
            remove_outdated_packs(out_dir, splits)
            raise PrepareError(
                f"--pack: {exc}; the records and manifests are written and training reads the .mat files "
                f"(goodviews-pack {out_dir} packs them once this is fixed)"
            ) from None
        packed[name] = {
            "records": summary["records"],
            "samples": summary["samples"],
            "bytes": summary["bytes"],
            "seconds": round(summary["seconds"], 3),
            "file": Path(summary["data"]).name,
        }
    return packed


def pack_report_lines(out_dir: Path, report: Mapping[str, Any]) -> list[str]:
    """The lines a preparation prints on its packs (the report's ``packed`` and ``removed_packs``):
    one per packed split, as ``goodviews-pack`` prints them, or which outdated packs were removed
    when it did not pack."""
    if report["packed"] is not None:
        return [pack_line(name, {**entry, "data": out_dir / entry["file"]}) for name, entry in report["packed"].items()]
    if report["removed_packs"]:
        removed = report["removed_packs"]
        return [
            f"removed the packs of {', '.join(removed)}: the new manifests outdate them "
            f"(--pack, or goodviews-pack {out_dir}, packs the splits again)"
        ]
    return []


def write_report(out_dir: Path, report: Mapping[str, Any]) -> None:
    """``prepare_report.json``, atomically."""
    with atomic_open(out_dir / "prepare_report.json") as handle:
        json.dump(report, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")


def _summary_line(result: PrepareResult, source: str) -> str:
    """The one line a preparation prints: records written per split, notes, skips by category."""
    report = result.report
    splits = " / ".join(f"{n} {v['records']}" for n, v in report["splits"].items())
    files = f" ({result.files} files)" if result.files != result.records else ""
    noun = "record" if result.records == 1 else "records"
    line = f"{source}: wrote {result.records} {noun}{files} to {result.out_dir} [{splits}]"
    notes = [f"{n} {NOTE_COLUMNS[column]} ({column} column)" for column, n in report["written_with_notes"].items() if n]
    if notes:
        line += "; " + ", ".join(notes)
    if report["skipped"]:
        reasons = ", ".join(f"{k} {n}" for k, n in report["skipped_by_category"].items())
        line += f"; skipped {report['skipped']} ({reasons}; see skipped.csv)"
    if result.reused:
        line += f"; {result.reused} reused from an earlier run"
    return line


# ---------------------------------------------------------------------------------------------
# command-line helpers for preparers


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every preparer shares (workers, seed, splits, segmentation, progress, packing)."""
    group = parser.add_argument_group("pipeline")
    group.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
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
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument(
        "--overwrite", action="store_true", help="replace the manifests of a folder prepared with other options"
    )
    group.add_argument(
        "--pack",
        action="store_true",
        help="then pack each split into <split>.packed.npy beside its manifest, the fastest record path "
        "for training (as much disk again as the records; without it, outdated packs are removed)",
    )


def options_from_args(args: argparse.Namespace, **overrides: Any) -> PrepareOptions:
    """:class:`PrepareOptions` from arguments added by :func:`add_pipeline_arguments`."""
    values = dict(
        workers=args.workers,
        seed=args.seed,
        split_fractions=tuple(args.split),
        segment_samples=args.segment_samples,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        pack=args.pack,
    )
    values.update(overrides)
    return PrepareOptions(**values)
