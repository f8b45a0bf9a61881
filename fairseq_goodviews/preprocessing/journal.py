"""The journal, lock and clean-up that make a preparation resumable and safe to re-run.

Each finished record is logged in ``OUT/.prepare/journal.jsonl`` after its files are written
(:func:`convert_items`), so a re-run converts only what is missing or changed; a lock keeps two
runs out of one folder; :func:`check_same_preparation` refuses to rewrite a folder prepared from
another source or with other options.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.preprocessing.items import RECORDS_DIR, STATE_DIR, PrepareError, PrepareOptions, SourceItem
from fairseq_goodviews.preprocessing.workers import Job, record_fingerprint, rows_named_as_now, run_items


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
    items: Sequence[SourceItem], convert: Callable, job: Job, options: PrepareOptions, journal_path: Path, source: str
) -> tuple[list[dict[str, Any]], int]:
    """Journal entries of ``items`` in their order (finished ones reused), and how many were reused.

    A finished entry is reused when its fingerprint is current, its files exist and they are named
    as this version names them; a record whose files carry an older name (segments once were
    ``<key>_s<k>.mat``) is converted again, so a folder never mixes both names in its manifests
    (the old files go when the run completes, :func:`remove_unlisted`). An entry is appended to
    the journal as soon as its files are written; at the end the journal is rewritten with the
    current entries only.
    """
    previous = _read_journal(journal_path)
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
    with open(journal_path, "a") as journal:
        for line in run_items(todo, convert, job, options, source):
            entry = json.loads(line)
            results[entry["key"]] = entry
            if entry["rows"]:
                journal.write(line + "\n")
                journal.flush()
    entries = [results[item.key] for item in items]
    with atomic_open(journal_path) as handle:
        handle.writelines(json.dumps(entry) + "\n" for entry in entries if entry["rows"])
    return entries, reused


def remove_unlisted(records_dir: Path, keep: set) -> None:
    """Delete record files of earlier runs that the new manifests no longer list."""
    for path in records_dir.glob("*.mat"):
        if path not in keep:
            path.unlink()


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
