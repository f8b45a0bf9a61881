"""The data of a Table 1 benchmark: synthetic records prepared once, one split per seed, and the
downstream task the data supports."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pandas as pd

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.manifest import read_manifest, read_metadata, write_manifest
from fairseq_goodviews.labels.base import LabelSetError
from fairseq_goodviews.labels.label_set import LabelSet, label_set
from fairseq_goodviews.labels.ptbxl import SCP_STATEMENTS
from fairseq_goodviews.preprocessing.chapman import prepare_chapman
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
from fairseq_goodviews.preprocessing.splits import assign_splits
from fairseq_goodviews.synthetic.chapman import generate_chapman
from fairseq_goodviews.synthetic.ptbxl import generate_ptbxl
from fairseq_goodviews.table1.downstream import PREPARER_TASKS, TASKS, label_set_name
from fairseq_goodviews.table1.execute import read_result
from fairseq_goodviews.table1.plan import BenchmarkError

logger = logging.getLogger("fairseq_goodviews.table1")
SPLITS = ("train", "valid", "test")
#: Files of a prepared folder that its per-seed splits carry along: the preparation's report (the
#: source folder, the preparer) and PTB-XL's statement table (the ``ptbxl_*`` label sets).
SIDE_FILES = ("prepare_report.json", SCP_STATEMENTS)


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
    for name in SIDE_FILES:
        if (prepared / name).is_file():
            shutil.copyfile(prepared / name, folder / name)
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
        generate_ptbxl(raw, n_patients, seed=seed, workers=workers)
        prepare_ptbxl(raw, prepared, options=PrepareOptions(workers=workers, progress=False))
        shutil.copyfile(raw / "scp_statements.csv", prepared / "scp_statements.csv")

    return _prepared_once(out, "ptbxl", {"n_patients": n_patients, "seed": seed}, build)


def _report(data: Path) -> Dict[str, Any]:
    """``data``'s ``prepare_report.json`` (empty without one; a damaged one only loses detection)."""
    report = data / "prepare_report.json"
    try:
        content = json.loads(report.read_text()) if report.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return content if isinstance(content, dict) else {}


def _scp_statements(data: Path) -> Path:
    """PTB-XL's statement table of ``data``: beside it, else in the folder its report says it was
    prepared from (the classification task looks in the same two places)."""
    src_dir = (_report(data).get("config") or {}).get("src_dir")
    candidates = [data / SCP_STATEMENTS, *([Path(src_dir) / SCP_STATEMENTS] if src_dir else [])]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise LabelSetError(f"no {SCP_STATEMENTS} at {' or '.join(map(str, candidates))}")
    return found


def _why_unsupported(data: Path, train: pd.DataFrame, task: str) -> Optional[str]:
    """Why the prepared folder ``data`` (its train split's metadata ``train``) cannot support
    ``task`` (None: some train record has a label of the task's set)."""
    try:
        labels: LabelSet = label_set(label_set_name(task), scp_statements=lambda: _scp_statements(data))
        _, labelled = labels.targets(train, str(data / "train.csv"))
    except LabelSetError as exc:
        return str(exc)
    return None if labelled.any() else f"no train record has a label of the {labels.description}"


def supported_tasks(data: Path) -> Dict[str, Optional[str]]:
    """Every task (:data:`~fairseq_goodviews.table1.downstream.TASKS` order) -> why ``data`` cannot
    support it (None: it can)."""
    train = read_metadata(data, "train")
    return {task: _why_unsupported(data, train, task) for task in TASKS}


def choose_task(data: Path, requested: Optional[str]) -> tuple[str, str]:
    """The downstream task of a benchmark on the prepared folder ``data``, and how it was chosen.

    ``requested`` (``--task``) must be a task the folder supports; without it, the task of the
    preparer that wrote the folder (``prepare_report.json``'s ``source``) when the folder supports
    it, else the first task it supports. Otherwise :class:`BenchmarkError`, one line naming
    ``data`` and the tasks it supports.
    """
    if requested is not None and requested not in TASKS:
        raise BenchmarkError(f"unknown --task {requested!r}; choose from {', '.join(TASKS)}")
    why_not = supported_tasks(data)
    supported = [task for task, why in why_not.items() if why is None]
    if requested is not None:
        if requested not in supported:
            raise BenchmarkError(
                f"{data} cannot support --task {requested} ({why_not[requested]}); "
                f"it supports {', '.join(supported) or 'no benchmark task'}"
            )
        return requested, "--task"
    if not supported:
        raise BenchmarkError(f"{data}: no train record has labels of any benchmark task ({', '.join(TASKS)})")
    source = _report(data).get("source")
    if PREPARER_TASKS.get(source) in supported:
        return PREPARER_TASKS[source], f"detected: the task of the data's preparer ({source})"
    return supported[0], "detected: the first task the data supports"
