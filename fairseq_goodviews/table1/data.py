"""The data of a Table 1 benchmark: synthetic records prepared once, and one split per seed."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict

import pandas as pd

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.manifest import read_manifest, read_metadata, write_manifest
from fairseq_goodviews.preprocessing.chapman import prepare_chapman
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
from fairseq_goodviews.preprocessing.splits import assign_splits
from fairseq_goodviews.synthetic.chapman import generate_chapman
from fairseq_goodviews.synthetic.ptbxl import generate_ptbxl
from fairseq_goodviews.table1.execute import read_result
from fairseq_goodviews.table1.plan import BenchmarkError

logger = logging.getLogger("fairseq_goodviews.table1")
SPLITS = ("train", "valid", "test")


def _prepared_once(out: Path, name: str, facts: Dict[str, Any], build: Callable[[Path, Path], None]) -> Path:
    """``OUT/data/<name>``, built once by ``build(raw, prepared)`` from raw files it then deletes.

    A finished preparation is marked by ``<name>/prepared.json`` with ``facts``; anything without
    the marker is redone from scratch, and a marker with other facts is an error.
    """
    raw, prepared = out / "data" / f"{name}_raw", out / "data" / name
    marker = prepared / "prepared.json"
    done = read_result(marker)
    if done is not None:
        if {key: done.get(key) for key in facts} != facts:
            raise BenchmarkError(
                f"{prepared} was prepared with { ({key: done.get(key) for key in facts}) }, not "
                f"{facts}: use another --out"
            )
        return prepared
    for folder in (raw, prepared):
        shutil.rmtree(folder, ignore_errors=True)
    start = time.monotonic()
    build(raw, prepared)
    shutil.rmtree(raw, ignore_errors=True)
    with atomic_open(marker) as handle:
        json.dump({**facts, "seconds": time.monotonic() - start}, handle)
    return prepared


def prepare_synthetic(out: Path, n_records: int, seed: int = 0, workers: int = 1) -> Path:
    """``n_records`` synthetic Chapman records prepared (once) under ``OUT/data/chapman``; the raw
    CSVs (about 0.5 MB a record) are deleted afterwards."""

    def build(raw: Path, prepared: Path) -> None:
        logger.info("generating %d synthetic Chapman records in %s", n_records, raw)
        generate_chapman(raw, n_records, seed=seed, workers=workers)
        logger.info("preparing them into %s", prepared)
        prepare_chapman(raw, prepared, min_age=18, options=PrepareOptions(workers=workers, seed=seed, progress=False))

    return _prepared_once(out, "chapman", {"n_records": n_records, "seed": seed}, build)


def check_data(data: Path) -> Path:
    data = Path(data).resolve()
    missing = [
        f"{split}.{ext}"
        for split in ("train", "valid", "test")
        for ext in ("tsv", "csv")
        if not (data / f"{split}.{ext}").is_file()
    ]
    if missing:
        raise BenchmarkError(f"{data}: not a prepared manifest folder (missing {', '.join(missing)})")
    return data


def split_for_seed(prepared: Path, out: Path, seed: int) -> Path:
    """``prepared``'s records re-split patient-wise with ``seed`` (60/20/20, stratified by class),
    as manifests in ``OUT/data/split-s<seed>`` that point at the same ``.mat`` files.

    The spread of a strategy over seeds then includes the choice of split, not only training
    noise. Written once; a folder with another source is an error.
    """

    folder = out / "data" / f"split-s{seed}"
    marker = folder / "split.json"
    done = read_result(marker)
    if done is not None:
        if done.get("source") != str(prepared):
            raise BenchmarkError(f"{folder} was split from {done.get('source')}, not {prepared}: use another --out")
        return folder
    roots = {str(read_manifest(prepared / f"{split}.tsv")[0]) for split in SPLITS}
    if len(roots) != 1:
        raise BenchmarkError(f"{prepared}: the splits' manifests have different roots ({', '.join(sorted(roots))})")
    (root,) = roots
    table = pd.concat([read_metadata(prepared, split) for split in SPLITS], ignore_index=True)
    if table["patient_id"].isna().any():
        table["patient_id"] = table["patient_id"].fillna(table["path"])
    stratum = "label" if "label" in table.columns and table["label"].notna().any() else None
    assigned = assign_splits(table, seed=seed, stratify_by=stratum)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_manifest(folder, split, root, table[assigned == split])
    if (prepared / "prepare_report.json").is_file():
        shutil.copyfile(prepared / "prepare_report.json", folder / "prepare_report.json")
    with atomic_open(marker) as handle:
        json.dump(
            {
                "source": str(prepared),
                "seed": seed,
                "records": {split: int((assigned == split).sum()) for split in SPLITS},
            },
            handle,
        )
    return folder


def prepare_synthetic_ptbxl(out: Path, n_patients: int, seed: int = 0, workers: int = 1) -> Path:
    """A synthetic multi-visit PTB-XL-layout set (``n_patients``, 1-4 ECGs each) through the real
    PTB-XL preparer, once, under ``OUT/data/ptbxl`` (with its ``scp_statements.csv``)."""

    def build(raw: Path, prepared: Path) -> None:
        logger.info("generating %d synthetic PTB-XL patients in %s", n_patients, raw)
        generate_ptbxl(raw, n_patients, seed=seed)
        prepare_ptbxl(raw, prepared, options=PrepareOptions(workers=workers, progress=False))
        shutil.copyfile(raw / "scp_statements.csv", prepared / "scp_statements.csv")

    return _prepared_once(out, "ptbxl", {"n_patients": n_patients, "seed": seed}, build)
