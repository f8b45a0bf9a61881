"""Chapman/Shaoxing (Zheng et al. 2020) -> per-record ``.mat`` files, splits and manifests.

Layout read (as published on figshare)::

    SRC/Diagnostics.xlsx                one sheet: FileName, Rhythm, Beat, PatientAge, Gender,
                                        and eleven wave attributes (VentricularRate ... TOffset)
    SRC/ECGDataDenoised/<FileName>.csv  5000 rows x 12 leads (I..V6), microvolts, 500 Hz;
    SRC/ECGData/<FileName>.csv          the raw signals (``raw=True``), same format

A CSV may start with a header row of lead names (its columns are then matched by name) or not.
Each record is written in millivolts (float32) with its metadata; ``label`` is the merged
four-class rhythm (:func:`fairseq_goodviews.labels.rhythm_class`).

The paper's cohort ("Good Views", §3.1) is ``min_age=18``: 10,381 patients in the real file, of
which the paper dropped 12 with unusable signals (10,369). The signal check of the pipeline
reports such records in ``skipped.csv``.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.io.records import EcgRecord, RecordError
from fairseq_goodviews.labels import UnknownRhythmError, rhythm_class
from fairseq_goodviews.leads import CANONICAL_LEADS, canonical_lead_name
from fairseq_goodviews.preprocessing.items import (
    DUPLICATE,
    FILTERED,
    MISSING_FILE,
    UNKNOWN_LABEL,
    UNREADABLE,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SourceItem,
    is_valid_key,
)
from fairseq_goodviews.preprocessing.pipeline import prepare

SAMPLE_RATE = 500.0
N_SAMPLES = 5000
DIAGNOSTICS = "Diagnostics.xlsx"
DENOISED_DIR = "ECGDataDenoised"
RAW_DIR = "ECGData"
DIAGNOSTICS_COLUMNS: tuple[str, ...] = ("FileName", "Rhythm", "Beat", "PatientAge", "Gender", *ATTRIBUTE_NAMES)
_SEX = {"MALE": "M", "FEMALE": "F", "M": "M", "F": "F"}


def read_diagnostics(path: str | Path) -> pd.DataFrame:
    """Read ``Diagnostics.xlsx`` (first sheet); errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"{path}: Chapman metadata file not found")
    try:
        # No default NA strings: a FileName such as "NA" or "nan" is a name, not a missing value.
        table = pd.read_excel(
            path,
            sheet_name=0,
            keep_default_na=False,
            dtype={"FileName": str, "Rhythm": str, "Beat": str, "Gender": str},
        )
    except Exception as exc:
        raise PrepareError(f"{path}: cannot read the spreadsheet ({type(exc).__name__}: {exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in DIAGNOSTICS_COLUMNS if c not in table.columns]
    if missing:
        raise PrepareError(f"{path}: missing column(s) {', '.join(missing)}")
    table = table[(table.astype(str) != "").any(axis=1)]
    if table.empty:
        raise PrepareError(f"{path}: the metadata table is empty")
    table["FileName"] = table["FileName"].str.strip()
    for column in ("PatientAge", *ATTRIBUTE_NAMES):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table.reset_index(drop=True)


def chapman_cohort(diagnostics: pd.DataFrame, min_age: float | None = None, exclude: Iterable[str] = ()) -> pd.Series:
    """Boolean mask of the rows kept by the cohort rules (age >= ``min_age``, not excluded)."""
    keep = ~diagnostics["FileName"].isin(set(exclude))
    if min_age is not None:
        keep &= diagnostics["PatientAge"].ge(min_age).fillna(False)
    return keep


def _numbers(line: str) -> bool:
    try:
        [float(token) for token in line.split(",")]
    except ValueError:
        return False
    return True


def _parse(path: Path, header: int, na_filter: bool) -> np.ndarray:
    return pd.read_csv(path, header=None, skiprows=header, engine="c", dtype=np.float64, na_filter=na_filter).to_numpy()


def read_chapman_csv(path: str | Path, expected_samples: int | None = N_SAMPLES) -> np.ndarray:
    """Read one Chapman CSV into a float64 [12, T] array in microvolts (canonical lead order).

    A header row of lead names is detected (and its order honoured); every data row is kept.
    Raises :class:`RecordError` naming the file for anything malformed: not text, wrong number
    of columns or rows, non-numeric cells, a truncated last line. ``NaN`` cells are returned as
    NaN (the pipeline reports the lead).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            first_line = handle.readline()
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                raise RecordError(path, "empty file")
            handle.seek(-1, os.SEEK_END)
            ends_with_newline = handle.read(1) == b"\n"
    except FileNotFoundError:
        raise RecordError(path, "file not found") from None
    except OSError as exc:
        raise RecordError(path, f"cannot read ({exc.strerror})") from None
    try:
        first = first_line.removeprefix(codecs.BOM_UTF8).decode("ascii").strip()
    except UnicodeDecodeError:
        raise RecordError(path, "not a text CSV (binary or corrupt first line)") from None
    order: list[int] | None = None
    header = 0
    if first and not _numbers(first):
        names = [canonical_lead_name(t.strip().strip('"')) for t in first.split(",")]
        if None in names or sorted(names) != sorted(CANONICAL_LEADS):
            raise RecordError(path, f"first line is neither numbers nor the 12 lead names: {first[:80]!r}")
        order = [names.index(lead) for lead in CANONICAL_LEADS]
        header = 1
    try:
        try:  # fast path: no NA detection
            values = _parse(path, header, na_filter=False)
        except ValueError:  # "NaN" or empty cells: parse again, they become NaN
            values = _parse(path, header, na_filter=True)
    except pd.errors.EmptyDataError:
        raise RecordError(path, "no data rows") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        raise RecordError(path, f"malformed CSV ({detail})") from None
    if values.shape[1] != len(CANONICAL_LEADS):
        raise RecordError(path, f"{values.shape[1]} columns, expected {len(CANONICAL_LEADS)}")
    if not ends_with_newline and np.isnan(values[-1]).any():
        raise RecordError(path, f"truncated (last line incomplete, {len(values)} rows)")
    if expected_samples is not None and len(values) != expected_samples:
        raise RecordError(path, f"{len(values)} rows, expected {expected_samples}")
    if order is not None:
        values = values[:, order]
    return values.T


@dataclass(frozen=True)
class ChapmanConverter:
    """Picklable converter: ``item.source`` is the CSV path, ``item.meta`` the table row."""

    expected_samples: int | None = N_SAMPLES

    def __call__(self, item: SourceItem) -> EcgRecord:
        microvolts = read_chapman_csv(item.source, self.expected_samples)
        feats = (microvolts / 1000.0).astype(np.float32)
        meta = {k: item.meta[k] for k in ("age", "sex", "rhythm", "beat", "label", "source")}
        meta["attributes"] = np.array([item.meta[f"attr_{n}"] for n in ATTRIBUTE_NAMES], dtype=np.float32)
        return EcgRecord(feats=feats, sample_rate=SAMPLE_RATE, meta=meta)


def _value(value: Any) -> Any:
    if pd.isna(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


def read_exclude_file(path: str | Path) -> list[str]:
    """FileNames to leave out, one per line (``.csv`` suffix, blank lines and ``#`` comments ok)."""
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"{path}: exclude file not found")
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name[:-4] if name.lower().endswith(".csv") else name)
    return names


