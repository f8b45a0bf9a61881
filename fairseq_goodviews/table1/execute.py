"""Running a Table 1 plan: each run ``fairseq-hydra-train`` (a process of its own, or on the CPU
forked from the fork server of :mod:`~.preloaded`), scored, resumable.

Layout of ``OUT``::

    runs/<run-id>/result.json   written atomically when the run has finished (and been scored)
    runs/<run-id>/train.log     the subprocess output (appended to by a resumed run)
    runs/<run-id>/ckpt/         fairseq's save_dir: a killed run resumes from checkpoint_last.pt
    runs/<run-id>/submitit/     the job's files and logs, when an executor submits runs as jobs

A re-run with the same ``OUT`` skips every run that has its ``result.json`` and resumes the rest.
Each run gets a :class:`~.placement.Slot` (its GPUs, cores and data workers) from the executor
that runs it (:mod:`~.executors`); a pretraining of several processes runs under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import torch

from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint
from fairseq_goodviews.evaluation.identification import identify
from fairseq_goodviews.io.atomic import atomic_open, json_safe
from fairseq_goodviews.io.locks import exclusive_lock
from fairseq_goodviews.leads import CANONICAL_LEADS, parse_leads
from fairseq_goodviews.table1.executors import DirectExecutor, Executor, world_size
from fairseq_goodviews.table1.placement import DevicePool, Slot
from fairseq_goodviews.table1.plan import IDENTIFICATION, PRETRAIN, PTBXL_DATA, BenchmarkError, Method, RunSpec
from fairseq_goodviews.table1.preloaded import PreloadedRun
from fairseq_goodviews.table1.resume import changed_runs, planned_settings, refuse_changed, run_schedule, set_aside

logger = logging.getLogger("fairseq_goodviews.table1")

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Every downstream run's test predictions (one row per record), beside its result.json.
PREDICTIONS = "test_predictions.csv"


@dataclass
class Context:
    """Where a benchmark reads and writes, and how it launches its subprocesses."""

    #: The prepared data of each seed (one folder for every seed without --split-seeds).
    data: Mapping[int, Path]
    out: Path
    config_root: Path
    #: The PTB-XL-layout folder of the multi-label and identification runs, if any.
    ptbxl: Optional[Path] = None
    #: Crop length of identification (the linear probes' crop, so every encoder sees the same input).
    identification_crop: Optional[int] = None
    methods: Mapping[str, Method] = field(default_factory=dict)
    #: Runs at once on the CPU (``--jobs``) when no executor is given to :func:`run_plan`.
    jobs: int = 1
    #: Called with each launched command (tests count launches through it).
    on_launch: Optional[Callable[[List[str]], None]] = None
    #: Set aside and redo finished runs whose settings differ from the plan's (else: stop).
    rerun_changed: bool = False
    #: Every planned run's settings (:func:`~fairseq_goodviews.table1.resume.planned_settings`).
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: Start single-process CPU runs from the fork server that has fairseq imported
    #: (:mod:`~.preloaded`); False: every run is a ``fairseq-hydra-train`` process of its own.
    preloaded: bool = True

    def data_for(self, spec: RunSpec) -> Path:
        if spec.dataset == PTBXL_DATA:
            if self.ptbxl is None:
                raise BenchmarkError(f"run {spec.run_id} needs a PTB-XL-layout folder (--ptbxl-data)")
            return self.ptbxl
        return self.data[spec.seed]

    def run_dir(self, run_id: str) -> Path:
        return self.out / "runs" / run_id

    def pretrain_checkpoint(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "ckpt" / "checkpoint_last.pt"


# --------------------------------------------------------------------------------------------
# Running one run


def _console_script(name: str, missing: str) -> str:
    """The console script ``name`` of this interpreter's environment (then the one on PATH)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise BenchmarkError(f"{name} not found: {missing}")
    return found


def fairseq_hydra_train() -> str:
    """The ``fairseq-hydra-train`` of this interpreter's environment (then the one on PATH)."""
    return _console_script("fairseq-hydra-train", "install fairseq-fixed in this environment")


