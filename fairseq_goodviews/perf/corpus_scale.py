"""Corpus scale: a MIMIC-IV-ECG-sized preparation, measured stage by stage and projected.

The user's own commands, run one after the other on a synthetic MIMIC-IV-ECG tree, each timed
(wall, and CPU of every process it started, from ``getrusage``):

1. ``synthesize``: ``goodviews-synthetic-mimic-iv-ecg SRC --subjects S`` (one to three studies a
   subject, about 2 S records of 12 x 5,000 samples at 500 Hz, 16-bit WFDB);
2. ``prepare``: ``--array-jobs`` concurrent ``goodviews-prepare-mimic-iv-ecg SRC OUT --shard I/N
   --no-attributes``, as the tasks of a SLURM array (``examples/slurm_prepare_array.sbatch``) run;
3. ``job start``: one more job, ``--shard 0/K`` with K such that it prepares about 20 records,
   into a folder of its own: what every array job pays before its records (imports, reading
   ``record_list.csv`` and ``machine_measurements.csv`` of every record, the journal), and
   ``command start``, the preparer's ``--help`` (its imports alone);
4. ``merge``: ``goodviews-merge-shards OUT``;
5. ``pack``: ``goodviews-pack OUT --workers W`` (int16 where exact, shards of 1 GiB), W the
   processes the shard jobs ran together;
6. ``read``: training's record loading (``EcgRecordSource.load``, whole 5,000-sample records)
   from the pack, every training record once in a shuffled order.

Disk is measured per record for the WFDB source, the ``.mat`` records, the packs and the tables.

The projection to ``--project`` records (800,000: MIMIC-IV-ECG's size) assumes that preparation
CPU per record stays what it was here and spreads over ``--node-cores`` cores a node (each shard
job's workers are processes of their own), that merging (one process) grows linearly with the
records, that packing grows linearly too and its W workers' rate grows to a node's cores (one
pack job on one node), and that a job's start beyond its imports grows linearly with the records
listed. The storage is assumed to keep up. Results go to
``DIR/corpus_scale.json``; the work folder is removed unless ``--keep`` (an earlier run's work
folder is replaced).

    goodviews-perf corpus-scale --out DIR [--subjects 50000] [--array-jobs 2] [--project 800000]
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fairseq_goodviews.data.ecg_dataset import EcgRecordSource
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.io.packed import FOLDER_SUFFIX
from fairseq_goodviews.perf import PerfSettingsError

SAMPLE_RATE = 500.0
RECORD_SAMPLES = 5000
PROBE_RECORDS = 20
SPLITS = ("train", "valid", "test")
ONE_JOB_STAGES = ("job start", "command start")
MARKER = ".corpus_scale_work"


def _console_script(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (then the one on PATH)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise PerfSettingsError(f"{name} not found: install fairseq_goodviews in this environment")
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_stage(commands: Sequence[Sequence[str]], log_dir: Path, name: str) -> dict[str, float]:
    """Run ``commands`` concurrently to their end; wall and CPU seconds of them all. A command that
    fails raises :class:`PerfSettingsError` naming it and its log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    start, cpu = time.perf_counter(), _children_cpu()
    running = []
    for k, command in enumerate(commands):
        log = log_dir / f"{name}{'' if len(commands) == 1 else f'_{k}'}.log"
        with open(log, "w") as handle:
            running.append((command, log, subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT)))
    failed = [(command, log) for command, log, process in running if process.wait() != 0]
    if failed:
        command, log = failed[0]
        raise PerfSettingsError(f"{name}: {' '.join(command)} failed, see {log}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": _children_cpu() - cpu}


def _tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        total += sum(os.stat(os.path.join(folder, f)).st_size for f in files)
    return total


