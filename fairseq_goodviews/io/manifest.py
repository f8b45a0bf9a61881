"""Manifests (fairseq-signals format) and the per-split metadata table.

``<split>.tsv``: first line the root directory, then ``relative/path.mat<TAB>n_samples``.
``<split>.csv``: one row per manifest line, in the same order, with the columns of
:data:`METADATA_COLUMNS` (plus any extra columns a source adds) so that strategies can group
records without opening every ``.mat``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Sequence, Tuple

import pandas as pd

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.atomic import atomic_open

# The eleven numeric wave attributes of Chapman's Diagnostics.xlsx, stored as ``attr_<name>``.
ATTRIBUTE_NAMES: tuple[str, ...] = (
    "VentricularRate",
    "AtrialRate",
    "QRSDuration",
    "QTInterval",
    "QTCorrected",
    "RAxis",
    "TAxis",
    "QRSCount",
    "QOnset",
    "QOffset",
    "TOffset",
)
ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(f"attr_{n}" for n in ATTRIBUTE_NAMES)

METADATA_COLUMNS: tuple[str, ...] = (
    "path",
    "n_samples",
    "record_id",
    "patient_id",
    "age",
    "sex",
    "rhythm",
    "beat",
    "label",
    "source",
    "sample_rate",
    *ATTRIBUTE_COLUMNS,
)


class ManifestError(GoodviewsError, ValueError):
    """A manifest or metadata table that cannot be used; the message names the file."""


def write_manifest(out_dir: str | Path, split: str, root: str | Path, table: pd.DataFrame) -> None:
    """Write ``<split>.tsv`` and ``<split>.csv`` atomically from a metadata table.

    ``table`` needs at least ``path`` (relative to ``root``) and ``n_samples``; missing standard
    columns are added empty so every split has the same layout.
    """
    out_dir = Path(out_dir)
    table = table.copy()
    for column in ("path", "n_samples"):
        if column not in table.columns:
            raise ManifestError(f"metadata for split {split!r} has no {column!r} column")
    for column in METADATA_COLUMNS:
        if column not in table.columns:
            table[column] = pd.NA
    ordered = list(METADATA_COLUMNS) + [c for c in table.columns if c not in METADATA_COLUMNS]
    table = table[ordered]
    with atomic_open(out_dir / f"{split}.tsv") as handle:
        handle.write(f"{Path(root).resolve()}\n")
        for path, n_samples in zip(table["path"], table["n_samples"], strict=True):
            handle.write(f"{path}\t{int(n_samples)}\n")
    with atomic_open(out_dir / f"{split}.csv", newline="") as handle:
        table.to_csv(handle, index=False)


def read_manifest(path: str | Path) -> Tuple[Path, List[Tuple[str, int]]]:
    """Read a ``.tsv`` manifest; raises :class:`ManifestError` naming the file on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip():
        raise ManifestError(f"{path}: empty manifest (no root directory line)")
    root = Path(lines[0].strip())
    entries: List[Tuple[str, int]] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].strip().isdigit():
            raise ManifestError(f"{path}:{number}: expected 'relative/path<TAB>n_samples', got {line!r}")
        entries.append((parts[0], int(parts[1])))
    if not entries:
        raise ManifestError(f"{path}: empty manifest (no records)")
    return root, entries


#: Columns read as text whatever their cells look like: identifiers, codes and class names.
TEXT_COLUMNS: tuple[str, ...] = (
    "path",
    "record_id",
    "patient_id",
    "label",
    "labels",
    "dx",
    "dx_unknown",
    "scp_codes",
    "rhythm",
    "beat",
)


def read_metadata(manifest_dir: str | Path, split: str, required: Sequence[str] = ()) -> pd.DataFrame:
    """Read ``<split>.csv`` and check it lines up with ``<split>.tsv``.

    ``required`` names columns the caller needs (e.g. ``age`` and ``sex`` for demographics); a
    missing column raises :class:`ManifestError` naming the file and the column. A missing
    ``<split>.csv`` in a prepared folder (one with ``prepare_report.json``) is a split the
    preparation never wrote: the error says so and names the splits its report lists.
    """
    manifest_dir = Path(manifest_dir)
    csv_path = manifest_dir / f"{split}.csv"
    if not csv_path.is_file():
        raise ManifestError(_missing_split(manifest_dir, split, csv_path))
    # Only empty cells are missing: an id such as "NA" or "nan" stays a string, and so does a column
    # of codes or class names whose every cell happens to be one number (a split where each record
    # has a single SNOMED code would otherwise read as integers and match no label).
    table = pd.read_csv(csv_path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False, na_values=[""])
    missing = [c for c in ("path", *required) if c not in table.columns]
    if missing:
        raise ManifestError(f"{csv_path}: missing column(s) {', '.join(missing)}")
    _, entries = read_manifest(manifest_dir / f"{split}.tsv")
    if len(entries) != len(table) or any(p != e[0] for p, e in zip(table["path"], entries, strict=True)):
        raise ManifestError(f"{csv_path}: rows do not match {split}.tsv line for line")
    return table


def _missing_split(manifest_dir: Path, split: str, csv_path: Path) -> str:
    """Why ``<split>.csv`` is missing: a split its preparation never wrote (``prepare_report.json``
    lists the splits it wrote), else a metadata table not found."""
    try:
        splits = json.loads((manifest_dir / "prepare_report.json").read_text())["splits"]
    except (OSError, ValueError, TypeError, KeyError):  # no report, or not one a preparation wrote
        return f"{csv_path}: metadata table not found (it is written beside {split}.tsv)"
    listed = ", ".join(splits) or "none"
    return (
        f"{manifest_dir} has no {split} split: its prepare_report.json lists {listed} "
        f"(no record of the source fell in {split}; see the preparation's warning, or name one of these splits)"
    )
