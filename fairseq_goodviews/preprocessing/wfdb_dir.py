"""Any directory of WFDB records -> per-record ``.mat`` files, splits and manifests.

Records are found recursively (every ``.hea`` file under SRC); any lead names (case-insensitive,
aliases), order, subset and sample rate are accepted (see :mod:`.wfdb_reader`). The patient id is
the one the header comments give (``patient:``/``patient id:``/``subject:``), else the record name
(``--patient-from-folder``: the name of the record's folder, as in PTB Diagnostic's
``patient001/s0010_re``). Wave attributes are measured automatically (``--no-attributes`` to skip).
The record files' ``label`` vector is the 26 scored CinC 2021 classes of the headers' ``#Dx``
codes (all zeros without any).

This module also holds what the three WFDB preparers (this one, PhysioNet 2021, PTB-XL) share:
the picklable :class:`WfdbConverter` and the command-line options of the reader.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.io.records import EcgRecord, RecordError
from fairseq_goodviews.labels import CINC2021_LABEL_SET
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.items import (
    BAD_SIGNAL,
    MISSING_FILE,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SkipRecord,
    SourceItem,
)
from fairseq_goodviews.preprocessing.pipeline import prepare
from fairseq_goodviews.preprocessing.wave_attributes import compute_wave_attributes, load_backend
from fairseq_goodviews.preprocessing.wfdb_reader import (
    DEFAULT_FLAT_LEADS,
    DEFAULT_MAX_RATE,
    DEFAULT_MIN_RATE,
    DEFAULT_TARGET_RATE,
    BadSignalError,
    MissingFileError,
    find_records,
    read_header_comments,
    read_wfdb,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass(frozen=True)
class WfdbConverter:
    """Picklable converter: ``item.source`` is the record path (without ``.hea``).

    The ``.mat`` file gets ``item.meta`` (scalars), the header's age/sex where the item has none,
    ``leads`` (present leads), ``ignored_channels``, ``flat_leads`` (marked absent) and
    ``repaired_samples`` (``lead:count`` of interpolated invalid samples) where any,
    ``source_sample_rate`` and, with
    ``attributes``, the eleven ``attr_*`` values (also as the ``attributes`` vector, as the
    Chapman preparer stores them) and ``attr_missing`` (why any is NaN).
    """

    target_rate: float = DEFAULT_TARGET_RATE
    min_rate: float = DEFAULT_MIN_RATE
    flat_leads: str = DEFAULT_FLAT_LEADS
    attributes: bool = True
    max_rate: float = DEFAULT_MAX_RATE

    def __call__(self, item: SourceItem) -> EcgRecord:
        try:
            read = read_wfdb(
                item.source,
                target_rate=self.target_rate,
                min_rate=self.min_rate,
                flat_leads=self.flat_leads,
                max_rate=self.max_rate,
            )
        except MissingFileError as exc:
            raise SkipRecord(exc.problem, category=MISSING_FILE, file=exc.path) from None
        except BadSignalError as exc:
            raise SkipRecord(exc.problem, category=BAD_SIGNAL, file=exc.path) from None
        record = read.record
        meta: dict[str, Any] = {k: v for k, v in item.meta.items() if np.ndim(v) == 0}
        if _missing(meta.get("age")):
            meta["age"] = age_value(read.header.age)
        if not meta.get("sex"):
            meta["sex"] = read.header.sex
        meta["leads"] = ",".join(np.array(CANONICAL_LEADS)[record.lead_present])
        meta["ignored_channels"] = ",".join(read.ignored_channels)
        if read.flat_leads:
            meta["flat_leads"] = ",".join(read.flat_leads)
        if read.repaired_samples:
            meta["repaired_samples"] = ",".join(read.repaired_samples)
        meta["source_sample_rate"] = read.source_rate
        if self.attributes:
            measured = compute_wave_attributes(record.feats, record.sample_rate, record.lead_present)
            meta.update(measured.as_columns())
            meta["attributes"] = np.array([measured.values[n] for n in ATTRIBUTE_NAMES], dtype=np.float32)
            meta["attr_missing"] = "; ".join(f"{n}: {r}" for n, r in measured.reasons.items())
        record.meta = meta
        return record


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def age_value(age: float) -> Any:
    """A header age for the metadata table: None when unknown, an int when whole."""
    if age != age:
        return None
    return int(age) if float(age).is_integer() else age


def record_keys(records: Sequence[Path], root: Path) -> list[str]:
    """File-name-safe unique keys: the record name, or its path under ``root`` where names clash."""
    names = [_UNSAFE.sub("_", r.name) for r in records]
    counts = Counter(names)
    keys = []
    for record, name in zip(records, names, strict=True):
        if counts[name] > 1:
            name = _UNSAFE.sub("_", "_".join(record.relative_to(root).parts))
        keys.append(name)
    return keys


def list_records(src_dir: str | Path) -> list[Path]:
    """Every WFDB record under ``src_dir``; :class:`PrepareError` naming the folder if none."""
    try:
        return find_records(src_dir)
    except RecordError as exc:
        raise PrepareError(str(exc)) from None


def wfdb_dir_items(
    src_dir: str | Path,
    *,
    source_name: str | None = None,
    patient_from_folder: bool = False,
) -> tuple[list[SourceItem], list[Skipped], dict[str, Any]]:
    """List the records of a WFDB folder; return (items, rejected up front, facts for the report)."""
    src_dir = Path(src_dir)
    records = list_records(src_dir)
    source = source_name or src_dir.resolve().name
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    for record, key in zip(records, record_keys(records, src_dir), strict=True):
        try:
            info = read_header_comments(record)
        except (RecordError, OSError) as exc:
            skipped.append(Skipped(key, str(record) + ".hea", str(exc), MISSING_FILE))
            continue
        if info.patient_id:
            patient = info.patient_id
        elif patient_from_folder and record.parent != src_dir:
            patient = record.parent.name
        else:
            patient = record.name
        meta = {"age": age_value(info.age), "sex": info.sex, "source": source, "record_name": record.name}
        if info.dx:
            meta["dx"] = " ".join(info.dx)
        if info.dx_unknown:
            meta["dx_unknown"] = " ".join(info.dx_unknown)
        items.append(SourceItem(key=key, patient_id=str(patient), meta=meta, source=record))
    facts = {"headers": len(records)}
    return items, skipped, facts


def quiet_file_logging() -> None:
    """Keep wfdb's file system layer (fsspec) from logging every file it opens: importing fairseq
    sets the root logger to DEBUG, which would print three lines per record."""
    logging.getLogger("fsspec").setLevel(logging.WARNING)


def converter_config(converter: WfdbConverter) -> Mapping[str, Any]:
    """The converter's options for the report; loads the attribute backend here first when the
    converter measures attributes, so that forked workers inherit it instead of each importing it."""
    if converter.attributes:
        load_backend()
    return {
        "target_rate": converter.target_rate,
        "min_rate": converter.min_rate,
        "max_rate": converter.max_rate,
        "flat_leads": converter.flat_leads,
        "attributes": converter.attributes,
    }


def summarise_channels(result: PrepareResult) -> str:
    """One line on the channels that were left out, counted over the written records."""
    counts: Counter = Counter()
    for part in result.splits.values():
        if "ignored_channels" not in part.columns:
            continue
        for value in part.drop_duplicates("record_id")["ignored_channels"]:
            if isinstance(value, str) and value:
                counts.update(value.split(","))
    if not counts:
        return "ignored channels: none"
    return "ignored channels (records): " + ", ".join(f"{name} {n}" for name, n in counts.most_common())


def prepare_wfdb_dir(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    converter: WfdbConverter | None = None,
    source_name: str | None = None,
    patient_from_folder: bool = False,
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a folder of WFDB records into ``out_dir`` (see :func:`~.pipeline.prepare`)."""
    converter = converter or WfdbConverter()
    items, skipped, facts = wfdb_dir_items(src_dir, source_name=source_name, patient_from_folder=patient_from_folder)
    config = {
        "src_dir": str(Path(src_dir).resolve()),
        "patient_from_folder": patient_from_folder,
        **converter_config(converter),
        **facts,
    }
    return prepare(
        items,
        converter,
        out_dir,
        options=options,
        skipped=skipped,
        source="wfdb_dir",
        config=config,
        labels=CINC2021_LABEL_SET,
    )