def prepared_disk(out: Path) -> dict[str, int]:
    """Bytes of a prepared folder ``out`` by kind: ``records`` (the ``.mat`` files), ``packs``
    (every ``<split>.packed/``) and ``tables`` (manifests, metadata, journals, reports)."""
    usage = {"records": 0, "packs": 0, "tables": 0}
    for entry in os.scandir(out):
        if entry.is_dir() and entry.name.endswith(FOLDER_SUFFIX):
            usage["packs"] += _tree_bytes(Path(entry.path))
        elif entry.is_dir() and entry.name == "records":
            usage["records"] += _tree_bytes(Path(entry.path))
        elif entry.is_dir():
            usage["tables"] += _tree_bytes(Path(entry.path))
        else:
            usage["tables"] += entry.stat().st_size
    return usage


def _read_pass(out: Path, seed: int) -> dict[str, Any]:
    """Every training record once through ``EcgRecordSource.load`` from its pack, shuffled."""
    source = EcgRecordSource(out / "train.tsv", SAMPLE_RATE)
    if source.pack is None:
        raise PerfSettingsError(f"{out / 'train.tsv'}: no current pack beside it to read")
    order = np.random.default_rng(seed).permutation(len(source))
    start, cpu = time.perf_counter(), time.process_time()
    for i in order:
        source.load(int(i), RECORD_SAMPLES, None)
    wall = time.perf_counter() - start
    return {
        "records": len(order),
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu,
        "records_per_s": len(order) / wall,
    }


def _prepared_records(out: Path) -> int:
    return sum(len(read_manifest(out / f"{split}.tsv")[1]) for split in SPLITS if (out / f"{split}.tsv").is_file())


def project(result: dict[str, Any], records: int, node_cores: int, array_jobs: Sequence[int]) -> dict[str, Any]:
    """Wall hours of preparing, merging and packing ``records`` records on one node of
    ``node_cores`` cores and on each of ``array_jobs`` jobs of that size, and the disk in GiB, from
    the measured ``result`` (see the module docstring for the assumptions)."""
    measured = result["records"]
    scale = records / measured
    stages = result["stages"]
    cpu_per_record = stages["prepare"]["cpu_s"] / measured
    imports = stages["command start"]["wall_s"]
    job_start = imports + max(0.0, stages["job start"]["wall_s"] - imports) * scale
    merge = stages["merge"]["wall_s"] * scale
    pack = stages["pack"]["wall_s"] * scale * result["pack_workers"] / node_cores
    layouts = {}
    for jobs in (1, *array_jobs):
        prepare = cpu_per_record * records / (jobs * node_cores) + job_start
        name = "one node" if jobs == 1 else f"{jobs} array jobs"
        layouts[name] = {
            "prepare_h": prepare / 3600,
            "merge_h": merge / 3600,
            "pack_h": pack / 3600,
            "total_h": (prepare + merge + pack) / 3600,
        }
    disk = {kind: per_record * records / 2**30 for kind, per_record in result["bytes_per_record"].items()}
    return {
        "records": records,
        "node_cores": node_cores,
        "prepare_cpu_ms_per_record": cpu_per_record * 1e3,
        "job_start_s": job_start,
        "layouts": layouts,
        "disk_gib": disk,
    }