def chapman_items(
    src_dir: str | Path,
    *,
    min_age: float | None = None,
    exclude: Sequence[str] = (),
    raw: bool = False,
) -> tuple[list[SourceItem], list[Skipped], dict[str, Any]]:
    """List the records of a Chapman folder; return (items, rejected up front, facts for the report)."""
    src_dir = Path(src_dir)
    diagnostics_path = src_dir / DIAGNOSTICS
    table = read_diagnostics(diagnostics_path)
    signal_dir, available = _signal_files(src_dir, raw)

    excluded = set(exclude)
    kept = chapman_cohort(table, min_age=min_age, exclude=excluded)
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    seen: set = set()
    for number, (row, keep) in enumerate(zip(table.itertuples(index=False), kept, strict=True)):
        name = row.FileName
        if not isinstance(name, str) or not name:
            skipped.append(
                Skipped(
                    f"row{number + 2}",
                    str(diagnostics_path),
                    f"empty FileName in spreadsheet row {number + 2}",
                    UNREADABLE,
                )
            )
            continue
        csv_path = signal_dir / f"{name}.csv"
        file = str(csv_path)
        if not is_valid_key(name):
            skipped.append(
                Skipped(
                    f"row{number + 2}",
                    file,
                    f"FileName {name!r} is unusable as a file name (letters, digits and _ . + - only)",
                    UNREADABLE,
                )
            )
            continue
        if name in seen:
            skipped.append(Skipped(name, file, f"FileName listed more than once in {DIAGNOSTICS}", DUPLICATE))
            continue
        seen.add(name)
        if not keep:
            reason = (
                "listed in the exclude file"
                if name in excluded
                else f"age {_value(row.PatientAge)} below --min-age {min_age:g}"
            )
            skipped.append(Skipped(name, file, reason, FILTERED))
            continue
        try:
            label = rhythm_class(row.Rhythm if isinstance(row.Rhythm, str) else "")
        except UnknownRhythmError as exc:
            skipped.append(Skipped(name, file, str(exc), UNKNOWN_LABEL))
            continue
        if f"{name}.csv" not in available:
            skipped.append(Skipped(name, file, f"no {name}.csv in {signal_dir}", MISSING_FILE))
            continue
        items.append(SourceItem(key=name, patient_id=name, meta=_item_meta(row, label), source=csv_path))
    facts = {
        "diagnostics_rows": len(table),
        "csv_files": len(available),
        "csv_without_metadata": len(available - {f"{n}.csv" for n in table["FileName"].dropna()}),
        "exclude_not_in_metadata": len(excluded - set(table["FileName"].dropna())),
    }
    return items, skipped, facts


