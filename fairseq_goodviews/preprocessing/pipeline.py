"""The shared preprocessing engine: source items -> per-record ``.mat`` files, splits, manifests.

Every preparer (Chapman, PhysioNet 2021, PTB-XL, generic WFDB) does two things of its own:

1. lists its records as :class:`~.items.SourceItem` objects (a unique ``key`` that becomes the file
   stem, a ``patient_id``, metadata for the table, and whatever ``source`` its converter needs),
   reporting records it rejects up front (cohort rules, missing files) as :class:`~.items.Skipped`;
2. supplies a picklable ``convert(item) -> EcgRecord`` that loads one record, or raises
   :class:`~.items.SkipRecord` (or :class:`~fairseq_goodviews.io.records.RecordError`) to reject it.

:func:`prepare` does the rest, identically for every source::

    OUT/records/<key>.mat            one file per record (or <key>_<k>.mat per segment k, as
                                     fairseq-signals names them: :func:`~.workers.record_stem`)
    OUT/train.tsv, valid.tsv, ...    manifests (root line = OUT, paths relative to it)
    OUT/train.csv, valid.csv, ...    metadata tables, row for row with the manifests
    OUT/skipped.csv                  key, file, reason, category of every record not written
    OUT/prepare_report.json          counts by outcome, reason and split, options used
    OUT/train.packed/, ...           with ``pack``: each split packed (:mod:`~fairseq_goodviews.io.packed`)

An output folder that cannot be written (its path is a file, no permission) is a
:class:`~.items.PrepareError` naming it, raised before anything is written. Records written with a
note (leads marked absent because flat, invalid samples repaired: the columns of
:data:`~.items.NOTE_COLUMNS`) are counted in the report and the summary line.

It runs ``options.workers`` processes, and the output does not depend on their number. It is
resumable: each finished record is logged in ``OUT/.prepare/journal.jsonl`` after its files are
written and flushed to the disk (the files of many records at once, at least twice a second:
:func:`~.journal.convert_items`), so a re-run (after a crash, ``kill -9`` or Ctrl-C) converts
only what is missing and writes byte-identical manifests. A record is converted again when its item, the converter or
the options that shape its files change. After a complete run ``OUT/records`` holds exactly
the files the manifests list.

It also runs as shards, processes that share ``OUT`` (an array job's tasks on a cluster): with
``options.shard = (I, N)`` a run converts only the records whose key falls to shard ``I`` of ``N``
and journals them in a journal of its own (:mod:`~.shards`); once every shard has finished,
:func:`merge_shards` assigns the splits over all records and writes what a one-process run
with the same options writes, byte for byte. A one-process run reuses what shards finished, and
its outputs supersede theirs (it removes their files).

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
preparer's :class:`~fairseq_goodviews.labels.LabelSet`: the four rhythm classes, or the 26
CinC 2021 classes for WFDB sources), ``patient_id`` an integer (:func:`~.splits.patient_numbers`). Our
string forms are kept as ``label_name`` (the table's ``label``) and ``patient`` (the table's
``patient_id``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from fairseq_goodviews.io.atomic import OutputPathError, ensure_writable_dir
from fairseq_goodviews.io.locks import exclusive_lock, shared_lock
from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord
from fairseq_goodviews.labels import LabelSet, label_set
from fairseq_goodviews.preprocessing.items import (
    JOURNAL,
    LOCK,
    RECORDS_DIR,
    STATE_DIR,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SourceItem,
    validate_items,
)
from fairseq_goodviews.preprocessing.journal import (
    check_out_dir,
    check_same_preparation,
    convert_items,
    remove_temporaries,
    remove_unlisted,
    write_journal,
)
from fairseq_goodviews.preprocessing.report import (
    build_report,
    pack_report_lines,
    pack_splits,
    remove_outdated_packs,
    report_options,
    shard_summary_line,
    summary_line,
    write_report,
    write_skipped,
)
from fairseq_goodviews.preprocessing.shards import (
    read_shards,
    remove_shard_files,
    shard_files,
    shard_journals,
    shard_of,
    write_shard_state,
)
from fairseq_goodviews.preprocessing.splits import assign_splits, metadata_table, patient_numbers, predefined_splits
from fairseq_goodviews.preprocessing.workers import Job, describe_converter


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
    gets (:func:`~fairseq_goodviews.labels.label_set`: ``rhythm`` or ``cinc2021``).

    On a re-run into the same ``out_dir`` a record is converted again only if its item (key,
    patient, meta, source), the converter (a dataclass converter by its fields, a function by
    its name) or ``segment_samples`` changed: put every option that changes a record's content
    into the item or the converter's fields.
    With ``options.shard`` it converts that shard's records only and writes no split, manifest
    or report (:func:`_prepare_shard`; :func:`merge_shards` writes them).
    Raises :class:`PrepareError` on unusable input or when no record could be written (the
    skip report is written first, so the reasons can be read).
    """
    options = options or PrepareOptions()
    options.validate()
    items = list(items)
    pre_skipped = list(skipped)
    validate_items(items, pre_skipped)
    out_dir = Path(out_dir)
    records_dir, state_dir = _output_dirs(out_dir)
    check_same_preparation(out_dir, source, dataclasses.asdict(options), config, options.overwrite)
    job = Job(
        str(records_dir),
        options.segment_samples,
        describe_converter(convert),
        label_set(labels),
        patient_numbers(item.patient_id or item.key for item in items),
    )
    if options.shard is not None:
        return _prepare_shard(items, convert, out_dir, job, options, options.shard, pre_skipped, source, config, labels)

    with exclusive_lock(state_dir / LOCK, f"another preparation is writing {out_dir}", PrepareError):
        for folder in (records_dir, out_dir, state_dir):
            remove_temporaries(folder)
        entries, reused = convert_items(
            items, convert, job, options, state_dir / JOURNAL, source, reuse_from=shard_journals(state_dir)
        )
        result = _write_outputs(
            out_dir,
            entries,
            pre_skipped,
            len(items) + len(pre_skipped),
            source,
            options,
            config,
            job.record_labels,
            pack_workers=options.workers,
        )
        remove_shard_files(state_dir)  # this run's outputs supersede any shards'
    result.reused = reused
    _print_summary(result, source, summary_line(result, source))
    return result


