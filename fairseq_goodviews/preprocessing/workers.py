"""Per-record work: convert one source item, write its files, and return its journal line.

:func:`run_items` runs the items in ``options.workers`` processes (or in this one) and yields
each item's journal line in the items' order; :func:`record_fingerprint` is what a record's files
depend on (the item, the converter and the segmentation), :func:`record_stem` how they are named.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from fairseq_goodviews.io.records import (
    LABEL_CLASSES_KEY,
    LABEL_NAME_KEY,
    N_LEADS,
    PATIENT_KEY,
    EcgRecord,
    RecordError,
    write_record,
)
from fairseq_goodviews.labels import LabelSet
from fairseq_goodviews.preprocessing.items import (
    BAD_SIGNAL,
    ERROR,
    RECORDS_DIR,
    TOO_SHORT,
    UNREADABLE,
    PrepareOptions,
    SkipRecord,
    SourceItem,
)

_IDENTITY_COLUMNS = ("path", "n_samples", "record_id", "segment", "patient_id")


@dataclass(frozen=True)
class Job:
    """What every worker needs besides the converter to turn an item into record files."""

    records_dir: str
    segment_samples: int | None
    convert_id: str
    record_labels: LabelSet
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


def record_fingerprint(item: SourceItem, job: Job) -> str:
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


def record_stem(key: str, segment: int | None) -> str:
    """The file stem of a record (``segment`` None) or of one of its segments: ``<key>_<segment>``,
    the name fairseq-signals' CMSC tools (``convert_to_cmsc_manifest.py``, ``CMSCECGDataset``)
    split at the last ``_`` into the record and the segment index. The split is unambiguous for
    keys that themselves end in ``_<digits>``: the segment index never holds a ``_``."""
    return key if segment is None else f"{key}_{segment}"


def rows_named_as_now(rows: list[dict[str, Any]], key: str, job: Job) -> bool:
    """Whether journal ``rows`` of record ``key`` name the files as :func:`record_stem` does now
    (a folder prepared by an older version named segments ``<key>_s<segment>``)."""
    return all(
        row["path"] == f"{RECORDS_DIR}/{record_stem(key, None if job.segment_samples is None else row['segment'])}.mat"
        for row in rows
    )


def _plain_or_repr(value: Any) -> Any:
    plain = _plain(value)
    return repr(value) if plain is _NOT_SCALAR else plain


def describe_converter(convert: Callable) -> str:
    """A stable description: dataclass converters by their fields, functions by their name."""
    if dataclasses.is_dataclass(convert) and not isinstance(convert, type):
        return repr(convert)
    if isinstance(convert, functools.partial):
        return f"{describe_converter(convert.func)}{convert.args!r}{convert.keywords!r}"
    named = convert if hasattr(convert, "__qualname__") else type(convert)
    return f"{named.__module__}.{named.__qualname__}"


def _skip_entry(key: str, file: str, reason: str, category: str) -> dict[str, str]:
    return {"key": key, "file": file, "reason": reason, "category": category}


def _segments(record: EcgRecord, segment_samples: int | None) -> list[tuple[int | None, np.ndarray]]:
    if segment_samples is None:
        return [(None, record.feats)]
    count = record.n_samples // segment_samples
    return [(k, record.feats[:, k * segment_samples : (k + 1) * segment_samples]) for k in range(count)]


def _process_item(item: SourceItem, convert: Callable[[SourceItem], EcgRecord], job: Job) -> str:
    """Convert one item, write its files, and return its journal line (JSON)."""
    fingerprint = record_fingerprint(item, job)
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
        stem = record_stem(item.key, segment)
        mat_meta = dict(file_meta)
        if segment is not None:
            mat_meta["segment"] = segment
        path = Path(job.records_dir) / f"{stem}.mat"
        try:
            write_record(  # made durable with the others before its journal line (:func:`~.journal.convert_items`)
                path,
                EcgRecord(
                    feats=feats_k, sample_rate=record.sample_rate, lead_present=record.lead_present, meta=mat_meta
                ),
                durable=False,
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


def _file_meta(item: SourceItem, record: EcgRecord, patient_id: str, job: Job) -> dict[str, Any]:
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


_WORKER_STATE: dict[str, Any] = {}


def _init_worker(convert: Callable, job: Job) -> None:
    threadpool_limits(1)
    _WORKER_STATE["convert"] = convert
    _WORKER_STATE["job"] = job


def _worker(item: SourceItem) -> str:
    return _process_item(item, _WORKER_STATE["convert"], _WORKER_STATE["job"])


def run_items(todo: list[SourceItem], convert: Callable, job: Job, options: PrepareOptions, desc: str) -> Iterator[str]:
    """Process ``todo`` (in ``options.workers`` processes) and yield each item's journal line in order."""
    progress = tqdm(total=len(todo), desc=desc, unit="rec", disable=not options.progress, leave=False)
    with progress:
        if options.workers == 1 or len(todo) <= 1:
            # One BLAS / OpenMP thread, as in each worker: a record's arrays are too small for more.
            with threadpool_limits(1):
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
