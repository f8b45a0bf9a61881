"""A fairseq-signals manifest folder -> ours, without copying a signal.

fairseq-signals (github.com/Jwoo5/fairseq-signals, the reference ECG fork of fairseq) prepares a
dataset as a manifest folder and one ``.mat`` file per record (or per segment)::

    SRC/<split>.tsv      first line the root folder, then ``relative/path.mat<TAB>n_samples``
                         (identification manifests add a third column, a patient index)
    <root>/<path>.mat    written with ``scipy.io.savemat`` (possibly compressed): ``feats``
                         [12, T], ``curr_sample_rate``; for downstream tasks ``label`` (a
                         multi-hot vector, e.g. the 26 CinC 2021 classes as a logical array,
                         or a class index), ``patient_id`` (an integer), ``age``, ``sex`` (0
                         male, 1 female); every scalar stored as a [1, 1] array

That is its older per-dataset layout; its current pipeline keeps the labels and patients outside
the files, by each file's ``idx``, and stores the leads standardised
(:mod:`fairseq_goodviews.interop.fairseq_signals_pipeline` reads those back, and decides the signal
scale). :func:`import_fairseq_signals` writes our tables beside the signals:

    OUT/<split>.tsv      root = the manifest's root (absolute), the same relative paths, so the
                         records are read where they are
    OUT/<split>.csv      one row per record: ``record_id`` (the file's stem, its path where
                         stems clash; a file of ours keeps its own), ``patient_id``, ``age``,
                         ``sex`` (M/F), ``labels`` (the class names of the record's label,
                         space-separated), ``label`` (the class name when there is exactly
                         one), ``source`` (the first folder of the record's path under the
                         root), ``sample_rate``, ``n_samples``, ``flat_leads`` where any, and
                         every other scalar key of the file as a column
    OUT/skipped.csv      every record left out, and why; OUT/prepare_report.json
    OUT/<split>.packed/  with ``--pack``: the split's signals in memory-mappable shards, the
                         fastest record path for training (a copy, int16 where exact)

Class names come from ``--label-names`` (one per line, in label order), else the files' own
``label_classes`` (folders we prepared), else ``class_<i>``; a class index is read as such, and
with one class name a 0/1 value is that class's absence or presence. A single-label folder
probes with ``task.classes='...'``, a multi-label one with ``task.label_type=multi
task.label_set=labels task.classes='...'``; the command prints the overrides. Every file is read
through :func:`fairseq_goodviews.io.records.read_record`; a file that is missing, unreadable,
without ``feats``, at another rate than ``--sample-rate``, of another length than its manifest
line says, or with NaN/inf is skipped and listed (flat leads are kept and listed: the files are
not rewritten). An empty ``<split>.tsv`` (the root line alone, as fairseq-signals writes a split
without records) is left out unless ``--splits`` names it. Relative paths (the arguments, and a
manifest's root line, as fairseq-signals' own reader takes it) are relative to the folder the
command runs in.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from fairseq_goodviews.interop.fairseq_signals_labels import Labels, decide_labels, probe_overrides, read_label_names
from fairseq_goodviews.interop.fairseq_signals_pipeline import (
    SCALE_MV,
    PipelineFiles,
    complete_from_pipeline,
    looks_standardised,
    sex_letter,
    signal_scale,
)
from fairseq_goodviews.io.atomic import OutputPathError, ensure_writable_dir
from fairseq_goodviews.io.manifest import ManifestError, read_manifest, write_manifest
from fairseq_goodviews.io.records import (
    FLAT_LEAD_MV,
    LABEL_CLASSES_KEY,
    LABEL_NAME_KEY,
    PATIENT_KEY,
    SIGNAL_KEYS,
    RecordError,
    read_record,
)
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.items import (
    BAD_SIGNAL,
    DUPLICATE,
    FILTERED,
    MISSING_FILE,
    SPLITS,
    UNKNOWN_LABEL,
    UNREADABLE,
    PrepareError,
    Skipped,
)
from fairseq_goodviews.preprocessing.journal import check_same_preparation
from fairseq_goodviews.preprocessing.report import (
    pack_report_lines,
    pack_splits,
    remove_outdated_packs,
    write_report,
    write_skipped,
)
from fairseq_goodviews.preprocessing.splits import metadata_table
from fairseq_goodviews.preprocessing.wfdb_dir import record_keys

SOURCE = "fairseq_signals"
# A segment file's name: its record's name, an underscore, the segment's number.
_SEGMENT_NAME = re.compile(r"^(.+)_(\d+)$")
DEFAULT_SAMPLE_RATE = 500.0
# Keys of a record file that become no column of their own (they are read into the columns below).
_CONSUMED = SIGNAL_KEYS | {
    "label",
    "patient_id",
    "age",
    "sex",
    "segment_i",
    LABEL_NAME_KEY,
    LABEL_CLASSES_KEY,
    PATIENT_KEY,
}
_COLUMNS = ("path", "n_samples", "record_id", "segment", "patient_id", "age", "sex", "label", "labels", "source")


@dataclass(frozen=True)
class _Entry:
    """One manifest line: the file, what the manifest says of it, and where it was listed."""

    split: str
    root: str
    path: str
    n_samples: int
    where: str  # "<manifest>:<line>"
    key: str

    @property
    def file(self) -> str:
        return str(Path(self.root) / self.path)


class _Skip(Exception):
    def __init__(self, reason: str, category: str = UNREADABLE):
        super().__init__(reason)
        self.reason, self.category = reason, category


# ---------------------------------------------------------------------------------------------
# one record (runs in worker processes)


def _plain(value: Any) -> Any:
    """A table cell of a file's scalar (None for arrays, NaN and empty values)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, (str, int, float)) and value != "" else None


