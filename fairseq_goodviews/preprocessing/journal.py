"""The journal, lock and clean-up that make a preparation resumable and safe to re-run.

Each finished record is logged in ``OUT/.prepare/journal.jsonl`` (a shard's in its own journal,
:mod:`~.shards`) after its files are written and flushed to the disk (:func:`convert_items`), so a re-run converts only
what is missing or changed; a lock keeps two runs out of one folder; :func:`check_same_preparation` refuses to rewrite a folder prepared from
another source or with other options.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from fairseq_goodviews.io.atomic import atomic_open, make_durable
from fairseq_goodviews.preprocessing.items import RECORDS_DIR, STATE_DIR, PrepareError, PrepareOptions, SourceItem
from fairseq_goodviews.preprocessing.workers import Job, record_fingerprint, rows_named_as_now, run_items

# The longest a finished record waits for its journal line (the flush of its files to the disk).
COMMIT_SECONDS = 0.5


def read_journal(path: Path, *, repair: bool = True) -> dict[str, dict[str, Any]]:
    """Entries by key (last wins). A line cut short by a kill is dropped, and with ``repair``
    truncated away (a reader that does not own the journal leaves it as it is)."""
    entries: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return entries
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if repair and len(complete) != len(data):
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


def write_journal(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite the journal atomically with the ``entries`` that wrote files, in their order."""
    with atomic_open(path) as handle:
        handle.writelines(json.dumps(entry) + "\n" for entry in entries if entry["rows"])


def remove_temporaries(folder: Path) -> None:
    """Remove temporary files that atomic writes of a killed run left behind."""
    if folder.is_dir():
        for path in folder.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder whose records folder holds ``.mat`` files of another origin."""
    records = out_dir / RECORDS_DIR
    if records.is_dir() and not (out_dir / STATE_DIR).is_dir():
        if any(records.glob("*.mat")):
            raise PrepareError(
                f"{out_dir}: {RECORDS_DIR}/ holds .mat files that this pipeline did not write; "
                "choose an empty output directory"
            )


def convert_items(
    items: Sequence[SourceItem],
    convert: Callable,
    job: Job,
    options: PrepareOptions,
    journal_path: Path,
    source: str,
    reuse_from: Sequence[Path] = (),
) -> tuple[list[dict[str, Any]], int]:
    """Journal entries of ``items`` in their order (finished ones reused), and how many were reused.

    A finished entry is reused when its fingerprint is current, its files exist and they are named
    as this version names them; a record whose files carry an older name (segments once were
    ``<key>_s<k>.mat``) is converted again, so a folder never mixes both names in its manifests
    (the old files go when the run completes, :func:`remove_unlisted`). An entry is appended to
    the journal once its files are written and flushed to the disk (:class:`_PendingEntries`: the
    files of many records at once, at least every :data:`COMMIT_SECONDS`); at the end the journal
    is rewritten with the current entries only. ``reuse_from`` are other journals whose finished entries are reused as
    well, read without being written (a shard reuses what a one-process run or an earlier merge
    finished, a one-process run what shards finished).
    """
    previous: dict[str, dict[str, Any]] = {}
    for path in reuse_from:
        previous.update(read_journal(path, repair=False))
    previous.update(read_journal(journal_path))
    results: dict[str, dict[str, Any]] = {}
    todo: list[SourceItem] = []
    for item in items:
        entry = previous.get(item.key)
        if (
            entry is not None
            and entry.get("fp") == record_fingerprint(item, job)
            and rows_named_as_now(entry["rows"], item.key, job)
            and all((Path(job.records_dir).parent / row["path"]).is_file() for row in entry["rows"])
        ):
            results[item.key] = entry
        else:
            todo.append(item)
    reused = len(results)
    out_dir = Path(job.records_dir).parent
    with open(journal_path, "a") as journal:
        pending = _PendingEntries(journal, Path(job.records_dir))
        try:
            for line in run_items(todo, convert, job, options, source):
                entry = json.loads(line)
                results[entry["key"]] = entry
                if entry["rows"]:
                    pending.add(line, [out_dir / row["path"] for row in entry["rows"]])
        finally:  # also on Ctrl-C or an error: the pending records' files are complete
            pending.commit()
    entries = [results[item.key] for item in items]
    write_journal(journal_path, entries)
    return entries, reused


class _PendingEntries:
    """Journal lines of records whose files are written but not yet flushed to the disk.

    The record files are written without a flush of their own (one ``fsync`` of each file and of
    its folder costs more than converting a record); :meth:`commit` flushes the files of every
    pending record at once (:func:`~fairseq_goodviews.io.atomic.make_durable`) and only then
    appends their lines, so a journal line never names a record file that a power loss could
    take. :meth:`add` commits at least every :data:`COMMIT_SECONDS`; a kill loses at most the
    records finished since (they are converted again by the next run).
    """

    def __init__(self, journal: TextIO, records_dir: Path):
        self.journal = journal
        self.records_dir = records_dir
        self.lines: list[str] = []
        self.files: list[Path] = []
        self.since = time.monotonic()

    def add(self, line: str, files: Sequence[Path]) -> None:
        self.lines.append(line)
        self.files.extend(files)
        if time.monotonic() - self.since >= COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        if self.lines:
            make_durable(self.records_dir, self.files)
            self.journal.writelines(line + "\n" for line in self.lines)
            self.journal.flush()
        self.lines, self.files = [], []
        self.since = time.monotonic()


def remove_unlisted(records_dir: Path, keep: set) -> None:
    """Delete record files of earlier runs that the new manifests no longer list."""
    for path in records_dir.glob("*.mat"):
        if path not in keep:
            path.unlink()


_RUN_OPTIONS = ("workers", "chunksize", "progress", "overwrite", "pack", "shard")


def _shaping(options: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options and preparer config that decide a preparation's records and splits (JSON form)."""
    kept = {k: v for k, v in options.items() if k not in _RUN_OPTIONS}
    return json.loads(json.dumps({"options": kept, "config": dict(config or {})}, default=str))


def shaping_changes(
    old_options: Mapping[str, Any],
    old_config: Mapping[str, Any] | None,
    options: Mapping[str, Any],
    config: Mapping[str, Any] | None,
) -> list[str]:
    """``<name> <old> -> <new>`` for each option or preparer config entry that decides the records
    and splits and differs between the two (the run options, e.g. ``workers``, do not count)."""
    old = _shaping(old_options, old_config)
    new = _shaping(options, config)
    return [
        f"{key} {old[part].get(key)!r} -> {new[part].get(key)!r}"
        for part in ("options", "config")
        for key in sorted(set(old[part]) | set(new[part]))
        if old[part].get(key) != new[part].get(key)
    ]


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
    changed = shaping_changes(before.get("options", {}), before.get("config"), options, config)
    if changed:
        raise PrepareError(f"{out_dir} was prepared with other options ({'; '.join(changed)}): {advice}")
