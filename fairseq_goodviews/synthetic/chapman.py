"""Synthetic Chapman/Shaoxing database: the figshare release's layout, filled by the ECG model.

:func:`generate_chapman` writes what the release of Zheng et al. (2020) contains::

    OUT/Diagnostics.xlsx                 one sheet, the 16 real columns in the real order
    OUT/ECGDataDenoised/<FileName>.csv   5000 rows x 12 leads (I, II, III, aVR, aVL, aVF, V1..V6),
                                         microvolts, 500 Hz, no header row unless ``header=True``

Each record is :func:`fairseq_goodviews.synthetic.ecg.synthesize_record`; its attribute columns
are the model's own true fiducials (see that module). With ``diagnostics=PATH`` the rows of an
existing ``Diagnostics.xlsx`` are kept unchanged and each record is synthesised to agree with its
row (rhythm, conditions, rate, QRS duration, QT, axes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd

from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.synthetic.ecg import synthesize_record
from fairseq_goodviews.synthetic.errors import SyntheticDataError
from fairseq_goodviews.synthetic.jobs import check_workers, chunk_size, run_jobs
from fairseq_goodviews.synthetic.targets import targets_from_row

COLUMNS: tuple[str, ...] = ("FileName", "Rhythm", "Beat", "PatientAge", "Gender", *ATTRIBUTE_NAMES)
DIAGNOSTICS_NAME = "Diagnostics.xlsx"
SIGNAL_DIR = "ECGDataDenoised"


@lru_cache(maxsize=4)
def _csv_template(rows: int, columns: int) -> str:
    """One %-format string for a whole table: a single formatting call is the fastest writer."""
    return "\n".join([",".join(["%.3f"] * columns)] * rows) + "\n"


def write_signal_csv(path: str | Path, leads: np.ndarray, header: bool = False) -> None:
    """Write (5000, 12) microvolts as Chapman's CSV (3 decimals), atomically."""
    text = _csv_template(*leads.shape) % tuple(leads.ravel().tolist())
    with atomic_path(path) as tmp:
        Path(tmp).write_text((",".join(CANONICAL_LEADS) + "\n" if header else "") + text)


def synthetic_file_name(seed: int, index: int) -> str:
    """A unique MUSE-style name (``MUSE_YYYYMMDD_HHMMSS_NN000``), increasing with ``index``."""
    rng = np.random.default_rng([seed, index, 1])
    when = datetime(2018, 1, 11, 7, 0, 0) + timedelta(seconds=47 * index + int(rng.integers(0, 47)))
    return f"MUSE_{when:%Y%m%d_%H%M%S}_{int(rng.integers(10, 100)):02d}000"


def _write_diagnostics(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    """One sheet, the real header; values as given (the real file stores text in the first five
    columns, PatientAge included, and integers in the others)."""
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Sheet1")
    sheet.append(list(COLUMNS))
    for row in rows:
        sheet.append(list(row))
    with atomic_path(path) as tmp:
        book.save(tmp)


def _read_diagnostics_rows(path: Path, n_records: int | None) -> tuple[list[tuple[Any, ...]], pd.DataFrame]:
    """The raw cell values of the first ``n_records`` rows (all if None) and the same rows parsed."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = tuple(str(c).strip() if c is not None else "" for c in next(rows, ()))
        if header[: len(COLUMNS)] != COLUMNS:
            raise SyntheticDataError(f"{path}: expected the columns {', '.join(COLUMNS)}; found {', '.join(header)}")
        raw = []
        for row in rows:
            if n_records is not None and len(raw) >= n_records:
                break
            if row and any(v is not None for v in row):
                raw.append(tuple(row[: len(COLUMNS)]))
    finally:
        book.close()
    table = pd.DataFrame([list(r) for r in raw], columns=list(COLUMNS))
    for column in ("PatientAge", *ATTRIBUTE_NAMES):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return raw, table


_Job = tuple[str, int, bool, list[tuple[int, Mapping[str, Any] | None]]]


def _generate_chunk(job: _Job) -> list[dict[str, Any]]:
    """Worker: synthesise and write the records of one chunk; return their rows."""
    out_dir, seed, header, items = job
    rows = []
    for index, source in items:
        targets = None if source is None else targets_from_row(source)
        row, leads = synthesize_record(seed, index, targets)
        name = synthetic_file_name(seed, index) if source is None else str(source["FileName"]).strip()
        write_signal_csv(Path(out_dir) / SIGNAL_DIR / f"{name}.csv", leads, header=header)
        rows.append({"FileName": name, **row})
    return rows


def generate_chapman(
    out_dir: str | Path,
    n_records: int | None,
    seed: int = 0,
    diagnostics: str | Path | None = None,
    workers: int = 1,
    header: bool = False,
) -> pd.DataFrame:
    """Write a synthetic Chapman database to ``out_dir``; return the Diagnostics table written.

    Random mode (``diagnostics`` None): ``n_records`` records drawn from the calibrated
    distributions; the attribute columns are the model's true fiducials (not a measurement). With
    ``diagnostics=PATH`` the first ``n_records`` rows of that Diagnostics.xlsx (all when None)
    are written back unchanged and each record's waveform is synthesised from its row. ``header``
    writes the lead names as the first CSV row. ``workers`` > 1 runs a process pool over chunks;
    the files do not depend on it.
    """
    if seed < 0:
        raise SyntheticDataError(f"seed must be >= 0, got {seed}")
    check_workers(workers)
    out = Path(out_dir)
    (out / SIGNAL_DIR).mkdir(parents=True, exist_ok=True)
    if diagnostics is None:
        if n_records is None or n_records < 1:
            raise SyntheticDataError(f"n_records must be a positive integer, got {n_records!r}")
        items: list[tuple[int, Mapping[str, Any] | None]] = [(i, None) for i in range(n_records)]
        raw, table = None, None
    else:
        raw, table = _read_diagnostics_rows(Path(diagnostics), n_records)
        items = [(i, row) for i, row in enumerate(table.to_dict("records"))]
    size = chunk_size(len(items), workers, largest=200)
    jobs = [(str(out), seed, header, items[k : k + size]) for k in range(0, len(items), size)]
    rows = run_jobs(_generate_chunk, jobs, workers)
    if raw is not None:
        _write_diagnostics(out / DIAGNOSTICS_NAME, raw)
        return table
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    as_written = [
        (
            r["FileName"],
            r["Rhythm"],
            r["Beat"],
            str(r["PatientAge"]),
            r["Gender"],
            *(int(r[c]) for c in ATTRIBUTE_NAMES),
        )
        for r in rows
    ]
    _write_diagnostics(out / DIAGNOSTICS_NAME, as_written)
    return table
