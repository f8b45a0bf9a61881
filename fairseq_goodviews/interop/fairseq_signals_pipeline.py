"""What fairseq-signals' current preprocessing keeps outside its ``.mat`` files, read back by ``idx``.

Its current pipeline (``scripts/preprocess/ecg/preprocess.py``, ``*_signals.py``, ``splits.py``,
``*_labels.py``, ``prepare_clf_labels.py``, ``manifests.py``) gives every recording an integer
sample id ``idx`` and writes, under one processed root per data source::

    ROOT/segmented/<source>_<record>_<i>.mat  ``feats`` [12, T] (each lead standardised over the
                         recording), ``mean`` and ``std`` [12, 1], ``idx``, ``segment_i``,
                         ``curr_sample_rate``, ``curr_sample_size``, ``org_sample_rate``,
                         ``org_sample_size``; no label and no patient
    ROOT/meta.csv        one row per recording by ``idx``: the source's own columns, among them
                         the patient (``subject_id`` for MIMIC-IV-ECG, ``patient_id`` for
                         CODE-15%; none for PhysioNet 2021), ``age`` and ``sex`` (0 male, 1 female)
    ROOT/labels/y.npy    float64 [max idx + 1, K]: row ``idx`` is that recording's 0/1 labels
    ROOT/labels/label_def.csv  one row per column of ``y.npy``, in order, its class in ``name``

The manifests (``<split>.tsv``) list the segments, so a record's processed root is the folder
above the one that holds it. :func:`complete_from_pipeline` fills, for the records that carry an
``idx`` but no label or patient of their own, the label from ``y.npy`` (or ``--label-file``),
and the patient, age and sex from ``meta.csv``; without a patient column, the recording (its
``idx``) is the patient, as fairseq-signals' own CMSC dataset takes it. :func:`signal_scale`
decides the folder's signal scale: millivolts, millivolts restored from each file's ``mean`` and
``std`` (by :func:`~fairseq_goodviews.io.records.read_record`), or standardised leads without them,
which are refused unless accepted.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.interop.fairseq_signals_labels import check_class_names
from fairseq_goodviews.preprocessing.items import UNKNOWN_LABEL, PrepareError

LABELS_DIR = "labels"
LABEL_ARRAY = "y.npy"
LABEL_DEF = "label_def.csv"
META_TABLE = "meta.csv"
# Patient columns of meta.csv, in the order they are looked for.
PATIENT_COLUMNS = ("patient_id", "subject_id")
# A lead's std, over the median lead of a record, between these bounds reads as standardised
# (std 1 over the recording); millivolt leads lie well below.
STANDARDISED_STD = (0.5, 2.0)

_SEX = {"0": "M", "1": "F", "m": "M", "male": "M", "f": "F", "female": "F"}

SCALE_MV = "mV"
SCALE_RESTORED = "mV restored from each file's mean and std"
SCALE_STANDARDISED = "standardised (accepted with --standardised-inputs)"


@dataclass
class PipelineFiles:
    """What the import took from the pipeline's files beside the records, for the report."""

    label_files: list[str] = field(default_factory=list)
    patient_tables: list[str] = field(default_factory=list)
    recordings_as_patients: int = 0


def processed_root(record_file: str | Path) -> Path:
    """The processed root of a segment file: the folder above ``segmented/``."""
    return Path(record_file).parent.parent


def _label_def_names(path: Path, size: int) -> list[str] | None:
    """The class names of ``label_def.csv`` beside a label array, None without the file."""
    if not path.is_file():
        return None
    try:
        names = [str(name) for name in pd.read_csv(path)["name"]]
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise PrepareError(f"{path}: no 'name' column of class names ({type(exc).__name__})") from None
    if len(names) != size:
        raise PrepareError(f"{path}: lists {len(names)} classes, its {LABEL_ARRAY} has {size} columns")
    try:
        return check_class_names([(f"{path}:{row}", name) for row, name in enumerate(names, start=2)])
    except PrepareError as exc:
        raise PrepareError(f"{exc}; pass --label-names to name the classes") from None


