"""Preparation in shards: one preparation split over processes that share its output folder (the
tasks of a cluster's array job on a shared file system), merged into what one process writes.

Shard ``I`` of ``N`` (``PrepareOptions.shard``) lists every record as a one-process run does and
converts those whose key falls to it (:func:`shard_of`). It keeps, in ``OUT/.prepare/``::

    journal.shard-I-of-N.jsonl   its finished records (the resumable journal of :mod:`~.journal`)
    shard-I-of-N.json            written when it finishes: its share of the listing (each record's
                                 key and position, the records rejected up front), the records its
                                 converter rejected, and the source, options and config it ran with
    lock.shard-I-of-N            held while it runs, so one shard never runs twice at once

No two shards write one file: a record file is its key's, a journal its shard's. Shards hold the
folder's lock shared, so they run together and keep a one-process run and a merge out.
:func:`read_shards` is what the merge reads: the shards' entries in the listing's order, as a
one-process run has them, from which :func:`~.pipeline.merge_shards` writes the splits,
manifests, tables and report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions, Skipped, SourceItem
from fairseq_goodviews.preprocessing.journal import read_journal, shaping_changes

_STATE = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")
_JOURNAL = re.compile(r"^journal\.shard-(\d+)-of-(\d+)\.jsonl$")


def shard_of(key: str, count: int) -> int:
    """The shard (``0 .. count-1``) of a record key: the first 8 bytes of its SHA-256 modulo
    ``count``, the same in every process (Python's ``hash`` of a string is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)``; :class:`PrepareError` unless ``0 <= I < N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise PrepareError(f"--shard {text!r}: give I/N, e.g. 0/8 (shard I of N, counted from 0)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 0 <= index < count:
        raise PrepareError(f"--shard {text}: I must be at least 0 and below N")
    return index, count


def shard_files(state_dir: Path, shard: tuple[int, int]) -> tuple[Path, Path, Path]:
    """A shard's journal, state file and lock file in ``state_dir``."""
    name = f"shard-{shard[0]}-of-{shard[1]}"
    return state_dir / f"journal.{name}.jsonl", state_dir / f"{name}.json", state_dir / f"lock.{name}"


def shard_journals(state_dir: Path) -> list[Path]:
    """The journals of every shard in ``state_dir``, of any shard count."""
    return sorted(path for path in state_dir.iterdir() if _JOURNAL.match(path.name))


def listing_digest(items: Sequence[SourceItem], pre_skipped: Sequence[Skipped]) -> str:
    """What every shard of one preparation must have listed alike: the keys in order and the
    records rejected up front."""
    payload = json.dumps([[item.key for item in items], [dataclasses.astuple(s) for s in pre_skipped]])
    return hashlib.sha256(payload.encode()).hexdigest()


def write_shard_state(
    state_dir: Path,
    shard: tuple[int, int],
    *,
    source: str,
    labels: str,
    options: Mapping[str, Any],
    config: Mapping[str, Any] | None,
    items: Sequence[SourceItem],
    pre_skipped: Sequence[Skipped],
    entries: Sequence[Mapping[str, Any]],
) -> None:
    """Mark ``shard`` finished: write its state file (see the module docstring). ``items`` and
    ``pre_skipped`` are the whole listing, ``entries`` the journal entries of the shard's items;
    ``options`` are as the report records them."""
    index, count = shard
    state = {
        "shard": [index, count],
        "source": source,
        "labels": labels,
        "options": dict(options),
        "config": dict(config or {}),
        "listing": listing_digest(items, pre_skipped),
        "items": len(items),
        "pre_skipped": len(pre_skipped),
        "keys": [[pos, item.key] for pos, item in enumerate(items) if shard_of(item.key, count) == index],
        "skipped_up_front": [
            [pos, dataclasses.asdict(s)] for pos, s in enumerate(pre_skipped) if shard_of(s.key, count) == index
        ],
        "rejected": {entry["key"]: entry["skips"] for entry in entries if not entry["rows"]},
    }
    with atomic_open(shard_files(state_dir, shard)[1]) as handle:
        json.dump(state, handle, default=str)
        handle.write("\n")


@dataclass
class ShardedRun:
    """The merged shards of one preparation, as a one-process run would have them."""

    count: int
    source: str
    labels: str
    options: PrepareOptions
    config: dict[str, Any]
    source_records: int  # listed records, those rejected up front included
    entries: list[dict[str, Any]]  # journal entries in the listing's order
    pre_skipped: list[Skipped]


def _shard_counts(state_dir: Path) -> set[int]:
    counts = set()
    for path in state_dir.iterdir():
        match = _STATE.match(path.name) or _JOURNAL.match(path.name)
        if match:
            counts.add(int(match.group(2)))
    return counts


def read_shards(out_dir: Path, state_dir: Path, count: int | None = None) -> ShardedRun:
    """The finished shards of ``count`` (None: the one shard count found) in ``state_dir``, merged.

    Raises :class:`PrepareError` in one line when there is no shard, several shard counts and no
    ``count``, a shard missing or unfinished (naming them), shards prepared from other sources,
    with other options or from other listings, or a record file a shard wrote gone missing.
    """
    found = _shard_counts(state_dir) if state_dir.is_dir() else set()
    if count is None:
        if not found:
            raise PrepareError(f"{out_dir}: no shard to merge (run the preparer with --shard I/N first)")
        if len(found) > 1:
            listed = ", ".join(str(n) for n in sorted(found))
            raise PrepareError(f"{out_dir} holds shards of several counts (N = {listed}): give --shards N")
        count = found.pop()
    states = []
    absent = []
    for index in range(count):
        journal, state_file, _ = shard_files(state_dir, (index, count))
        if state_file.is_file():
            states.append(_read_state(state_file))
        else:
            absent.append(f"{index}/{count} {'unfinished' if journal.is_file() else 'missing'}")
    if absent:
        raise PrepareError(
            f"{out_dir}: cannot merge, shard {', '.join(absent)} (run each with --shard I/{count}, then merge again)"
        )
    first = states[0]
    for state in states[1:]:
        _check_alike(out_dir, first, state)
    return _merge(out_dir, state_dir, states)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PrepareError(f"{path}: unreadable shard state ({exc}); run that shard again") from None


def _check_alike(out_dir: Path, first: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Refuse to merge ``state``'s shard with ``first``'s when their preparations differ."""
    pair = f"shards {first['shard'][0]}/{first['shard'][1]} and {state['shard'][0]}/{state['shard'][1]}"
    advice = "prepare every shard with the same command but its --shard"
    if (state["source"], state["labels"]) != (first["source"], first["labels"]):
        raise PrepareError(
            f"{out_dir}: {pair} were prepared from other sources ({first['source']}, {state['source']}): {advice}"
        )
    changed = shaping_changes(first["options"], first["config"], state["options"], state["config"])
    if changed:
        raise PrepareError(f"{out_dir}: {pair} were prepared with other options ({'; '.join(changed)}): {advice}")
    if state["listing"] != first["listing"]:
        raise PrepareError(
            f"{out_dir}: {pair} listed other records (the source changed between them): run every shard again"
        )


def _merge(out_dir: Path, state_dir: Path, states: Sequence[Mapping[str, Any]]) -> ShardedRun:
    first = states[0]
    count = first["shard"][1]
    entries: list[dict[str, Any] | None] = [None] * first["items"]
    pre_skipped: list[Skipped | None] = [None] * first["pre_skipped"]
    for state in states:
        shard = tuple(state["shard"])
        journal = read_journal(shard_files(state_dir, shard)[0])
        for pos, key in state["keys"]:
            if key in state["rejected"]:
                entries[pos] = {"key": key, "rows": [], "skips": state["rejected"][key]}
                continue
            entry = journal.get(key)
            missing = f"record {key}" if entry is None else _missing_file(out_dir, entry)
            if missing:
                raise PrepareError(
                    f"{out_dir}: {missing} of shard {shard[0]}/{count} is gone; run that shard again, then merge"
                )
            entries[pos] = entry
        for pos, skipped in state["skipped_up_front"]:
            pre_skipped[pos] = Skipped(**skipped)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in first["options"].items()}
    return ShardedRun(
        count=count,
        source=first["source"],
        labels=first["labels"],
        options=PrepareOptions(**options, progress=False),
        config=first["config"],
        source_records=len(entries) + len(pre_skipped),
        entries=entries,  # every position is one shard's: the shards share one listing
        pre_skipped=pre_skipped,
    )


def _missing_file(out_dir: Path, entry: Mapping[str, Any]) -> str | None:
    for row in entry["rows"]:
        if not (out_dir / row["path"]).is_file():
            return row["path"]
    return None


def remove_shard_files(state_dir: Path) -> None:
    """Remove every shard's journal, state and lock file (after a merge, whose journal holds them all)."""
    for path in state_dir.iterdir():
        if _STATE.match(path.name) or _JOURNAL.match(path.name) or path.name.startswith("lock.shard-"):
            path.unlink()
