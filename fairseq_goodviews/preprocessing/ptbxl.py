"""PTB-XL -> per-record ``.mat`` files, the published folds and manifests.

Layout read::

    SRC/ptbxl_database.csv     ecg_id, patient_id, age, sex (0 male, 1 female), scp_codes
                               (a dict literal such as "{'NORM': 100.0, 'SR': 0.0}"),
                               strat_fold (1-10), filename_hr (500 Hz record path under SRC)
    SRC/records500/...         the WFDB records named by filename_hr

Splits are the published patient-wise folds: 1-8 train, 9 valid, 10 test (``split`` column).
A split with no record (a partial download, e.g. no fold 10) is not written, and the preparer
prints a warning naming it and its folds (:func:`missing_split_warning`); the others are.
``scp_codes`` becomes a space-separated code list (``scp_codes`` column; every statement
whatever its likelihood, since PTB-XL gives rhythm statements likelihood 0); the rhythm
statements map to Chapman's codes and the four classes (:data:`SCP_RHYTHMS`: AFIB, AFLT -> AFIB;
STACH, SVTAC, PSVT -> GSVT; SBRAD -> SB; SR, SARRH -> SR), several classes resolved by
:data:`~fairseq_goodviews.labels.CLASS_PRIORITY`. PTB-XL writes ages over 89 as 300 (de-
identification); they are stored as 90.
"""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fairseq_goodviews.labels import RHYTHM_TO_CLASS, dominant_rhythm
from fairseq_goodviews.preprocessing.items import (
    DUPLICATE,
    UNREADABLE,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SourceItem,
    read_source_table,
)
from fairseq_goodviews.preprocessing.pipeline import prepare
from fairseq_goodviews.preprocessing.wfdb_dir import (
    WfdbConverter,
    converter_config,
    record_keys,
)

DATABASE = "ptbxl_database.csv"
REQUIRED_COLUMNS: tuple[str, ...] = (
    "ecg_id",
    "patient_id",
    "age",
    "sex",
    "scp_codes",
    "strat_fold",
    "filename_hr",
)
# SCP-ECG rhythm statement -> Chapman rhythm code (labels.RHYTHM_TO_CLASS gives the class).
SCP_RHYTHMS: dict[str, str] = {
    "AFIB": "AFIB",
    "AFLT": "AF",
    "STACH": "ST",
    "SVTAC": "SVT",
    "PSVT": "SVT",
    "SBRAD": "SB",
    "SR": "SR",
    "SARRH": "SA",
}
FOLD_SPLITS: dict[int, str] = {**{f: "train" for f in range(1, 9)}, 9: "valid", 10: "test"}
_SEX = {0: "M", 1: "F"}
_AGE_OVER_89 = 300


def read_database(path: str | Path) -> pd.DataFrame:
    """Read ``ptbxl_database.csv``; :class:`PrepareError` naming the file if it is missing,
    unreadable or lacks a column of :data:`REQUIRED_COLUMNS`."""
    path = Path(path)
    if not path.is_file():
        raise PrepareError(f"{path}: PTB-XL database table not found")
    table = read_source_table(path, REQUIRED_COLUMNS, "table", dtype={"filename_hr": str, "scp_codes": str})
    if table.empty:
        raise PrepareError(f"{path}: the table has no rows")
    return table


def parse_scp_codes(text: Any) -> dict[str, float]:
    """``"{'NORM': 100.0, 'SR': 0.0}"`` -> dict, with :func:`ast.literal_eval` (never ``eval``)."""
    value = ast.literal_eval(str(text))
    if not isinstance(value, dict):
        raise ValueError(f"scp_codes is not a dict: {str(text)[:60]!r}")
    return {str(k): float(v) for k, v in value.items()}


def rhythm_from_scp(codes: Sequence[str]) -> tuple[str, str]:
    """``(rhythm, label)``: Chapman rhythm code and merged class, or ``("", "")``."""
    rhythm = dominant_rhythm(SCP_RHYTHMS[c] for c in codes if c in SCP_RHYTHMS)
    return (rhythm, RHYTHM_TO_CLASS[rhythm]) if rhythm else ("", "")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def _whole(value: float | None) -> Any:
    return int(value) if value is not None and value.is_integer() else value