def _patient(meta: Mapping[str, Any]) -> str:
    """The patient id as a string: ours (``patient``), else fairseq-signals' integer ``patient_id``
    (or the string our older files hold there); empty when the file has none."""
    if isinstance(meta.get(PATIENT_KEY), str) and meta[PATIENT_KEY]:
        return meta[PATIENT_KEY]
    value = meta.get("patient_id")
    if value is None or isinstance(value, str):
        return value or ""
    if np.ndim(value) == 0 and isinstance(_plain(value), int) and not isinstance(value, (bool, np.bool_)):
        return str(_plain(value))
    raise _Skip(f"'patient_id' is not an integer ({np.asarray(value).ravel()[:4].tolist()})")


def _raw_label(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The file's label, undecoded: a class name (our older files), a class index or a multi-hot
    vector (its positives and length); None without one."""
    name = meta.get(LABEL_NAME_KEY)
    value = meta.get("label")
    if value is None:
        return {"name": name} if isinstance(name, str) else None
    if isinstance(value, str):
        return {"name": value}
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim > 1:
        raise _Skip(f"'label' is neither a class index nor a multi-hot vector (shape {list(array.shape)})")
    if not np.isfinite(array).all():
        raise _Skip("'label' holds NaN or inf")
    if array.ndim == 0 and array.dtype.kind != "b":
        if array < 0 or array != np.round(array):
            raise _Skip(f"'label' {array.item()!r} is not a class index (a whole number >= 0)")
        return {"index": int(array)}
    array = array.reshape(-1)
    if not np.isin(array, (0, 1)).all():
        raise _Skip(f"'label' vector holds values other than 0 and 1 ({sorted(set(array.tolist()) - {0, 1})[:3]})")
    return {"multi_hot": np.flatnonzero(array).tolist(), "size": int(array.size)}


def _read(entry: _Entry, sample_rate: float) -> dict[str, Any]:
    """The table row of one manifest line (``{"row": ..., "label": ...}``), or ``{"skip": ...}``."""
    try:
        try:
            record = read_record(entry.file)
        except RecordError as exc:
            category = MISSING_FILE if exc.problem == "file not found" else UNREADABLE
            raise _Skip(exc.problem, category) from None
        if abs(record.sample_rate - sample_rate) > 1e-6:
            raise _Skip(f"sample rate {record.sample_rate:g} Hz, not {sample_rate:g} Hz (--sample-rate)", FILTERED)
        if record.n_samples != entry.n_samples:
            raise _Skip(f"{entry.where} gives {entry.n_samples} samples, the file has {record.n_samples}")
        feats, present = record.feats, record.lead_present
        if record.n_samples == 0 or not present.any():
            raise _Skip("no samples" if present.any() else "no ECG lead present", BAD_SIGNAL)
        bad = ~np.isfinite(feats).all(axis=1) & present
        if bad.any():
            raise _Skip("NaN or inf in lead(s) " + ",".join(np.array(CANONICAL_LEADS)[bad]), BAD_SIGNAL)
        flat = (np.ptp(feats, axis=1) < FLAT_LEAD_MV) & present
        if not (present & ~flat).any():
            raise _Skip("every lead is flat", BAD_SIGNAL)
        meta = record.meta
        label = _raw_label(meta)
        record_id = meta.get("record_id") if isinstance(meta.get("record_id"), str) else ""
        segment = _plain(meta.get("segment", meta.get("segment_i")))  # ours, fairseq-signals' current one
        folder = Path(entry.path).parts[0] if len(Path(entry.path).parts) > 1 else ""
        row = {
            **{k: _plain(v) for k, v in meta.items() if k not in _CONSUMED and np.ndim(v) == 0},
            "path": entry.path,
            "n_samples": record.n_samples,
            "record_id": record_id or entry.key,
            "segment": segment if isinstance(segment, int) else 0,
            "patient_id": _patient(meta) or record_id or entry.key,
            "age": _plain(meta.get("age")),
            "sex": sex_letter(meta.get("sex")),
            "source": _plain(meta.get("source")) or folder or SOURCE,
            "sample_rate": float(record.sample_rate),
        }
        if flat.any():
            row["flat_leads"] = ",".join(np.array(CANONICAL_LEADS)[flat])
        classes = meta.get(LABEL_CLASSES_KEY)
        idx = _plain(meta.get("idx"))
        segment_i = _plain(meta.get("segment_i"))
        return {
            "row": row,
            "label": label,
            "classes": classes if isinstance(classes, str) else None,
            "idx": idx if isinstance(idx, int) and idx >= 0 else None,
            "own_patient": bool(_patient(meta)),
            "own_record": bool(record_id),
            "segment_i": segment_i if isinstance(segment_i, int) and segment_i >= 0 else None,
            "restored_mv": record.restored_mv,
            "standardised_std": None if record.restored_mv else looks_standardised(feats, present & ~flat),
        }
    except _Skip as skip:
        return {"skip": (skip.reason, skip.category)}


_WORKER: dict[str, Any] = {}


def _init_worker(sample_rate: float) -> None:
    _WORKER["sample_rate"] = sample_rate


def _read_in_worker(entry: _Entry) -> dict[str, Any]:
    return _read(entry, _WORKER["sample_rate"])


def _read_all(entries: Sequence[_Entry], sample_rate: float, workers: int, progress: bool) -> list[dict[str, Any]]:
    bar = tqdm(total=len(entries), desc=SOURCE, unit="rec", disable=not progress, leave=False)
    with bar:
        if workers == 1 or len(entries) <= 1:
            results = []
            for entry in entries:
                results.append(_read(entry, sample_rate))
                bar.update()
            return results
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        chunksize = max(1, min(32, len(entries) // (workers * 8)))
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(sample_rate,)
        ) as pool:
            results = []
            for result in pool.map(_read_in_worker, entries, chunksize=chunksize):
                results.append(result)
                bar.update()
            return results


# ---------------------------------------------------------------------------------------------
# the folder


def _split_order(path: Path) -> tuple[int, str]:
    """train, valid, test first (as the other preparers write them), then the others by name."""
    return (SPLITS.index(path.stem) if path.stem in SPLITS else len(SPLITS), path.stem)


def _manifests(src_dir: Path, splits: Sequence[str] | None) -> tuple[dict[str, Path], list[str]]:
    """The manifests to import by split name, and the empty ones found and left out."""
    if not src_dir.is_dir():
        raise PrepareError(f"{src_dir}: not a directory (a fairseq-signals manifest folder holds <split>.tsv files)")
    if splits:
        found = {name: src_dir / f"{name}.tsv" for name in splits}
        for path in found.values():
            if not path.is_file():
                raise PrepareError(f"{path}: manifest not found")
        return found, []
    listed = sorted((path for path in src_dir.glob("*.tsv") if path.is_file()), key=_split_order)
    if not listed:
        raise PrepareError(f"{src_dir}: no <split>.tsv manifest in the folder")
    # fairseq-signals' manifest.py writes a split it gives no record (e.g. pretrain/valid.tsv at the
    # default --pretrain-valid-percent 0) as the root line alone: found, such a split is left out.
    found = {path.stem: path for path in listed if not _is_empty(path)}
    if not found:
        _read_manifest(listed[0])  # raises: empty manifest
    return found, [path.name for path in listed if path.stem not in found]


def _is_empty(path: Path) -> bool:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip()) <= 1
    except (OSError, UnicodeDecodeError):
        return False  # read_manifest says what is wrong


def _read_manifest(path: Path) -> tuple[Path, list[tuple[str, int]]]:
    try:
        return read_manifest(path)
    except (ManifestError, UnicodeDecodeError) as exc:
        raise PrepareError(str(exc) if isinstance(exc, ManifestError) else f"{path}: not a text manifest") from None


def _entries(manifests: Mapping[str, Path]) -> list[_Entry]:
    """Every manifest line, with a record key unique over the folder."""
    listed: list[tuple[str, Path, str, int, str]] = []
    for split, manifest in manifests.items():
        root, lines = _read_manifest(manifest)
        root = root.resolve()  # relative: to the working folder, as fairseq-signals reads it
        for number, (path, n_samples) in enumerate(lines, start=2):
            listed.append((split, root, path, n_samples, f"{manifest}:{number}"))
    files = [(root / path).with_suffix("") for _, root, path, _, _ in listed]
    unique = list(dict.fromkeys(files))
    common = Path(os.path.commonpath([str(file.parent) for file in unique]))
    key_of = dict(zip(unique, record_keys(unique, common), strict=True))
    return [
        _Entry(split, str(root), path, n_samples, where, key_of[file])
        for (split, root, path, n_samples, where), file in zip(listed, files, strict=True)
    ]


def _segments_by_name(files: Iterable[Path]) -> dict[Path, tuple[Path, int]]:
    """``{file: (record, i)}`` for the files named ``<record>_<i>`` in a folder where the numbers
    of every such name's record run 0 .. n-1, as fairseq-signals numbers a record's segments (in a
    folder of records whose names merely end in a number, they do not)."""
    by_folder: dict[Path, dict[Path, dict[int, Path]]] = {}
    for file in set(files):
        match = _SEGMENT_NAME.match(file.name)
        if match:
            record = file.parent / match.group(1)
            by_folder.setdefault(file.parent, {}).setdefault(record, {})[int(match.group(2))] = file
    found = {}
    for records in by_folder.values():
        if all(sorted(numbers) == list(range(len(numbers))) for numbers in records.values()):
            found.update({file: (record, i) for record, numbers in records.items() for i, file in numbers.items()})
    return found


def _group_segments(entries: Sequence[_Entry], results: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Give the segment files of one source record that record's ``record_id`` and ``segment``, and,
    where the file names no patient, the record as patient (in place). A file's record is its name
    without ``_<segment_i>`` where it holds ``segment_i`` (fairseq-signals' current pipeline),
    else as :func:`_segments_by_name` finds it; files of ours keep their own. Returns the counts
    for the report: segment files, their records, and records with segments in several splits."""
    by_name = _segments_by_name(Path(entry.file).with_suffix("") for entry in entries)
    groups: list[tuple[Path, int] | None] = []
    for entry, result in zip(entries, results, strict=True):
        file, segment = Path(entry.file).with_suffix(""), result.get("segment_i")
        if "row" not in result or result["own_record"]:
            groups.append(None)
        elif segment is not None and file.name.endswith(f"_{segment}") and len(file.name) > len(f"_{segment}"):
            groups.append((file.with_name(file.name[: -len(f"_{segment}")]), segment))
        else:
            groups.append(by_name.get(file))
    records = list(dict.fromkeys(group[0] for group in groups if group is not None))
    if not records:
        return {"files": 0, "records": 0, "records_in_several_splits": 0}
    common = Path(os.path.commonpath([str(record.parent) for record in records]))
    key_of = dict(zip(records, record_keys(records, common), strict=True))
    splits: dict[Path, set[str]] = {}
    for entry, result, group in zip(entries, results, groups, strict=True):
        if group is None:
            continue
        row, key = result["row"], key_of[group[0]]
        row["record_id"], row["segment"] = key, group[1]
        if not result["own_patient"]:
            row["patient_id"] = key
        splits.setdefault(group[0], set()).add(entry.split)
    return {
        "files": sum(group is not None for group in groups),
        "records": len(records),
        "records_in_several_splits": sum(len(names) > 1 for names in splits.values()),
    }


def _label_names(label: Mapping[str, Any] | None, labels: Labels) -> list[str]:
    """The class names of one record's label; raises :class:`_Skip` for an index out of range."""
    if label is None:
        return []
    if "name" in label:
        if label["name"] and label["name"] not in labels.classes:
            raise _Skip(f"class {label['name']!r} is not in --label-names", UNKNOWN_LABEL)
        return [label["name"]] if label["name"] else []
    if "multi_hot" in label:
        return [labels.classes[i] for i in label["multi_hot"]]
    index = label["index"]
    if labels.kind == "binary":
        return labels.classes[:index]
    if index >= len(labels.classes):
        raise _Skip(f"class index {index}, but --label-names lists {len(labels.classes)} classes", UNKNOWN_LABEL)
    return [labels.classes[index]]


def _remove_stale_splits(out_dir: Path, previous: Iterable[str], written: Iterable[str]) -> None:
    for name in set(previous) - set(written):
        for suffix in (".tsv", ".csv"):
            with contextlib.suppress(FileNotFoundError):
                (out_dir / f"{name}{suffix}").unlink()


def _check_out_dir(out_dir: Path, src_dir: Path, overwrite: bool) -> list[str]:
    """Refuse an output folder that is the source or holds manifests we did not write (unless
    ``overwrite``); return the split names an earlier preparation there wrote."""
    if out_dir.resolve() == src_dir.resolve():
        raise PrepareError(
            f"{out_dir}: the output folder is the fairseq-signals folder; its manifests would be replaced"
        )
    manifests = sorted(p.stem for p in out_dir.glob("*.tsv")) if out_dir.is_dir() else []
    report = out_dir / "prepare_report.json"
    if not report.is_file():
        if manifests and not overwrite:
            raise PrepareError(
                f"{out_dir} holds manifests ({', '.join(f'{m}.tsv' for m in manifests)}) that no preparation of "
                "ours wrote: pass --overwrite to replace them, or choose another folder"
            )
        return manifests
    try:
        return list(json.loads(report.read_text()).get("splits", {}))
    except (OSError, json.JSONDecodeError, AttributeError):
        return manifests


def _rows_by_split(
    entries: Sequence[_Entry], results: Sequence[dict[str, Any]], labels: Labels, splits: Iterable[str]
) -> tuple[dict[str, list[dict[str, Any]]], list[Skipped]]:
    """The metadata rows of the usable records by split, and the skipped ones (unreadable, listed
    twice, a label outside the classes)."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in splits}
    skipped: list[Skipped] = []
    seen: dict[str, str] = {}
    for entry, result in zip(entries, results, strict=True):
        try:
            if entry.file in seen:
                raise _Skip(f"{entry.where} lists the file {seen[entry.file]} lists too", DUPLICATE)
            seen[entry.file] = entry.where
            if "skip" in result:
                raise _Skip(*result["skip"])
            label = _label_names(result["label"], labels)
        except _Skip as skip:
            skipped.append(Skipped(entry.key, entry.file, skip.reason, skip.category))
            continue
        row = dict(result["row"])
        row["labels"] = " ".join(label)
        row["label"] = label[0] if len(label) == 1 else ""
        rows[entry.split].append(row)
    return rows, skipped


def _report(
    entries: Sequence[_Entry],
    tables: Mapping[str, pd.DataFrame],
    skipped: Sequence[Skipped],
    roots: Mapping[str, str],
    labels: Labels,
    empty: list[str],
    pipeline: dict[str, Any],
    options: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    """The content of ``prepare_report.json`` before the packs and probe overrides are added."""
    return {
        "source": SOURCE,
        "source_records": len(entries),
        "written_records": sum(len(t) for t in tables.values()),
        "skipped": len(skipped),
        "skipped_by_category": dict(sorted(Counter(s.category for s in skipped).items())),
        "written_with_notes": {
            "flat_leads": int(sum(t["flat_leads"].notna().sum() for t in tables.values() if "flat_leads" in t))
        },
        "splits": {
            name: {"records": len(t), "patients": int(t["patient_id"].nunique()), "root": roots[name]}
            for name, t in tables.items()
        },
        "labels": {"form": labels.kind, "classes": labels.classes},
        "empty_manifests": empty,
        "pipeline": pipeline,
        "options": options,
        "config": config,
    }


def import_fairseq_signals(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    splits: Sequence[str] | None = None,
    label_names: str | Path | None = None,
    label_file: str | Path | None = None,
    standardised_inputs: bool = False,
    sample_rate: float = DEFAULT_SAMPLE_RATE,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    pack: bool = False,
) -> dict[str, Any]:
    """Write our manifests and metadata tables for the fairseq-signals folder ``src_dir`` into
    ``out_dir`` (see the module's notes); return the report (also ``prepare_report.json``).
    With ``pack``, each split is then packed; without it, the packs of rewritten splits are
    removed (:func:`~fairseq_goodviews.preprocessing.report.pack_splits`).

    Raises :class:`PrepareError` (one line naming the file and the problem) for a folder that
    cannot be converted; records that cannot be used are skipped and listed in ``skipped.csv``.
    """
    if workers < 1:
        raise PrepareError(f"workers must be >= 1, got {workers}")
    if sample_rate <= 0:
        raise PrepareError(f"--sample-rate must be positive, got {sample_rate:g}")
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    names = read_label_names(label_names) if label_names is not None else None
    manifests, empty = _manifests(src_dir, splits)
    entries = _entries(manifests)
    previous = _check_out_dir(out_dir, src_dir, overwrite)
    try:
        ensure_writable_dir(out_dir)
    except OutputPathError as exc:
        raise PrepareError(str(exc)) from None
    options = {"sample_rate": float(sample_rate), "splits": list(manifests), "standardised_inputs": standardised_inputs}
    config: dict[str, Any] = {
        "src_dir": str(src_dir.resolve()),
        "label_names": str(Path(label_names).resolve()) if label_names is not None else None,
        "label_file": str(Path(label_file).resolve()) if label_file is not None else None,
    }
    check_same_preparation(out_dir, SOURCE, options, config, overwrite)

    results = _read_all(entries, float(sample_rate), workers, progress)
    files = [entry.file for entry in entries]
    segments = _group_segments(entries, results)
    found = complete_from_pipeline(results, files, label_file, names is not None)
    pipeline = {**vars(found), "signal_scale": signal_scale(results, files, standardised_inputs)}
    labels = decide_labels(results, files, names)
    rows, skipped = _rows_by_split(entries, results, labels, manifests)

    roots = {entry.split: entry.root for entry in entries}
    tables = {name: metadata_table(part) for name, part in rows.items() if part}
    report = _report(entries, tables, skipped, roots, labels, empty, pipeline, options, config)
    report["segments"] = segments
    write_skipped(out_dir / "skipped.csv", skipped)
    if not tables:
        write_report(out_dir, report)
        reasons = ", ".join(f"{k}: {n}" for k, n in report["skipped_by_category"].items())
        raise PrepareError(
            f"{SOURCE}: no record listed ({len(skipped)} skipped: {reasons}); see {out_dir / 'skipped.csv'}"
        )
    report["removed_packs"] = remove_outdated_packs(out_dir, sorted(set(previous) | set(tables)))
    for name, table in tables.items():
        table = table[[*_COLUMNS, *(c for c in table.columns if c not in _COLUMNS)]]
        write_manifest(out_dir, name, roots[name], table)
    _remove_stale_splits(out_dir, previous, tables)
    report["probe_overrides"] = probe_overrides(pd.concat(tables.values()), labels.classes)
    report["packed"] = None  # with pack, each split's pack
    write_report(out_dir, report)
    if pack:
        report["packed"] = pack_splits(out_dir, list(tables))
        write_report(out_dir, report)
    return report


def _shell(override: str) -> str:
    """An override as typed in a shell (double quotes keep hydra's single quotes)."""
    return f'"{override}"' if "'" in override else override


def summary(report: Mapping[str, Any], out_dir: str | Path) -> list[str]:
    """The lines the command prints: what was listed (and skipped), how to probe it, the packs."""
    splits = " / ".join(f"{n} {v['records']}" for n, v in report["splits"].items())
    roots = sorted({v["root"] for v in report["splits"].values()})
    noun = "record" if report["written_records"] == 1 else "records"
    line = f"{SOURCE}: listed {report['written_records']} {noun} in {out_dir} [{splits}], read where they are ({', '.join(roots)})"
    if report["written_with_notes"]["flat_leads"]:
        line += f"; {report['written_with_notes']['flat_leads']} with flat leads (flat_leads column)"
    if report["skipped"]:
        reasons = ", ".join(f"{k} {n}" for k, n in report["skipped_by_category"].items())
        line += f"; skipped {report['skipped']} ({reasons}; see skipped.csv)"
    if report["empty_manifests"]:
        line += f"; left out the empty {', '.join(report['empty_manifests'])}"
    classes = report["labels"]["classes"]
    if report["probe_overrides"]:
        form = {
            "multi_hot": "multi-hot vectors",
            "index": "class indices",
            "binary": "0/1 values",
            "name": "class names",
        }
        label_line = (
            f"labels: {len(classes)} classes from {form[report['labels']['form']]}; "
            f"probe with {' '.join(_shell(o) for o in report['probe_overrides'])}"
        )
    else:
        label_line = "labels: none in the files (for pretraining)"
    return [
        line,
        label_line,
        *_pipeline_lines(report["pipeline"]),
        *_segment_lines(report["segments"]),
        *pack_report_lines(Path(out_dir), report),
    ]


def _segment_lines(segments: Mapping[str, int]) -> list[str]:
    """How many segment files were found to be parts of how many records."""
    if not segments["files"]:
        return []
    line = (
        f"segments: {segments['files']} files are segments of {segments['records']} records "
        "(record_id is the record, and the patient where none is given)"
    )
    if segments["records_in_several_splits"]:
        line += f"; {segments['records_in_several_splits']} records have segments in several splits"
    return [line]


def _pipeline_lines(pipeline: Mapping[str, Any]) -> list[str]:
    """What was read from fairseq-signals' pipeline files, and the signal scale when not plain mV."""
    found = PipelineFiles(**{k: v for k, v in pipeline.items() if k != "signal_scale"})
    parts = []
    if found.label_files:
        parts.append(f"labels by idx from {', '.join(found.label_files)}")
    if found.patient_tables:
        parts.append(f"patients from {', '.join(found.patient_tables)}")
    if found.recordings_as_patients:
        parts.append(f"{found.recordings_as_patients} records without a patient: their recording (idx) is the patient")
    if pipeline["signal_scale"] != SCALE_MV:
        parts.append(f"signals {pipeline['signal_scale']}")
    return [f"fairseq-signals pipeline: {'; '.join(parts)}"] if parts else []