def _prepare_shard(
    items: Sequence[SourceItem],
    convert: Callable[[SourceItem], EcgRecord],
    out_dir: Path,
    job: Job,
    options: PrepareOptions,
    shard: tuple[int, int],
    pre_skipped: Sequence[Skipped],
    source: str,
    config: Mapping[str, Any] | None,
    labels: str,
) -> PrepareResult:
    """Convert the records of ``shard`` (``options.shard``) and mark it finished (:mod:`~.shards`);
    the result has no splits and no report."""
    index, count = shard
    state_dir = out_dir / STATE_DIR
    journal, state_file, lock = shard_files(state_dir, shard)
    with (
        shared_lock(state_dir / LOCK, f"a merge or a one-process preparation is writing {out_dir}", PrepareError),
        exclusive_lock(lock, f"shard {index}/{count} is already running in {out_dir}", PrepareError),
    ):
        state_file.unlink(missing_ok=True)  # finished again only once this run is
        share = [item for item in items if shard_of(item.key, count) == index]
        entries, reused = convert_items(share, convert, job, options, journal, source, reuse_from=[state_dir / JOURNAL])
        write_shard_state(
            state_dir,
            shard,
            source=source,
            labels=labels,
            options=report_options(options),
            config=config,
            items=items,
            pre_skipped=pre_skipped,
            entries=entries,
        )
    rows = [row for entry in entries for row in entry["rows"]]
    result = PrepareResult(
        out_dir=out_dir,
        records=sum(1 for e in entries if e["rows"]),
        files=len(rows),
        reused=reused,
        skipped=[s for s in pre_skipped if shard_of(s.key, count) == index]
        + [Skipped(**s) for entry in entries for s in entry["skips"]],
        splits={},
        report={},
        shard=shard,
    )
    print(shard_summary_line(result, source, shard))
    return result


def merge_shards(
    out_dir: str | Path, *, shards: int | None = None, pack: bool = False, overwrite: bool = False, workers: int = 1
) -> PrepareResult:
    """Merge the finished shards in ``out_dir`` (:mod:`~.shards`; ``shards``: their count N, needed
    only when shards of several counts are there) into what a one-process run with the shards'
    options writes, byte for byte: splits over all records, manifests, metadata tables,
    ``skipped.csv``, ``prepare_report.json`` and the journal; then remove the shards' files.

    ``pack`` packs each split, in ``workers`` processes; ``overwrite`` replaces the manifests of a
    folder prepared with other options (as a shard's ``--overwrite`` does). The report records the
    first shard's run options (``workers``, ``chunksize``) and this merge's ``pack``. Raises
    :class:`PrepareError` in one line when a shard is missing or unfinished, the shards differ,
    or a shard or another preparation is writing ``out_dir``.
    """
    if workers < 1:
        raise PrepareError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    records_dir = out_dir / RECORDS_DIR
    state_dir = out_dir / STATE_DIR
    if not state_dir.is_dir():
        raise PrepareError(f"{out_dir}: no shard to merge (run the preparer with --shard I/N first)")
    with exclusive_lock(state_dir / LOCK, f"a shard or another preparation is writing {out_dir}", PrepareError):
        run = read_shards(out_dir, state_dir, shards)
        options = dataclasses.replace(run.options, pack=pack, overwrite=run.options.overwrite or overwrite)
        check_same_preparation(out_dir, run.source, dataclasses.asdict(options), run.config, options.overwrite)
        for folder in (records_dir, out_dir, state_dir):
            remove_temporaries(folder)
        write_journal(state_dir / JOURNAL, run.entries)
        result = _write_outputs(
            out_dir,
            run.entries,
            run.pre_skipped,
            run.source_records,
            run.source,
            options,
            run.config,
            label_set(run.labels),
            pack_workers=workers,
        )
        remove_shard_files(state_dir)
    _print_summary(result, run.source, f"{summary_line(result, run.source)}; merged {run.count} shards")
    return result