def ptbxl_items(src_dir: str | Path) -> tuple[list[SourceItem], list[Skipped], dict[str, Any]]:
    """List the records of a PTB-XL folder; return (items, rejected up front, facts for the report)."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise PrepareError(f"{src_dir}: not a directory")
    database = src_dir / DATABASE
    table = read_database(database)
    records = [src_dir / str(name).strip() for name in table["filename_hr"]]
    unique = list(dict.fromkeys(records))  # a file listed twice is a duplicate row, not a name clash
    key_of = dict(zip(unique, record_keys(unique, src_dir), strict=True))
    keys = [key_of[r] for r in records]
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    seen = set()
    for number, (row, record, key) in enumerate(
        zip(table.itertuples(index=False), records, keys, strict=True), start=2
    ):
        file = str(record) + ".hea"
        if key in seen:
            skipped.append(Skipped(key, file, f"listed more than once in {DATABASE}", DUPLICATE))
            continue
        seen.add(key)
        where = f"{database} row {number}"
        if not isinstance(row.filename_hr, str) or not row.filename_hr.strip():
            skipped.append(Skipped(f"row{number}", str(database), f"{where}: empty filename_hr", UNREADABLE))
            continue
        try:
            scp = parse_scp_codes(row.scp_codes)
        except (ValueError, SyntaxError) as exc:
            skipped.append(Skipped(key, str(database), f"{where}: malformed scp_codes ({exc})", UNREADABLE))
            continue
        fold = _number(row.strat_fold)
        if fold is None or int(fold) not in FOLD_SPLITS:
            skipped.append(
                Skipped(key, str(database), f"{where}: strat_fold {row.strat_fold!r} not in 1-10", UNREADABLE)
            )
            continue
        patient = _number(row.patient_id)
        age = _number(row.age)
        if age is not None and age >= _AGE_OVER_89:
            age = 90.0
        sex = _number(row.sex)
        rhythm, label = rhythm_from_scp(list(scp))
        meta = {
            "age": _whole(age),
            "sex": _SEX.get(int(sex), "") if sex is not None else "",
            "scp_codes": " ".join(scp),
            "rhythm": rhythm,
            "label": label,
            "source": "ptb-xl",
            "ecg_id": _whole(_number(row.ecg_id)),
            "strat_fold": int(fold),
            "split": FOLD_SPLITS[int(fold)],
        }
        patient_id = str(_whole(patient)) if patient is not None else key
        items.append(SourceItem(key=key, patient_id=patient_id, meta=meta, source=record))
    facts = {
        "database_rows": len(table),
        "folds": dict(sorted(Counter(int(i.meta["strat_fold"]) for i in items).items())),
    }
    return items, skipped, facts


def prepare_ptbxl(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    converter: WfdbConverter | None = None,
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a PTB-XL folder into ``out_dir`` with its published folds (see :func:`~.pipeline.prepare`);
    print :func:`missing_split_warning` when a published split has no record."""
    converter = converter or WfdbConverter()
    options = dataclasses.replace(options or PrepareOptions(), split_column="split")
    items, skipped, facts = ptbxl_items(src_dir)
    config = {"src_dir": str(Path(src_dir).resolve()), **converter_config(converter), **facts}
    result = prepare(items, converter, out_dir, options=options, skipped=skipped, source="ptbxl", config=config)
    warning = missing_split_warning(result.splits)
    if warning and result.shard is None:  # a shard's splits are known when the shards are merged
        print(warning)
    return result


def missing_split_warning(written: Collection[str]) -> str | None:
    """The warning line on the published splits with no record, naming each with its folds and
    the splits to name instead (``written``: the splits that have one); None when all three do."""
    published = list(dict.fromkeys(FOLD_SPLITS.values()))
    missing = [name for name in published if name not in written]
    have = [name for name in published if name in written]
    if not missing:
        return None
    where = ", ".join(f"{_folds_of(name)} (the {name} split)" for name in missing)
    files = ", ".join(f"{name}.tsv/.csv" for name in missing)
    return (
        f"warning: ptbxl: no record in {where}, so {files} {'was' if len(missing) == 1 else 'were'} not written (add those folds' records "
        f"to prepare it); where a command takes a split, name one written: {', '.join(have)} "
        f"(e.g. goodviews-evaluate --split {have[-1]})"
    )


def _folds_of(split: str) -> str:
    """``"folds 1-8"``, ``"fold 10"``: the published folds of ``split``."""
    folds = [fold for fold, name in FOLD_SPLITS.items() if name == split]
    return f"folds {folds[0]}-{folds[-1]}" if len(folds) > 1 else f"fold {folds[0]}"
