"""Splits: patient-wise split assignment, predefined splits, and the table they are cut from."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.preprocessing.items import SPLITS, PrepareError

_INTEGER = re.compile(r"-?[0-9]+")


def patient_numbers(patient_ids: Iterable[str]) -> dict[str, int]:
    """The integer of each patient id in the record files: the id itself when every id is a
    decimal integer that fits int32 (PTB-XL's patients; fairseq-signals' identification batch
    holds them in an ``IntTensor``), else the id's rank among the sorted distinct ids."""
    ids = sorted(set(patient_ids))
    if all(_INTEGER.fullmatch(i) and abs(int(i)) < 2**31 and str(int(i)) == i for i in ids):
        return {i: int(i) for i in ids}
    return {i: n for n, i in enumerate(ids)}


def assign_splits(
    table: pd.DataFrame,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify_by: str | None = None,
    names: Sequence[str] = SPLITS,
    patient_column: str = "patient_id",
) -> pd.Series:
    """Patient-wise, seeded, optionally stratified split assignment; returns names per row.

    Each patient's stratum is its most frequent ``stratify_by`` value (ties: the smallest value;
    missing values form a stratum of their own). Within a stratum, patients (sorted by id, then
    shuffled) get evenly spaced positions (rank + 0.5) / n in [0, 1); all patients, ordered by
    position (random tie-break), are cut at the cumulative fractions. So the split sizes match
    the fractions over all patients, every stratum is spread over the splits in proportion
    (within one patient), and no patient appears in two splits. The result depends only on
    the table's content and ``seed``.
    """
    if len(fractions) != len(names):
        raise PrepareError(f"{len(fractions)} split fractions for {len(names)} split names")
    patients = table[patient_column].astype(str)
    if stratify_by is not None and stratify_by in table.columns:
        labels = table[stratify_by].map(lambda v: "" if pd.isna(v) else str(v))
        counts = pd.DataFrame({"p": patients, "l": labels}).value_counts().reset_index(name="n")
        counts = counts.sort_values(["p", "n", "l"], ascending=[True, False, True])
        stratum_of = counts.drop_duplicates("p").set_index("p")["l"]
    else:
        stratum_of = pd.Series("", index=pd.Index(sorted(patients.unique()), name="p"))
    rng = np.random.default_rng(seed)
    members: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for stratum in sorted(stratum_of.unique()):
        group = np.array(sorted(stratum_of.index[stratum_of == stratum]), dtype=object)
        members.append(group[rng.permutation(len(group))])
        positions.append((np.arange(len(group)) + 0.5) / len(group))
    ordered = np.concatenate(members)
    ordered = ordered[np.lexsort((rng.random(len(ordered)), np.concatenate(positions)))]
    bounds = np.concatenate([[0], np.round(np.cumsum(fractions) * len(ordered)).astype(int)])
    bounds[-1] = len(ordered)
    split_of: dict[str, str] = {}
    for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
        split_of.update((p, name) for p in ordered[start:stop])
    return patients.map(split_of)


def predefined_splits(table: pd.DataFrame, column: str, names: Sequence[str]) -> pd.Series:
    """Each row's split name as ``column`` gives it; a missing column or a value outside ``names`` is an error."""
    if column not in table.columns:
        raise PrepareError(f"split column {column!r} is not in the metadata of the written records")
    splits = table[column].astype(str)
    bad = table.loc[~splits.isin(names), "record_id"]
    if len(bad):
        raise PrepareError(
            f"split column {column!r} has values outside {', '.join(names)} for record(s) "
            f"{', '.join(bad.astype(str).unique()[:5])}"
        )
    return splits


def metadata_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> table; integer columns with missing values stay integer (``Int64``), not float."""
    table = pd.DataFrame.from_records(rows)
    for column in table.columns[(table.dtypes == np.float64).to_numpy() & table.isna().any().to_numpy()]:
        values = [r.get(column) for r in rows]
        if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            table[column] = table[column].astype("Int64")
    return table
