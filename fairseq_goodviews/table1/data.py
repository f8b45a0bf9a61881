"""The data of a Table 1 benchmark: synthetic records prepared once, and one split per seed."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.table1.execute import read_result
from fairseq_goodviews.table1.plan import BenchmarkError

logger = logging.getLogger("fairseq_goodviews.table1")
SPLITS = ("train", "valid", "test")


def prepare_synthetic(out: Path, n_records: int, seed: int = 0, workers: int = 1) -> Path:
    """Generate ``n_records`` synthetic Chapman records and prepare them (once) under ``OUT/data``.

    A finished preparation is marked by ``chapman/prepared.json``; anything without the marker is
    redone from scratch. The raw CSVs are deleted afterwards (they are ~0.5 MB a record).
    """
    from fairseq_goodviews.preprocessing import chapman
    from fairseq_goodviews.synthetic.chapman import generate_chapman

    raw, prepared = out / "data" / "chapman_raw", out / "data" / "chapman"
    marker = prepared / "prepared.json"
    done = read_result(marker)
    if done is not None:
        if done.get("n_records") != n_records or done.get("seed") != seed:
            raise BenchmarkError(f"{prepared} holds {done.get('n_records')} synthetic records (seed "
                                 f"{done.get('seed')}), not {n_records} (seed {seed}): use another --out")
        return prepared
    for folder in (raw, prepared):
        shutil.rmtree(folder, ignore_errors=True)
    start = time.monotonic()
    logger.info("generating %d synthetic Chapman records in %s", n_records, raw)
    generate_chapman(raw, n_records, seed=seed, workers=workers)
    logger.info("preparing them into %s", prepared)
    code = chapman.main([str(raw), str(prepared), "--workers", str(workers), "--seed", str(seed),
                         "--min-age", "18", "--no-progress"])
    if code:
        raise BenchmarkError(f"the Chapman preparer failed on {raw} (exit {code})")
    shutil.rmtree(raw, ignore_errors=True)
    with atomic_open(marker) as handle:
        json.dump({"n_records": n_records, "seed": seed, "seconds": time.monotonic() - start}, handle)
    return prepared


def check_data(data: Path) -> Path:
    data = Path(data).resolve()
    missing = [f"{split}.{ext}" for split in ("train", "valid", "test") for ext in ("tsv", "csv")
               if not (data / f"{split}.{ext}").is_file()]
    if missing:
        raise BenchmarkError(f"{data}: not a prepared manifest folder (missing {', '.join(missing)})")
    return data


def split_for_seed(prepared: Path, out: Path, seed: int) -> Path:
    """``prepared``'s records re-split patient-wise with ``seed`` (60/20/20, stratified by class),
    as manifests in ``OUT/data/split-s<seed>`` that point at the same ``.mat`` files.

    The spread of a strategy over seeds then includes the choice of split, not only training
    noise. Written once; a folder with another source is an error.
    """
    import pandas as pd

    from fairseq_goodviews.io.manifest import read_manifest, read_metadata, write_manifest
    from fairseq_goodviews.preprocessing.pipeline import assign_splits

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
        json.dump({"source": str(prepared), "seed": seed,
                   "records": {split: int((assigned == split).sum()) for split in SPLITS}}, handle)
    return folder