#: Overrides of a training run of several processes started by ``torchrun`` (one per GPU, NCCL),
#: as ``examples/torchrun_single_node.sh`` passes them.
TORCHRUN_OVERRIDES = (
    "distributed_training.distributed_init_method=env://",
    "distributed_training.distributed_no_spawn=true",
    "distributed_training.distributed_rank=${oc.env:RANK}",
    "distributed_training.device_id=${oc.env:LOCAL_RANK}",
    "distributed_training.distributed_backend=nccl",
)


def training_command(spec: RunSpec, ctx: Context, slot: Slot) -> tuple[List[str], Dict[str, str]]:
    """The command that trains ``spec`` on ``slot`` and its environment: ``fairseq-hydra-train``
    with the run's overrides and the slot's, under ``torchrun`` when the run has several processes."""
    processes = world_size(spec)
    if processes > 1 and len(slot.devices) < processes:
        raise BenchmarkError(f"run {spec.run_id} trains on {processes} GPUs; its slot has {len(slot.devices)}")
    train = [
        fairseq_hydra_train(),
        "--config-dir",
        str(ctx.config_root / spec.stage),
        "--config-name",
        spec.config_name,
        *full_overrides(spec, ctx),
        *slot.overrides(),
    ]
    if processes > 1:
        torchrun = _console_script("torchrun", "it comes with torch")
        train = [torchrun, "--standalone", f"--nproc_per_node={processes}", *train, *TORCHRUN_OVERRIDES]
    return train, slot.environment(os.environ)


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./+-]+")


def hydra_path(path: Path) -> str:
    """A path as a hydra override value: quoted when it holds characters hydra's grammar parses."""
    text = str(path)
    if _PLAIN_PATH.fullmatch(text):
        return text
    if "'" in text or "\\" in text:
        raise BenchmarkError(f"{text}: a path with quotes or backslashes cannot be passed to hydra")
    return f"'{text}'"


def full_overrides(spec: RunSpec, ctx: Context) -> List[str]:
    run_dir = ctx.run_dir(spec.run_id)
    overrides = [
        f"task.data={hydra_path(ctx.data_for(spec))}",
        f"common.user_dir={hydra_path(PACKAGE_DIR)}",
        f"checkpoint.save_dir={hydra_path(run_dir / 'ckpt')}",
        f"hydra.run.dir={hydra_path(run_dir / 'hydra')}",
        *spec.overrides,
    ]
    if spec.depends_on:
        overrides.append(f"model.model_path={hydra_path(ctx.pretrain_checkpoint(spec.depends_on))}")
    if ctx.rerun_changed:  # checkpoints of another run in a run's folder are set aside, not resumed
        overrides.append("task.fresh_run=true")
    return overrides


class _Children:
    """The live training subprocesses, so that a killed benchmark does not leave them running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen | PreloadedRun] = set()

    def add(self, proc: subprocess.Popen | PreloadedRun) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen | PreloadedRun) -> None:
        with self._lock:
            self._procs.discard(proc)

    def _signal_all(self, method: str) -> bool:
        """Call ``method`` (terminate / kill) on every live child; whether there was any."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                getattr(proc, method)()
        return bool(procs)

    def terminate_all(self, grace_s: float = 30.0) -> None:
        """SIGTERM every child, SIGKILL those still alive after ``grace_s``.

        The worker threads reap the children (and drop them from the set): waiting on them here
        as well would race those threads for the exit status.
        """
        if not self._signal_all("terminate"):
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._procs:
                    return
            time.sleep(0.1)
        self._signal_all("kill")


_CHILDREN = _Children()
#: Scoring runs in this process; one at a time keeps its threads from competing with each other.
_SCORE_LOCK = threading.Lock()


def wait_with_cpu_time(proc: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``proc``; its exit code and CPU time (user + system), a measure that, unlike wall
    time, does not grow when other work shares the machine."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return "(no log)"
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64_000))
        text = handle.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def lead_slots(spec: RunSpec) -> Optional[List[int]]:
    """The canonical slots of the leads ``spec`` trains and is tested on (None: all 12)."""
    return None if spec.leads is None else parse_leads(spec.leads)


