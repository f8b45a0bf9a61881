"""Downstream label sets: Chapman's four merged rhythm classes (Zheng et al. 2020) and the
multi-label PTB-XL statement tasks (the CinC 2021 classes are in
:mod:`fairseq_goodviews.evaluation.cinc2021`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairseq_goodviews.errors import GoodviewsError

CLASS_NAMES: tuple[str, ...] = ("AFIB", "GSVT", "SB", "SR")

# Chapman's 11 rhythm codes -> merged class. ``SA`` is sinus irregularity (the paper's table
# says ``SI``, which never occurs in Diagnostics.xlsx; it is accepted as an alias).
RHYTHM_TO_CLASS: dict[str, str] = {
    "AFIB": "AFIB",
    "AF": "AFIB",
    "SVT": "GSVT",
    "AT": "GSVT",
    "SAAWR": "GSVT",
    "ST": "GSVT",
    "AVNRT": "GSVT",
    "AVRT": "GSVT",
    "SB": "SB",
    "SR": "SR",
    "SA": "SR",
    "SI": "SR",
}


class UnknownRhythmError(GoodviewsError, ValueError):
    """A rhythm code outside the Chapman vocabulary."""


def rhythm_class(rhythm: str) -> str:
    """Merged class of a Chapman rhythm code; raises :class:`UnknownRhythmError`."""
    code = str(rhythm).strip().upper()
    if code not in RHYTHM_TO_CLASS:
        raise UnknownRhythmError(f"unknown rhythm code {rhythm!r}; known codes: {', '.join(sorted(RHYTHM_TO_CLASS))}")
    return RHYTHM_TO_CLASS[code]


def class_index(name: str) -> int:
    return CLASS_NAMES.index(name)


# Where one record carries rhythm codes of several classes (PhysioNet 2021, PTB-XL), the first
# class in this order wins: a specific abnormal rhythm over the sinus rhythm often co-annotated.
CLASS_PRIORITY: tuple[str, ...] = ("AFIB", "GSVT", "SB", "SR")


def dominant_rhythm(rhythms: Iterable[str]) -> str | None:
    """The Chapman rhythm code among ``rhythms`` whose class ranks first in :data:`CLASS_PRIORITY`.

    Unknown codes are ignored; None when no code maps to a class. Ties within a class keep the
    first code given.
    """
    best: str | None = None
    for rhythm in rhythms:
        code = str(rhythm).strip().upper()
        if code not in RHYTHM_TO_CLASS:
            continue
        if best is None or CLASS_PRIORITY.index(RHYTHM_TO_CLASS[code]) < CLASS_PRIORITY.index(RHYTHM_TO_CLASS[best]):
            best = code
    return best


# --- Multi-label sets -------------------------------------------------------------------------

#: PTB-XL statement tasks of the PTB-XL benchmark (Strodthoff et al. 2021), built from the
#: dataset's ``scp_statements.csv``: every statement (all), diagnostic statements, their
#: ``diagnostic_subclass`` (subdiagnostic) or ``diagnostic_class`` (superdiagnostic), form and
#: rhythm statements. Every statement of a record counts whatever its likelihood.
PTBXL_TASKS: tuple[str, ...] = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
SCP_STATEMENTS = "scp_statements.csv"


class LabelSetError(GoodviewsError, ValueError):
    """A label set that cannot be built (missing statement table, unknown task, ...)."""


def read_scp_statements(path: str | Path) -> pd.DataFrame:
    """PTB-XL's statement table indexed by SCP code; :class:`LabelSetError` naming the file if unusable."""
    path = Path(path)
    if not path.is_file():
        raise LabelSetError(f"{path}: PTB-XL statement table not found")
    try:
        table = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise LabelSetError(f"{path}: unreadable statement table ({exc})") from exc
    missing = [
        c for c in ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass") if c not in table.columns
    ]
    if missing:
        raise LabelSetError(f"{path}: missing column(s) {', '.join(missing)} (is this PTB-XL's {SCP_STATEMENTS}?)")
    table.index = table.index.astype(str).str.strip()
    return table


def ptbxl_task_map(statements: pd.DataFrame, task: str) -> dict[str, str]:
    """SCP code -> label of ``task`` (one of :data:`PTBXL_TASKS`) for the codes that task uses."""
    if task not in PTBXL_TASKS:
        raise LabelSetError(f"unknown PTB-XL task {task!r}; known: {', '.join(PTBXL_TASKS)}")
    if task == "all":
        return {code: code for code in statements.index}
    if task in ("form", "rhythm"):
        return {code: code for code in statements.index[statements[task] == 1]}
    diagnostic = statements[statements["diagnostic"] == 1]
    if task == "diagnostic":
        return {code: code for code in diagnostic.index}
    column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    return {code: str(label) for code, label in diagnostic[column].items() if isinstance(label, str)}


def multi_hot(code_lists: Sequence[Iterable[str]], code_to_class: Mapping[str, int], n_classes: int) -> np.ndarray:
    """[n, n_classes] float32 multi-hot targets of per-record code lists; unknown codes are ignored."""
    targets = np.zeros((len(code_lists), n_classes), dtype=np.float32)
    for row, codes in enumerate(code_lists):
        for code in codes:
            index = code_to_class.get(str(code).strip())
            if index is not None:
                targets[row, index] = 1.0
    return targets


# --- The label vector of each record file -------------------------------------------------------


@dataclass(frozen=True)
class RecordLabels:
    """The multi-hot ``label`` vector a preparer writes into every record file.

    fairseq-signals' classification dataset hands the file's ``label`` to its classifier as the
    target (``.float()``, one column per output, binary cross-entropy), so every record carries
    a vector over a fixed class list: one-hot for a single-label source, all zeros for a record
    with none of the classes, a logical array as fairseq-signals' own PhysioNet 2021
    preprocessing writes it. The vector is read from the metadata column ``column`` (its
    whitespace-separated values, each mapped by ``value_to_class``; unknown values are ignored).
    """

    name: str
    classes: tuple[str, ...]
    column: str
    value_to_class: Mapping[str, int]

    def vector(self, meta: Mapping[str, object]) -> np.ndarray:
        """bool [K] of one record's metadata (missing or unknown values: all zeros)."""
        value = meta.get(self.column)
        vector = np.zeros(len(self.classes), dtype=bool)
        for token in value.split() if isinstance(value, str) else ():
            index = self.value_to_class.get(token)
            if index is not None:
                vector[index] = True
        return vector


def record_labels(name: str) -> RecordLabels:
    """The label vector set called ``name``: ``rhythm`` (the four merged rhythm classes of the
    ``label`` column, :data:`CLASS_NAMES`) or ``cinc2021`` (the 26 scored classes of the SNOMED
    ``dx`` codes, in the order of the Challenge's ``weights.csv``, which fairseq-signals reads)."""
    if name == "rhythm":
        return RecordLabels("rhythm", CLASS_NAMES, "label", {c: i for i, c in enumerate(CLASS_NAMES)})
    if name == "cinc2021":
        from fairseq_goodviews.evaluation.cinc2021 import CINC2021_CLASS_NAMES, CINC2021_CODE_TO_CLASS

        return RecordLabels("cinc2021", CINC2021_CLASS_NAMES, "dx", dict(CINC2021_CODE_TO_CLASS))
    raise LabelSetError(f"unknown record label set {name!r}; known: rhythm, cinc2021")
