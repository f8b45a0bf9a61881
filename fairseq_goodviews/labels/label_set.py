"""The label sets of the project: each one's classes and where a record's labels come from.

One :class:`LabelSet` object describes a set wherever it is used: the preparers write its
vector into every record file (:meth:`LabelSet.vector`), the classification task reads its
targets from a metadata table (:meth:`LabelSet.targets`), and scoring adds the CinC 2021
challenge score where it applies (:attr:`LabelSet.challenge_scored`). :func:`label_set` builds
every set by name:

- ``rhythm``: one class per record, the ``label`` column's value (Chapman's four merged rhythm
  classes, :data:`~fairseq_goodviews.labels.rhythm.CLASS_NAMES`, unless ``classes`` names others);
- ``cinc2021``: the 26 scored PhysioNet/CinC 2021 classes of the SNOMED CT codes in the ``dx``
  column (the equivalent pairs merged), in the order of the Challenge's ``weights.csv``, which
  fairseq-signals reads too;
- ``labels``: the class names ``classes`` among the space-separated names of the ``labels``
  column (as the fairseq-signals importer writes it);
- ``ptbxl_<task>``, ``<task>`` one of :data:`~fairseq_goodviews.labels.ptbxl.PTBXL_TASKS`: the
  PTB-XL benchmark task of the SCP codes in the ``scp_codes`` column, from PTB-XL's
  ``scp_statements.csv``.

Every set but ``rhythm`` is multi-label: a record has any number of its classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairseq_goodviews.labels.base import LabelSetError, listed_classes, multi_hot
from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES, CINC2021_CODE_TO_CLASS
from fairseq_goodviews.labels.ptbxl import PTBXL_TASKS, ptbxl_task_map, read_scp_statements
from fairseq_goodviews.labels.rhythm import CLASS_NAMES

RHYTHM_LABEL_SET = "rhythm"
CINC2021_LABEL_SET = "cinc2021"
NAMED_LABEL_SET = "labels"
PTBXL_PREFIX = "ptbxl_"
#: The multi-label sets, by name.
MULTI_LABEL_SETS: tuple[str, ...] = (
    CINC2021_LABEL_SET,
    NAMED_LABEL_SET,
    *(f"{PTBXL_PREFIX}{task}" for task in PTBXL_TASKS),
)


def _codes(cell: object) -> list[str]:
    """The whitespace-separated codes of a metadata cell (none for a missing value)."""
    return cell.split() if isinstance(cell, str) else []


@dataclass(frozen=True)
class LabelSet:
    """A label set: its classes and where a record's labels come from.

    A record's labels are read from the metadata column ``column``: for a multi-label set its
    whitespace-separated codes, each mapped to a class by ``code_to_class`` (unknown codes are
    ignored); for a single-label set (``multi_label`` False) the whole value, which must be a
    key of ``code_to_class``. ``challenge_scored``: the CinC 2021 challenge score applies.
    """

    name: str
    classes: tuple[str, ...]
    column: str
    code_to_class: Mapping[str, int]
    multi_label: bool = True
    challenge_scored: bool = False

    @property
    def description(self) -> str:
        """``"label set rhythm (4 classes: AFIB, GSVT, SB, SR)"``, for messages; a long class list
        is cut to its first names and a count (:func:`~.base.listed_classes`)."""
        return f"label set {self.name} ({len(self.classes)} classes: {listed_classes(self.classes)})"

    def vector(self, meta: Mapping[str, object]) -> np.ndarray:
        """bool [K] of one record's metadata: the classes of the codes in its ``column`` value
        (missing or unknown values: all zeros), the ``label`` vector a preparer writes into the
        record file (fairseq-signals reads it as the classifier's target)."""
        return multi_hot([_codes(meta.get(self.column))], self.code_to_class, len(self.classes))[0].astype(bool)

    def targets(self, table: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
        """(targets, labelled) of a metadata ``table`` with n rows: class indices int64 [n] (-1:
        none) for a single-label set, float32 multi-hot [n, K] for a multi-label one, and bool [n]
        True where a record has one of the classes. :class:`LabelSetError` (naming ``where``) if
        the table lacks ``column``."""
        if self.column not in table.columns:
            raise LabelSetError(f"{where}: no {self.column!r} column, which the {self.description} reads")
        if not self.multi_label:
            indices = [self.code_to_class.get(cell, -1) if isinstance(cell, str) else -1 for cell in table[self.column]]
            targets = np.array(indices, dtype=np.int64)
            return targets, targets >= 0
        targets = multi_hot([_codes(cell) for cell in table[self.column]], self.code_to_class, len(self.classes))
        return targets, targets.any(axis=1)


def _indexed(classes: Sequence[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(classes)}


def label_set(
    name: str,
    classes: Sequence[str] | None = None,
    scp_statements: str | Path | Callable[[], str | Path] | None = None,
) -> LabelSet:
    """The label set called ``name`` (see the module docstring).

    ``classes`` are the class names of the ``rhythm`` set (default: the four rhythm classes) and
    of the ``labels`` set (required); the other sets have their own. ``scp_statements`` is
    PTB-XL's ``scp_statements.csv`` for the ``ptbxl_*`` sets: its path, or a function returning
    it, called only for those sets. Raises :class:`LabelSetError` for an unknown name or a
    missing input.
    """
    if name == RHYTHM_LABEL_SET:
        names = CLASS_NAMES if classes is None else tuple(classes)
        return LabelSet(name, names, "label", _indexed(names), multi_label=False)
    if name == CINC2021_LABEL_SET:
        return LabelSet(name, CINC2021_CLASS_NAMES, "dx", dict(CINC2021_CODE_TO_CLASS), challenge_scored=True)
    if name == NAMED_LABEL_SET:
        if classes is None:
            raise LabelSetError(f"label set {name!r} needs its class names")
        names = tuple(classes)
        return LabelSet(name, names, "labels", _indexed(names))
    if name in MULTI_LABEL_SETS:  # ptbxl_<task>
        if scp_statements is None:
            raise LabelSetError(f"label set {name!r} needs PTB-XL's scp_statements.csv")
        path = scp_statements() if callable(scp_statements) else scp_statements
        code_to_label = ptbxl_task_map(read_scp_statements(path), name.removeprefix(PTBXL_PREFIX))
        names = tuple(sorted(set(code_to_label.values())))
        index = _indexed(names)
        return LabelSet(name, names, "scp_codes", {code: index[label] for code, label in code_to_label.items()})
    known = (RHYTHM_LABEL_SET, *MULTI_LABEL_SETS)
    raise LabelSetError(f"unknown label set {name!r}; known: {', '.join(known)}")
