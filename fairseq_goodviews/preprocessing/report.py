"""What a preparation reports and packs: ``skipped.csv``, ``prepare_report.json``, the packs of
its splits, and the lines it prints."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.manifest import ManifestError
from fairseq_goodviews.io.packed import pack_line, remove_pack, write_pack
from fairseq_goodviews.io.records import RecordError
from fairseq_goodviews.labels import LabelSet
from fairseq_goodviews.preprocessing.items import (
    NOTE_COLUMNS,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
)


def write_skipped(path: Path, skipped: Sequence[Skipped]) -> None:
    """``skipped.csv``: key, file, reason and category of every record not written."""
    frame = pd.DataFrame(
        [dataclasses.astuple(s) for s in skipped], columns=[f.name for f in dataclasses.fields(Skipped)]
    )
    with atomic_open(path, newline="") as handle:
        frame.to_csv(handle, index=False)


def build_report(
    source: str,
    options: PrepareOptions,
    config: Mapping[str, Any] | None,
    source_records: int,
    rows: Sequence[dict[str, Any]],
    skipped: Sequence[Skipped],
    splits: Mapping[str, pd.DataFrame],
    stratified: str | None,
    record_labels: LabelSet,
) -> dict[str, Any]:
    """The content of ``prepare_report.json``: counts by outcome, category and split, and the options used.

    ``source_records`` counts the records the preparer listed, those it rejected up front
    included. The options are recorded as a one-process run has them: without ``progress`` and
    ``shard``, which change neither the records nor the splits.
    """
    written = {row["record_id"] for row in rows}
    return {
        "source": source,
        "source_records": source_records,
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
        "record_labels": {"name": record_labels.name, "classes": list(record_labels.classes)},
        "options": report_options(options),
        "config": dict(config or {}),
    }


def report_options(options: PrepareOptions) -> dict[str, Any]:
    """The options as ``prepare_report.json`` records them (all but ``progress`` and ``shard``)."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in ("progress", "shard")}


def remove_outdated_packs(out_dir: Path, splits: Iterable[str]) -> list[str]:
    """Delete the packs of ``splits`` in ``out_dir``, whose manifests are about to be rewritten (or
    removed) and would no longer match them; return the splits that had one."""
    return [name for name in splits if remove_pack(out_dir / f"{name}.tsv")]


def pack_splits(out_dir: Path, splits: Sequence[str], workers: int = 1) -> dict[str, dict[str, Any]]:
    """Pack each split of ``out_dir`` in ``workers`` processes
    (:func:`~fairseq_goodviews.io.packed.write_pack`); return the report's ``packed`` entry: per
    split its records, samples, bytes, seconds, shards, records stored as int16 and as float32, and
    the pack's folder.

    A pack that cannot be written (no room, an unwritable folder, a record that changed) is one
    :class:`PrepareError` line, and every pack of ``splits`` is removed first: the records and
    manifests are complete, and training reads the ``.mat`` files.
    """
    packed: dict[str, dict[str, Any]] = {}
    for name in splits:
        try:
            summary = write_pack(out_dir / f"{name}.tsv", workers=workers)
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
            "shards": summary["shards"],
            "int16_records": summary["int16_records"],
            "float32_records": summary["float32_records"],
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


def summary_line(result: PrepareResult, source: str) -> str:
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


def shard_summary_line(result: PrepareResult, source: str, shard: tuple[int, int]) -> str:
    """The one line shard ``(I, N)`` prints: its records written, reused and skipped, and what comes next."""
    index, count = shard
    noun = "record" if result.records == 1 else "records"
    files = f" ({result.files} files)" if result.files != result.records else ""
    line = f"{source}: shard {index}/{count} wrote {result.records} {noun}{files} to {result.out_dir}"
    if result.reused:
        line += f" ({result.reused} reused from an earlier run)"
    if result.skipped:
        line += f"; skipped {len(result.skipped)}"
    return line + f"; once all {count} shards are done: goodviews-merge-shards {result.out_dir}"