def score(checkpoint: Path, slot: Slot, predictions: Path, leads: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Test metrics of a downstream checkpoint on the lead slots ``leads`` (None: all 12; the others
    zero-filled), scored on ``slot``'s first GPU (else the CPU); every record's probabilities go
    to ``predictions`` (the report's bootstrap intervals resample them)."""

    with _SCORE_LOCK:
        torch.set_num_threads(slot.threads)
        metrics = evaluate_checkpoint(
            checkpoint,
            split="test",
            leads=leads,
            predictions=predictions,
            device=slot.scoring_device,
            num_workers=slot.data_workers or 0,
        )
    return json_safe(metrics)


def read_result(path: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # written atomically, so only a foreign edit gets here: re-run it
        return None


def base_result(spec: RunSpec, settings: Mapping[str, Any], **fields: Any) -> Dict[str, Any]:
    """The fields every ``result.json`` has (``settings``: what the run is), plus ``fields``."""
    return {
        "run_id": spec.run_id,
        "kind": spec.kind,
        "strategy": spec.method,
        "seed": spec.seed,
        "protocol": spec.protocol,
        "label_fraction": spec.label_fraction,
        "lead_mask_prob": spec.lead_mask_prob,
        "encoder": spec.encoder,
        "lead_set": list(spec.leads or CANONICAL_LEADS),
        "settings": settings,
        "schedule": run_schedule(settings),
        **fields,
    }


def not_applicable_result(spec: RunSpec, settings: Mapping[str, Any], reason: str) -> Dict[str, Any]:
    """The result of a run that was not trained because its method cannot learn on the data."""
    return base_result(
        spec, settings, status="not_applicable", reason=reason, metrics=None, uses_labels=False, wall_time_s=0.0
    )


def identification_result(spec: RunSpec, ctx: Context, pretrain: Mapping[str, Any], slot: Slot) -> Dict[str, Any]:
    """Frozen-encoder patient identification of a pretrained encoder (no training): top-1, top-5
    and EER on the PTB-XL folder's test patients, embeddings standardised with its train split,
    the leads outside the run's lead set zero-filled."""

    start = time.monotonic()
    with _SCORE_LOCK:
        torch.set_num_threads(slot.threads)
        metrics = identify(
            pretrain["checkpoint"],
            ctx.data_for(spec),
            "test",
            leads=lead_slots(spec),
            sample_size=ctx.identification_crop,
            standardize_split="train",
            device=slot.scoring_device,
        )
    return base_result(
        spec,
        ctx.settings[spec.run_id],
        status="ok",
        metrics=json_safe(metrics),
        uses_labels=bool(pretrain.get("uses_labels")),
        wall_time_s=time.monotonic() - start,
        checkpoint=pretrain["checkpoint"],
        pretrain={"run_id": pretrain["run_id"]},
    )


def execute_run(spec: RunSpec, ctx: Context, results: Mapping[str, Dict[str, Any]], slot: Slot) -> Dict[str, Any]:
    """Train (or resume) one run on ``slot``, score it, and write its ``result.json`` atomically;
    ``results`` holds the result of the run it depends on, if any."""
    run_dir = ctx.run_dir(spec.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    method = ctx.methods.get(spec.method)
    pretrain = results.get(spec.depends_on) if spec.depends_on else None
    reason = (method.not_applicable if method is not None else None) or (
        pretrain.get("reason") if pretrain and pretrain.get("status") == "not_applicable" else None
    )
    if reason:
        return _write_result(run_dir, not_applicable_result(spec, ctx.settings[spec.run_id], reason))
    if spec.kind == IDENTIFICATION:
        return _write_result(run_dir, identification_result(spec, ctx, pretrain, slot))
    log = run_dir / "train.log"
    resumed = (run_dir / "ckpt" / "checkpoint_last.pt").is_file()
    cmd, env = training_command(spec, ctx, slot)
    if ctx.on_launch is not None:
        ctx.on_launch(cmd)
    start = time.monotonic()
    preloaded = ctx.preloaded and not slot.devices and world_size(spec) == 1
    cpu_time = _train(spec, cmd, env, log, resumed, preloaded)
    train_time = time.monotonic() - start
    result = base_result(
        spec,
        ctx.settings[spec.run_id],
        config=f"{spec.stage}/{spec.config_name}",
        overrides=full_overrides(spec, ctx),
        resumed=resumed,
        log=str(log),
        train_cpu_time_s=cpu_time,
        status="ok",
    )
    if spec.kind == PRETRAIN:
        checkpoint = ctx.pretrain_checkpoint(spec.run_id)
        if not checkpoint.is_file():
            raise BenchmarkError(f"run {spec.run_id}: finished without writing {checkpoint}; log {log}")
        result.update(
            uses_labels=method.uses_labels,
            metrics=None,
            wall_time_s=train_time,
            checkpoint=str(checkpoint),
        )
    else:
        result.update(_scored(spec, ctx, pretrain, log, start, slot))
    _write_result(run_dir, result)
    (run_dir / "error.txt").unlink(missing_ok=True)
    return result


def _write_result(run_dir: Path, result: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``result`` as the run's ``result.json``, atomically; returns it."""
    with atomic_open(run_dir / "result.json") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    return result


def _train(spec: RunSpec, cmd: List[str], env: Mapping[str, str], log: Path, resumed: bool, preloaded: bool) -> float:
    """Run the training command ``cmd`` with the environment ``env`` in the run's folder, where its
    output is appended to ``log``: forked from the fork server of :mod:`~.preloaded` when
    ``preloaded``, else as a subprocess. Returns its CPU time (s); a failed run raises
    :class:`BenchmarkError`."""
    how = ("resume" if resumed else "start") + (" (forked from the preloaded fork server)" if preloaded else "")
    with open(log, "a") as handle:
        handle.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {how}: {' '.join(cmd)}\n")
        handle.flush()
        if preloaded:
            proc: Any = PreloadedRun(cmd, log.parent, env, log)
        else:
            proc = subprocess.Popen(cmd, cwd=log.parent, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _CHILDREN.add(proc)
        try:
            returncode, cpu_time = proc.wait() if preloaded else wait_with_cpu_time(proc)
        finally:
            _CHILDREN.discard(proc)
    if returncode != 0:
        raise BenchmarkError(f"run {spec.run_id} failed (exit {returncode}); log {log}:\n{log_tail(log)}")
    return cpu_time


def _scored(
    spec: RunSpec, ctx: Context, pretrain: Optional[Mapping[str, Any]], log: Path, start: float, slot: Slot
) -> Dict[str, Any]:
    """The result fields of a trained downstream run: test metrics of its best checkpoint, wall time
    since ``start`` (training and scoring), and its pretraining run's, if any."""
    run_dir = ctx.run_dir(spec.run_id)
    checkpoint = run_dir / "ckpt" / "checkpoint_best.pt"
    if not checkpoint.is_file():
        raise BenchmarkError(f"run {spec.run_id}: no {checkpoint} (did validation run?); log {log}")
    metrics = score(checkpoint, slot, run_dir / PREDICTIONS, lead_slots(spec))
    wall_time = time.monotonic() - start
    return {
        "metrics": metrics,
        "checkpoint": str(checkpoint),
        "wall_time_s": wall_time,
        "uses_labels": bool(pretrain and pretrain["uses_labels"]),
        "predictions": str(run_dir / PREDICTIONS),
        "pretrain": None
        if pretrain is None
        else {
            "run_id": pretrain["run_id"],
            "wall_time_s": pretrain["wall_time_s"],
            "checkpoint": pretrain["checkpoint"],
            "overrides": pretrain["overrides"],
        },
        "total_wall_time_s": wall_time + (pretrain["wall_time_s"] if pretrain else 0.0),
    }


# --------------------------------------------------------------------------------------------
# Running the plan


@dataclass
class Outcome:
    results: Dict[str, Dict[str, Any]]
    #: run id -> why it did not finish (its error, or the failed run it depended on)
    failed: Dict[str, str]
    #: run ids launched by this invocation (empty when everything had finished before)
    launched: List[str] = field(default_factory=list)
    #: the sbatch scripts a SLURM dry run wrote (nothing ran)
    scripts: List[str] = field(default_factory=list)


def run_plan(
    plan: Sequence[RunSpec], ctx: Context, execute: bool = True, executor: Optional[Executor] = None
) -> Outcome:
    """Run every unfinished run of ``plan`` with ``executor`` (default: ``ctx.jobs`` at a time on
    this machine's CPU cores), dependencies first, each run started as soon as its pretraining has
    finished and the executor has room, in plan order; without ``execute``, only collect the
    finished ones (the unfinished are reported as not run yet)."""
    outcome = Outcome(results={}, failed={})
    ctx.settings = planned_settings(plan, ctx.config_root, ctx.data_for, ctx.identification_crop)
    finished = {}
    for spec in plan:
        done = read_result(ctx.run_dir(spec.run_id) / "result.json")
        if done is not None:
            finished[spec.run_id] = done
    changed = changed_runs(finished, ctx.settings)
    if changed and not (execute and ctx.rerun_changed):
        refuse_changed(ctx.out / "runs", changed)
    for run_id in sorted(changed):
        logger.info(
            "%s: made with other settings (%s); set aside in %s",
            run_id,
            "; ".join(changed[run_id][:3]),
            set_aside(ctx.run_dir(run_id)),
        )
    pending: List[RunSpec] = []
    for spec in plan:
        if spec.run_id in finished and spec.run_id not in changed:
            outcome.results[spec.run_id] = finished[spec.run_id]
        else:
            pending.append(spec)
    if not execute:
        outcome.failed.update((spec.run_id, "not run yet") for spec in pending)
        return outcome
    if pending:
        logger.info("%d of %d runs to do (%d finished before)", len(pending), len(plan), len(outcome.results))
    if executor is None:
        executor = DirectExecutor(DevicePool((), os.cpu_count() or 1, cpu_jobs=max(1, ctx.jobs)))
    # a job in another process gets its own copy of the context: no callback into this one
    job_ctx = replace(ctx, on_launch=None) if executor.remote else ctx
    running: Dict[Future, RunSpec] = {}
    try:
        while pending or running:
            for spec in list(pending):
                if spec.depends_on in outcome.failed:
                    outcome.failed[spec.run_id] = f"its pretraining run {spec.depends_on} failed"
                    pending.remove(spec)
                elif spec.depends_on is None or spec.depends_on in outcome.results:
                    needed = {spec.depends_on: outcome.results[spec.depends_on]} if spec.depends_on else {}
                    future = executor.start(spec, partial(run_guarded, spec, job_ctx, needed))
                    if future is None:  # no room now: later runs wait their turn (plan order)
                        break
                    pending.remove(spec)
                    outcome.launched.append(spec.run_id)
                    logger.info("start %s", spec.run_id)
                    running[future] = spec
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                spec = running.pop(future)
                _collect(spec, future, ctx, outcome)
    except BaseException:
        executor.stop()
        raise
    finally:
        executor.close()
    for spec in pending:
        outcome.failed.setdefault(spec.run_id, "not run")
    return outcome


def run_guarded(spec: RunSpec, ctx: Context, results: Mapping[str, Dict[str, Any]], slot: Slot) -> Dict[str, Any]:
    """:func:`execute_run`, whose training subprocesses a SIGTERM / SIGINT also stops when it runs
    in the main thread of its own process (a submitit job)."""
    with terminate_children_on_signal():
        return execute_run(spec, ctx, results, slot)


def _collect(spec: RunSpec, future: Future, ctx: Context, outcome: Outcome) -> None:
    """Record the finished ``future`` of ``spec`` in ``outcome``: its result, or why it failed
    (also written to the run's ``error.txt``); one broken run does not stop the others."""
    try:
        result = future.result()
    except Exception as exc:
        why = (
            str(exc)
            if isinstance(exc, BenchmarkError)
            else (f"run {spec.run_id}: {''.join(traceback.format_exception(exc))}")
        )
        outcome.failed[spec.run_id] = why
        logger.error("%s", why)
        with atomic_open(ctx.run_dir(spec.run_id) / "error.txt") as handle:
            handle.write(why + "\n")
        return
    outcome.results[spec.run_id] = result
    logger.info("done %s in %.0f s%s", spec.run_id, result["wall_time_s"], _metric_note(result))


def _metric_note(result: Dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    auroc = metrics.get("macro_auroc")
    return "" if auroc is None else f": test macro AUROC {auroc:.3f}"


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` so two benchmarks never train into the same run folders."""
    out.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out / ".lock", f"another benchmark is running in {out}", BenchmarkError):
        yield


@contextlib.contextmanager
def terminate_children_on_signal() -> Iterator[None]:
    """On SIGTERM/SIGINT stop the training subprocesses too (they resume on the next run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        _CHILDREN.terminate_all()
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