def _signal_files(src_dir: Path, raw: bool) -> tuple[Path, set[str]]:
    """The signal folder (raw or denoised) and the names of its ``.csv`` files; a missing or
    empty folder is a :class:`PrepareError` (naming the other folder when only that exists)."""
    signal_dir = src_dir / (RAW_DIR if raw else DENOISED_DIR)
    if not signal_dir.is_dir():
        other = src_dir / (DENOISED_DIR if raw else RAW_DIR)
        hint = f" (found {other.name}/: {'drop' if raw else 'use'} --raw)" if other.is_dir() else ""
        raise PrepareError(f"{signal_dir}: signal folder not found{hint}")
    available = {entry.name for entry in os.scandir(signal_dir) if entry.name.endswith(".csv")}
    if not available:
        raise PrepareError(f"{signal_dir}: the signal folder is empty (no .csv files)")
    return signal_dir, available


def _item_meta(row: Any, label: str) -> dict[str, Any]:
    """The metadata-table columns of one spreadsheet row (a ``Diagnostics.xlsx`` tuple)."""
    meta: dict[str, Any] = {
        "age": _value(row.PatientAge),
        "sex": _SEX.get(str(row.Gender).strip().upper(), ""),
        "rhythm": row.Rhythm.strip(),
        "beat": row.Beat.strip() if isinstance(row.Beat, str) else "",
        "label": label,
        "source": "chapman",
    }
    meta.update((f"attr_{n}", _value(getattr(row, n))) for n in ATTRIBUTE_NAMES)
    return meta


def prepare_chapman(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    min_age: float | None = None,
    exclude: Sequence[str] = (),
    raw: bool = False,
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a Chapman folder into ``out_dir`` (see :func:`~.pipeline.prepare` for the layout)."""
    items, skipped, facts = chapman_items(src_dir, min_age=min_age, exclude=exclude, raw=raw)
    config = {
        "src_dir": str(Path(src_dir).resolve()),
        "signals": RAW_DIR if raw else DENOISED_DIR,
        "min_age": min_age,
        "excluded": len(set(exclude)),
        **facts,
    }
    return prepare(
        items, ChapmanConverter(), out_dir, options=options, skipped=skipped, source="chapman", config=config
    )