def run(
    *,
    work: Path,
    subjects: int,
    array_jobs: int,
    workers: int,
    seed: int,
    project_records: int,
    node_cores: int,
    keep: bool,
) -> dict[str, Any]:
    """Synthesize, prepare in ``array_jobs`` shards, merge, pack and read under ``work``; the
    stages' times, the disk per record and :func:`project` of them."""
    if subjects < 1 or array_jobs < 1 or workers < 1 or node_cores < 1 or project_records < 1:
        raise PerfSettingsError("--subjects, --array-jobs, --workers, --node-cores and --project must be at least 1")
    if (work / MARKER).is_file():  # an earlier run's, interrupted or kept
        shutil.rmtree(work)
    elif work.exists():
        raise PerfSettingsError(f"{work}: already exists and is not an earlier corpus-scale run's; not touching it")
    work.mkdir(parents=True)
    (work / MARKER).touch()
    pack_workers = array_jobs * workers
    src, out, probe, logs = work / "mimic_iv_ecg", work / "prepared", work / "job_start", work / "logs"
    prepare = [_console_script("goodviews-prepare-mimic-iv-ecg"), str(src)]
    options = ["--no-attributes", "--no-progress", "--workers", str(workers)]
    stages = {}
    try:
        stages["synthesize"] = _run_stage(
            [
                [
                    _console_script("goodviews-synthetic-mimic-iv-ecg"),
                    str(src),
                    "--subjects",
                    str(subjects),
                    "--seed",
                    str(seed),
                    "--workers",
                    str(pack_workers),
                ]
            ],
            logs,
            "synthesize",
        )
        shards = [[*prepare, str(out), "--shard", f"{i}/{array_jobs}", *options] for i in range(array_jobs)]
        stages["prepare"] = _run_stage(shards, logs, "prepare")
        records = sum(1 for _ in open(src / "record_list.csv")) - 1
        probe_shards = max(1, records // PROBE_RECORDS)
        stages["job start"] = _run_stage(
            [[*prepare, str(probe), "--shard", f"0/{probe_shards}", *options]], logs, "probe"
        )
        stages["command start"] = _run_stage([[prepare[0], "--help"]], logs, "command_start")
        stages["merge"] = _run_stage([[_console_script("goodviews-merge-shards"), str(out)]], logs, "merge")
        pack = [_console_script("goodviews-pack"), str(out), "--workers", str(pack_workers)]
        stages["pack"] = _run_stage([pack], logs, "pack")
        stages["read"] = _read_pass(out, seed)
        prepared = _prepared_records(out)
        disk = {"wfdb source": _tree_bytes(src / "files"), **prepared_disk(out)}
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "benchmark": "corpus_scale",
        "subjects": subjects,
        "source_records": records,
        "records": prepared,
        "array_jobs": array_jobs,
        "workers": workers,
        "pack_workers": pack_workers,
        "stages": stages,
        "bytes": disk,
        "bytes_per_record": {kind: size / prepared for kind, size in disk.items()},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()},
    }
    result["projection"] = project(result, project_records, node_cores, (10, 100))
    return result


def format_result(result: dict[str, Any]) -> str:
    """The stages, the disk per record and the projection, as tables."""
    n = result["records"]
    lines = [
        f"{result['source_records']:,} synthetic MIMIC-IV-ECG studies of {result['subjects']:,} subjects, "
        f"{n:,} prepared in {result['array_jobs']} concurrent shard jobs of {result['workers']} worker(s), "
        f"packed by {result['pack_workers']}",
        f"  {'stage':<12}{'wall s':>10}{'CPU s':>10}{'wall ms/record':>16}{'CPU ms/record':>15}",
    ]
    for name, stage in result["stages"].items():
        per = 1 if name in ONE_JOB_STAGES else stage.get("records", n)
        unit = "  (one job, not per record)" if name in ONE_JOB_STAGES else ""
        lines.append(
            f"  {name:<12}{stage['wall_s']:>10.1f}{stage['cpu_s']:>10.1f}"
            f"{stage['wall_s'] / per * 1e3:>16.2f}{stage['cpu_s'] / per * 1e3:>15.2f}{unit}"
        )
    read = result["stages"]["read"]
    lines.append(f"  read: {read['records']:,} training records at {read['records_per_s']:.0f} records/s")
    projection = result["projection"]
    lines += ["", f"  {'files':<14}{'KiB/record':>11}{'GiB at ' + format(projection['records'], ','):>18}"]
    for kind, per_record in result["bytes_per_record"].items():
        lines.append(f"  {kind:<14}{per_record / 1024:>11.1f}{projection['disk_gib'][kind]:>18.1f}")
    lines += [
        "",
        f"Projected to {projection['records']:,} records, nodes of {projection['node_cores']} cores "
        f"(preparation {projection['prepare_cpu_ms_per_record']:.2f} ms CPU a record; a job's start "
        f"{projection['job_start_s']:.0f} s):",
        f"  {'layout':<16}{'prepare h':>11}{'merge h':>9}{'pack h':>8}{'total h':>9}",
    ]
    for name, row in projection["layouts"].items():
        lines.append(
            f"  {name:<16}{row['prepare_h']:>11.2f}{row['merge_h']:>9.2f}{row['pack_h']:>8.2f}{row['total_h']:>9.2f}"
        )
    return "\n".join(lines)