def _write_outputs(
    out_dir: Path,
    entries: Sequence[Mapping[str, Any]],
    pre_skipped: Sequence[Skipped],
    source_records: int,
    source: str,
    options: PrepareOptions,
    config: Mapping[str, Any] | None,
    record_labels: LabelSet,
    *,
    pack_workers: int,
) -> PrepareResult:
    """From the journal ``entries`` of every listed record (in the listing's order): write
    ``skipped.csv``, the splits' manifests and tables and the report, remove the record files no
    manifest lists, pack with ``options.pack`` in ``pack_workers`` processes; return the result
    (``reused`` 0)."""
    rows = [row for entry in entries for row in entry["rows"]]
    all_skipped = list(pre_skipped) + [Skipped(**s) for entry in entries for s in entry["skips"]]
    write_skipped(out_dir / "skipped.csv", all_skipped)
    if not rows:  # leave an earlier run's records and manifests alone
        report = build_report(source, options, config, source_records, rows, all_skipped, {}, None, record_labels)
        _nothing_written(out_dir, source, report, all_skipped)

    table = metadata_table(rows)
    split, stratified = _split_of_rows(table, options)
    removed_packs = remove_outdated_packs(out_dir, options.split_names)
    splits = _write_manifests(out_dir, table, split, options.split_names)
    report = build_report(source, options, config, source_records, rows, all_skipped, splits, stratified, record_labels)
    report.update(packed=None, removed_packs=removed_packs)  # packed: with --pack, each split's pack
    write_report(out_dir, report)
    remove_unlisted(out_dir / RECORDS_DIR, {out_dir / row["path"] for row in rows})
    if options.pack:
        report["packed"] = pack_splits(out_dir, list(splits), workers=pack_workers)
        write_report(out_dir, report)
    return PrepareResult(
        out_dir=out_dir,
        records=sum(1 for e in entries if e["rows"]),
        files=len(rows),
        reused=0,
        skipped=all_skipped,
        splits=splits,
        report=report,
    )


def _print_summary(result: PrepareResult, source: str, summary: str) -> None:
    """Print a preparation's summary line and the lines on its packs."""
    print(summary)
    for line in pack_report_lines(result.out_dir, result.report):
        print(line)


def _output_dirs(out_dir: Path) -> tuple[Path, Path]:
    """Create ``out_dir``, its records folder and its state folder; return the latter two.

    A folder that cannot be written, or a records folder holding files this pipeline did not
    write, is a :class:`PrepareError` naming it.
    """
    records_dir = out_dir / RECORDS_DIR
    state_dir = out_dir / STATE_DIR
    try:
        ensure_writable_dir(out_dir)
        check_out_dir(out_dir)
        ensure_writable_dir(records_dir)
        ensure_writable_dir(state_dir)
    except OutputPathError as exc:
        raise PrepareError(str(exc)) from None
    return records_dir, state_dir


def _nothing_written(out_dir: Path, source: str, report: Mapping[str, Any], skipped: Sequence[Skipped]) -> NoReturn:
    """Write the report of a run that wrote no record, and raise the :class:`PrepareError` that
    counts its skips by category."""
    write_report(out_dir, report)
    reasons = ", ".join(f"{k}: {n}" for k, n in sorted(Counter(s.category for s in skipped).items()))
    raise PrepareError(
        f"{source}: no record written ({len(skipped)} skipped: {reasons}); see {out_dir / 'skipped.csv'}"
    )


def _split_of_rows(table: pd.DataFrame, options: PrepareOptions) -> tuple[pd.Series, str | None]:
    """Each row's split name (predefined by ``options.split_column``, else assigned), and the
    column the assignment was stratified by (None: unstratified or predefined)."""
    if options.split_column:
        return predefined_splits(table, options.split_column, options.split_names), None
    stratify_by = options.stratify_by
    stratified = stratify_by if stratify_by in table.columns and table[stratify_by].notna().any() else None
    return assign_splits(table, options.split_fractions, options.seed, stratified, options.split_names), stratified


def _write_manifests(
    out_dir: Path, table: pd.DataFrame, split: pd.Series, names: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Write the manifest and metadata table of each split that has rows, remove those of the
    empty ones, and return the non-empty splits' tables."""
    splits: dict[str, pd.DataFrame] = {}
    for name in names:
        part = table[(split == name).to_numpy()].reset_index(drop=True)
        if len(part):
            write_manifest(out_dir, name, out_dir, part)
            splits[name] = part
        else:
            for suffix in (".tsv", ".csv"):
                with contextlib.suppress(FileNotFoundError):
                    (out_dir / f"{name}{suffix}").unlink()
    return splits
