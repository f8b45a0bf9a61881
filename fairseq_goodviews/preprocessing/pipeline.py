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
    OUT/train.packed.npy, ...        with ``pack``: each split packed (:mod:`~fairseq_goodviews.io.packed`)

An output folder that cannot be written (its path is a file, no permission) is a
:class:`~.items.PrepareError` naming it, raised before anything is written. Records written with a
note (leads marked absent because flat, invalid samples repaired: the columns of
:data:`~.items.NOTE_COLUMNS`) are counted in the report and the summary line.

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
from fairseq_goodviews.io.locks import exclusive_lock
from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord
from fairseq_goodviews.labels import label_set
from fairseq_goodviews.preprocessing.items import (
    JOURNAL,
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
)
from fairseq_goodviews.preprocessing.report import (
    build_report,
    pack_report_lines,
    pack_splits,
    remove_outdated_packs,
    summary_line,
    write_report,
    write_skipped,
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

    with exclusive_lock(state_dir / "lock", f"another preparation is writing {out_dir}", PrepareError):
        for folder in (records_dir, out_dir, state_dir):
            remove_temporaries(folder)
        entries, reused = convert_items(items, convert, job, options, state_dir / JOURNAL, source)
        rows = [row for entry in entries for row in entry["rows"]]
        all_skipped = pre_skipped + [Skipped(**s) for entry in entries for s in entry["skips"]]
        write_skipped(out_dir / "skipped.csv", all_skipped)
        if not rows:  # leave an earlier run's records and manifests alone
            report = build_report(source, options, config, items, pre_skipped, rows, all_skipped, {}, None, job)
            _nothing_written(out_dir, source, report, all_skipped)

        table = metadata_table(rows)
        split, stratified = _split_of_rows(table, options)
        removed_packs = remove_outdated_packs(out_dir, options.split_names)
        splits = _write_manifests(out_dir, table, split, options.split_names)
        report = build_report(source, options, config, items, pre_skipped, rows, all_skipped, splits, stratified, job)
        report.update(packed=None, removed_packs=removed_packs)  # packed: with --pack, each split's pack
        write_report(out_dir, report)
        remove_unlisted(records_dir, {out_dir / row["path"] for row in rows})
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
    print(summary_line(result, source))
    for line in pack_report_lines(out_dir, report):
        print(line)
    return result


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