def load_label_array(path: Path, with_names: bool = True) -> tuple[np.ndarray, list[str] | None]:
    """A ``y.npy`` as prepare_clf_labels.py writes it (rows by ``idx``, 0/1 columns) and, with
    ``with_names``, the class names of the ``label_def.csv`` beside it; :class:`PrepareError`
    naming the file otherwise."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise PrepareError(f"{path}: label file not found") from None
    except (OSError, ValueError) as exc:
        raise PrepareError(f"{path}: not a .npy label array ({type(exc).__name__}: {exc})") from None
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise PrepareError(f"{path}: expected a numeric [n, K] label array, got {array.dtype} {list(array.shape)}")
    if not np.isin(array, (0, 1)).all():
        raise PrepareError(f"{path}: holds values other than 0 and 1 (not classification labels)")
    names = _label_def_names(path.parent / LABEL_DEF, array.shape[1]) if with_names else None
    return array.astype(bool), names


def _patient_table(root: Path) -> tuple[str, dict[int, dict[str, Any]]] | None:
    """meta.csv's patient column and ``{idx: {"patient", "age", "sex"}}``; None without a table
    or without a patient column."""
    path = root / META_TABLE
    if not path.is_file():
        return None
    try:
        header = pd.read_csv(path, nrows=0).columns
        column = next((c for c in PATIENT_COLUMNS if c in header), None)
        if "idx" not in header or column is None:
            return None
        wanted = ["idx", column, *(c for c in ("age", "sex") if c in header)]
        table = pd.read_csv(path, usecols=wanted).dropna(subset=["idx"]).drop_duplicates("idx")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise PrepareError(f"{path}: cannot read the patient table ({type(exc).__name__}: {exc})") from None
    table = table.astype({"idx": int}).set_index("idx")
    rows = {
        int(idx): {"patient": _cell(row[column]), "age": _cell(row.get("age")), "sex": _cell(row.get("sex"))}
        for idx, row in table.iterrows()
    }
    return f"{path} ({column})", rows


def _cell(value: Any) -> Any:
    """A table cell as a plain value (whole floats as ints, NaN as None)."""
    if value is None or pd.isna(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return value.item() if isinstance(value, np.generic) else value


def sex_letter(value: Any) -> str:
    """M or F from fairseq-signals' 0 (male) / 1 (female), or a name; empty when unknown."""
    plain = _cell(value)
    return _SEX.get(str(plain).strip().lower(), "") if plain is not None else ""


def complete_from_pipeline(
    results: MutableSequence[dict[str, Any]],
    files: Sequence[str],
    label_file: str | Path | None,
    names_given: bool,
) -> PipelineFiles:
    """Fill, in place, the label (from ``label_file``, else each processed root's ``labels/y.npy``,
    its classes named by the ``label_def.csv`` beside it unless ``names_given``) and the patient,
    age and sex (from each processed root's ``meta.csv``) of the records that carry an ``idx`` and
    none of their own. A record whose ``idx`` has no row in the label array is skipped
    (``unknown_label``)."""
    found = PipelineFiles()
    arrays: dict[Path, tuple[np.ndarray, list[str] | None] | None] = {}
    tables: dict[Path, tuple[str, dict[int, dict[str, Any]]] | None] = {}
    given = load_label_array(Path(label_file), not names_given) if label_file is not None else None
    for number, (result, file) in enumerate(zip(results, files, strict=True)):
        idx = result.get("idx")
        if "row" not in result or idx is None:
            continue
        root = processed_root(file)
        if result["label"] is None:
            if root not in arrays:
                path = root / LABELS_DIR / LABEL_ARRAY
                arrays[root] = (
                    given if given is not None else load_label_array(path, not names_given) if path.is_file() else None
                )
                if arrays[root] is not None:
                    found.label_files.append(str(Path(label_file) if given is not None else path))
            if arrays[root] is not None:
                array, names = arrays[root]
                if idx >= len(array):
                    where = label_file if given is not None else root / LABELS_DIR / LABEL_ARRAY
                    results[number] = {"skip": (f"idx {idx} has no row in {where} ({len(array)} rows)", UNKNOWN_LABEL)}
                    continue
                result["label"] = {"multi_hot": np.flatnonzero(array[idx]).tolist(), "size": int(array.shape[1])}
                result["classes"] = ",".join(names) if names is not None else None
        if result["own_patient"]:
            continue
        if root not in tables:
            tables[root] = _patient_table(root)
            if tables[root] is not None:
                found.patient_tables.append(tables[root][0])
        known = tables[root][1].get(idx) if tables[root] is not None else None
        row = result["row"]
        if known is None or known["patient"] is None:
            row["patient_id"] = f"idx{idx}"
            found.recordings_as_patients += 1
            continue
        row["patient_id"] = str(known["patient"])
        row["age"] = row["age"] if row["age"] is not None else known["age"]
        row["sex"] = row["sex"] or sex_letter(known["sex"])
    found.label_files = list(dict.fromkeys(found.label_files))
    return found


def looks_standardised(feats: np.ndarray, leads: np.ndarray) -> float | None:
    """The median std of the ``leads`` of ``feats`` when it reads as standardised, else None."""
    std = float(np.median(np.std(feats[leads], axis=1))) if leads.any() else 0.0
    return std if STANDARDISED_STD[0] <= std <= STANDARDISED_STD[1] else None


def signal_scale(results: Sequence[dict[str, Any]], files: Sequence[str], accept_standardised: bool) -> str:
    """The folder's signal scale; :class:`PrepareError` naming a file when most records not
    restored from their mean and std read as standardised and ``accept_standardised`` is false."""
    read = [(r, f) for r, f in zip(results, files, strict=True) if "row" in r]
    plain = [(r, f) for r, f in read if not r["restored_mv"]]
    standardised = [(r, f) for r, f in plain if r["standardised_std"] is not None]
    if plain and 2 * len(standardised) >= len(plain):
        if not accept_standardised:
            result, file = standardised[0]
            raise PrepareError(
                f"{file}: its leads look standardised (median lead std {result['standardised_std']:.2f}, where "
                "millivolt leads lie far below 1) with no 'mean'/'std' to restore millivolts, as do "
                f"{len(standardised)} of the {len(plain)} records without them: pass --standardised-inputs to "
                "import them as standardised inputs"
            )
        return SCALE_STANDARDISED
    return SCALE_RESTORED if read and len(plain) < len(read) else SCALE_MV
