"""Reproduce the "Good Views" Table 1: ``goodviews-benchmark --data DIR --preset cpu-small --out OUT``.

For every positive-pair strategy and seed the benchmark pretrains an encoder, trains a linear
probe on it (optionally also a full fine-tune, and probes on 1% / 10% of the training labels),
and runs the two baselines: the supervised encoder trained from scratch (scored on its own
trained head) and a random-initialised frozen encoder with a linear probe. Every training is a
``fairseq-hydra-train`` subprocess on the project's configs, exactly as a user would run it;
each downstream run is scored on the test split from its best (valid macro AUROC) checkpoint.

Layout of ``OUT``::

    runs/<run-id>/result.json   written atomically when the run has finished (and been scored)
    runs/<run-id>/train.log     the subprocess output (appended to by a resumed run)
    runs/<run-id>/ckpt/         fairseq's save_dir: a killed run resumes from checkpoint_last.pt
    results.json, results.md, auroc.png, label_efficiency.png

A re-run with the same ``OUT`` skips every run that has its ``result.json`` and resumes the rest.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from omegaconf import OmegaConf

from fairseq_goodviews.io.atomic import atomic_open

logger = logging.getLogger("fairseq_goodviews.benchmark")

PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: The hydra configs of a source checkout (``pip install -e``); ``--config-root`` points elsewhere.
DEFAULT_CONFIG_ROOT = PACKAGE_DIR.parent / "configs"

#: The paper's strategies first (Table 1 order), then the other pretraining methods of the project.
ALL_STRATEGIES: tuple[str, ...] = (
    "cmlc", "cmsc", "cmsmlc", "simclr", "demographics", "rhythm", "attributes", "patient", "w2v_cmsc_rlm",
)
#: Pretraining configs whose model is not the ResNet and that have their own hydra presets,
#: named ``<prefix><preset>`` (e.g. ``w2v_cpu_small``) in configs/{pretraining,finetuning}/preset.
MODEL_PRESET_PREFIX: Dict[str, str] = {"w2v_cmsc_rlm": "w2v_"}

# Kinds of run (the ``kind`` field of every result).
PRETRAIN = "pretrain"
PROBE = "pretrain+probe"
FINETUNE = "finetune"
SUPERVISED = "supervised"
RANDOM_INIT = "random_init"
LABEL_FRACTION = "label_fraction"


@dataclass(frozen=True)
class Preset:
    """Everything that sizes a benchmark: schedules, model preset, strategies, seeds, fractions."""

    name: str
    hydra_preset: str
    strategies: tuple[str, ...]
    seeds: int
    pretrain_epochs: int
    probe_epochs: int
    finetune_epochs: int
    batch_size: int
    pretrain_lr: float
    probe_lr: float
    finetune_lr: float
    label_fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    #: Pretraining epochs of particular strategies (a model much costlier than the ResNet on a CPU).
    strategy_epochs: Mapping[str, int] = field(default_factory=dict)
    #: ``task.sample_size`` for every run (None: the hydra preset's crop length).
    sample_size: Optional[int] = None
    #: Pretraining validation (contrastive loss on the valid split) costs time and is only logged:
    #: probes always start from the last pretraining checkpoint, as the paper's schedule does.
    pretrain_validate: bool = True
    supervised: bool = True
    random_init: bool = True
    finetune: bool = False
    #: Records ``--synthetic`` generates when it is given no number (or 0).
    synthetic_records: int = 1500
    jobs: int = 1


PRESETS: Dict[str, Preset] = {
    # Good Views A.5: 50 pretraining epochs, batch 64, Adam lr 1e-4; probe 10 epochs lr 0.01;
    # supervised baseline 50 epochs lr 1e-4. Full-size ResNet-18 and 10 s records: for GPUs.
    "paper": Preset(
        name="paper", hydra_preset="paper", strategies=ALL_STRATEGIES, seeds=5,
        pretrain_epochs=50, probe_epochs=10, finetune_epochs=50, batch_size=64,
        pretrain_lr=1e-4, probe_lr=0.01, finetune_lr=1e-4, synthetic_records=10646,
    ),
    # Every strategy, 5 seeds, on ~1,500 synthetic records within an hour on 2 CPU cores: the
    # small ResNet on 2.5 s crops, a few epochs at a 10x larger learning rate than the paper's,
    # two runs at a time on one core each; wav2vec 2.0 (~10x the ResNet's cost) gets one epoch.
    "cpu-small": Preset(
        name="cpu-small", hydra_preset="cpu_small", strategies=ALL_STRATEGIES, seeds=5,
        pretrain_epochs=4, probe_epochs=10, finetune_epochs=8, batch_size=64,
        pretrain_lr=1e-3, probe_lr=0.01, finetune_lr=1e-3, sample_size=1250,
        strategy_epochs={"w2v_cmsc_rlm": 1}, pretrain_validate=False, jobs=2,
    ),
    # examples/demo.py: every strategy once, plus the random frozen encoder, in ~15 minutes.
    "demo": Preset(
        name="demo", hydra_preset="cpu_small", strategies=ALL_STRATEGIES, seeds=1,
        pretrain_epochs=4, probe_epochs=10, finetune_epochs=8, batch_size=64,
        pretrain_lr=1e-3, probe_lr=0.01, finetune_lr=1e-3, label_fractions=(1.0,), sample_size=1250,
        strategy_epochs={"w2v_cmsc_rlm": 1}, pretrain_validate=False, supervised=False, jobs=2,
    ),
    # The test suite: two strategies (one label-using), two seeds, one epoch, tiny records.
    "tiny": Preset(
        name="tiny", hydra_preset="cpu_small", strategies=("simclr", "rhythm"), seeds=2,
        pretrain_epochs=1, probe_epochs=1, finetune_epochs=1, batch_size=16,
        pretrain_lr=1e-3, probe_lr=0.01, finetune_lr=1e-3, label_fractions=(0.1, 1.0), sample_size=500,
        pretrain_validate=False, synthetic_records=200, jobs=2,
    ),
}


@dataclass
class RunSpec:
    """One ``fairseq-hydra-train`` invocation (and, for downstream runs, its scoring)."""

    run_id: str
    kind: str
    #: The pretraining strategy (config name), or ``supervised`` / ``random_init``.
    method: str
    seed: int
    stage: str  # "pretraining" or "finetuning": the config folder
    config_name: str
    #: Overrides of the experiment (paths excluded: they are added per output folder).
    overrides: List[str]
    protocol: Optional[str] = None  # "linear_probe" / "finetune" for downstream runs
    label_fraction: float = 1.0
    #: The pretraining run whose last checkpoint is ``model.model_path``.
    depends_on: Optional[str] = None


@dataclass
class Context:
    """Where a benchmark reads and writes, and how it launches its subprocesses."""

    data: Path
    out: Path
    config_root: Path = DEFAULT_CONFIG_ROOT
    jobs: int = 1
    threads: int = 1
    #: Called with each launched command (tests count launches through it).
    on_launch: Optional[Callable[[List[str]], None]] = None

    def run_dir(self, run_id: str) -> Path:
        return self.out / "runs" / run_id

    def pretrain_checkpoint(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "ckpt" / "checkpoint_last.pt"


class BenchmarkError(RuntimeError):
    """A benchmark that cannot start or a run that failed; the message says what and where."""


# --------------------------------------------------------------------------------------------
# The plan


def config_path(config_root: Path, stage: str, name: str) -> Path:
    return config_root / stage / f"{name}.yaml"


def hydra_preset_for(config_root: Path, strategy: str, preset: Preset, stage: str) -> str:
    """The hydra preset of a run: the model-specific one (``w2v_cpu_small``) when it exists."""
    prefix = MODEL_PRESET_PREFIX.get(strategy)
    if prefix and (config_root / stage / "preset" / f"{prefix}{preset.hydra_preset}.yaml").is_file():
        return f"{prefix}{preset.hydra_preset}"
    return preset.hydra_preset


def available_strategies(config_root: Path, wanted: Sequence[str]) -> tuple[List[str], List[str]]:
    """(strategies whose pretraining config exists, the others)."""
    present = [s for s in wanted if config_path(config_root, "pretraining", s).is_file()]
    return present, [s for s in wanted if s not in present]


def _common(preset: Preset, hydra_preset: str, seed: int, epochs: int) -> List[str]:
    # fairseq's batching drops a last batch smaller than required_batch_size_multiple (default 8):
    # records left out of validation, and an empty training set for a 1% probe on little data.
    return [f"preset={hydra_preset}", f"common.seed={seed}", f"optimization.max_epoch={epochs}",
            "dataset.num_workers=0", "dataset.required_batch_size_multiple=1"]


def _sample_size(size: int) -> str:
    # ``++``: hydra composes the config before the plugin registers the task's schema, so a key
    # that the yaml file does not list cannot be plainly overridden.
    return f"++task.sample_size={size}"


def segments_per_crop(config_root: Path, strategy: str) -> int:
    """How many time segments a strategy cuts its crop into (CMSC, CMSMLC), else 1.

    Read from the config's ``task.strategy`` node validated by the strategy's own dataclass, so
    the strategy's defaults count; a fixed ``segment_length`` leaves the crop as it is.
    """
    from fairseq_goodviews.strategies import STRATEGY_REGISTRY, strategy_config

    node = OmegaConf.select(OmegaConf.load(config_path(config_root, "pretraining", strategy)), "task.strategy")
    if node is None or OmegaConf.select(node, "_name") not in STRATEGY_REGISTRY:
        return 1
    cfg = strategy_config(node)
    if getattr(cfg, "segment_length", 0):
        return 1
    return max(1, int(getattr(cfg, "n_segments", 1)))


def _pretrain(preset: Preset, strategy: str, hydra_preset: str, seed: int, segments: int) -> List[str]:
    overrides = _common(preset, hydra_preset, seed, preset.strategy_epochs.get(strategy, preset.pretrain_epochs))
    # A model with its own presets (wav2vec 2.0) keeps its optimiser, batch and crop (Oh et al.).
    if strategy not in MODEL_PRESET_PREFIX:
        overrides += [f"optimization.lr=[{preset.pretrain_lr}]", f"dataset.batch_size={preset.batch_size}"]
        if preset.sample_size is not None:
            # Time-segment strategies get a crop that many times longer, so that each of their
            # views is as long as the downstream input (and costs what other strategies' views do).
            overrides.append(_sample_size(preset.sample_size * segments))
    if not preset.pretrain_validate:
        overrides.append("dataset.disable_validation=true")
    return overrides


def _downstream(preset: Preset, hydra_preset: str, seed: int, protocol: str, fraction: float) -> List[str]:
    epochs, lr = (preset.probe_epochs, preset.probe_lr) if protocol == "linear_probe" else (
        preset.finetune_epochs, preset.finetune_lr)
    overrides = _common(preset, hydra_preset, seed, epochs) + [
        f"optimization.lr=[{lr}]", f"dataset.batch_size={preset.batch_size}",
        # The test split is scored once, from the best checkpoint, after training: validating on
        # it every epoch as well would only cost time.
        "dataset.valid_subset=valid", f"++task.train_fraction={fraction}"]
    if preset.sample_size is not None:
        overrides.append(_sample_size(preset.sample_size))
    return overrides


def fraction_tag(fraction: float) -> str:
    return f"f{fraction:g}"


def build_plan(preset: Preset, strategies: Sequence[str], config_root: Path) -> List[RunSpec]:
    """Every run of the benchmark, each pretraining run before the runs that depend on it."""
    plan: List[RunSpec] = []
    fractions = sorted(set(preset.label_fractions) | {1.0})
    segments = {strategy: segments_per_crop(config_root, strategy) for strategy in strategies}
    for seed in range(1, preset.seeds + 1):
        for strategy in strategies:
            pre_preset = hydra_preset_for(config_root, strategy, preset, "pretraining")
            down_preset = hydra_preset_for(config_root, strategy, preset, "finetuning")
            pretrain_id = f"{strategy}-s{seed}-pretrain"
            plan.append(RunSpec(pretrain_id, PRETRAIN, strategy, seed, "pretraining", strategy,
                                _pretrain(preset, strategy, pre_preset, seed, segments[strategy])))
            for fraction in fractions:
                kind = PROBE if fraction == 1.0 else LABEL_FRACTION
                run_id = f"{strategy}-s{seed}-probe" + ("" if fraction == 1.0 else f"-{fraction_tag(fraction)}")
                plan.append(RunSpec(run_id, kind, strategy, seed, "finetuning", "linear_probe",
                                    _downstream(preset, down_preset, seed, "linear_probe", fraction),
                                    "linear_probe", fraction, pretrain_id))
            if preset.finetune:
                plan.append(RunSpec(f"{strategy}-s{seed}-finetune", FINETUNE, strategy, seed, "finetuning", "finetune",
                                    _downstream(preset, down_preset, seed, "finetune", 1.0),
                                    "finetune", 1.0, pretrain_id))
        if preset.random_init:
            for fraction in fractions:
                kind = RANDOM_INIT if fraction == 1.0 else LABEL_FRACTION
                run_id = f"random_init-s{seed}" + ("" if fraction == 1.0 else f"-{fraction_tag(fraction)}")
                plan.append(RunSpec(run_id, kind, RANDOM_INIT, seed, "finetuning", "linear_probe",
                                    _downstream(preset, preset.hydra_preset, seed, "linear_probe", fraction),
                                    "linear_probe", fraction))
        if preset.supervised:
            plan.append(RunSpec(f"supervised-s{seed}", SUPERVISED, SUPERVISED, seed, "finetuning", "finetune",
                                _downstream(preset, preset.hydra_preset, seed, "finetune", 1.0), "finetune"))
    return plan


# --------------------------------------------------------------------------------------------
# Running one run


def fairseq_hydra_train() -> str:
    """The ``fairseq-hydra-train`` of this interpreter's environment (then the one on PATH)."""
    found = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or shutil.which(
        "fairseq-hydra-train")
    if not found:
        raise BenchmarkError("fairseq-hydra-train not found: install fairseq-fixed in this environment")
    return found


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
    overrides = [f"task.data={hydra_path(ctx.data)}", f"common.user_dir={hydra_path(PACKAGE_DIR)}",
                 f"checkpoint.save_dir={hydra_path(run_dir / 'ckpt')}",
                 f"hydra.run.dir={hydra_path(run_dir / 'hydra')}", *spec.overrides]
    if spec.depends_on:
        overrides.append(f"model.model_path={hydra_path(ctx.pretrain_checkpoint(spec.depends_on))}")
    return overrides


class _Children:
    """The live training subprocesses, so that a killed benchmark does not leave them running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: subprocess.Popen) -> None:
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


_USES_LABELS = re.compile(r"'uses_labels': (True|False)")


def strategy_uses_labels(ctx: Context, spec: RunSpec, log: Path) -> bool:
    """Whether pretraining read the downstream labels, as the strategy's ``describe()`` logged it.

    Falls back on the registered strategy class for configs whose task does not log it.
    """
    found = _USES_LABELS.findall(log.read_text(errors="replace")) if log.is_file() else []
    if found:
        return found[-1] == "True"
    name = OmegaConf.select(OmegaConf.load(config_path(ctx.config_root, spec.stage, spec.config_name)),
                            "task.strategy._name")
    from fairseq_goodviews.strategies import STRATEGY_REGISTRY

    return bool(getattr(STRATEGY_REGISTRY.get(name), "uses_labels", False))


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: undefined metrics (a class absent from the split) become null."""
    if isinstance(value, float) and value != value:
        return None
    return value


def score(checkpoint: Path, threads: int) -> Dict[str, Any]:
    import torch

    from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint

    with _SCORE_LOCK:
        torch.set_num_threads(threads)
        metrics = evaluate_checkpoint(checkpoint, split="test")
    return {key: finite_or_none(value) for key, value in metrics.items()}


def read_result(path: Path) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # written atomically, so only a foreign edit gets here: re-run it
        return None


def execute_run(spec: RunSpec, ctx: Context, results: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Train (or resume) one run, score it, and write its ``result.json`` atomically."""
    run_dir = ctx.run_dir(spec.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / "train.log"
    resumed = (run_dir / "ckpt" / "checkpoint_last.pt").is_file()
    cmd = [fairseq_hydra_train(), "--config-dir", str(ctx.config_root / spec.stage),
           "--config-name", spec.config_name, *full_overrides(spec, ctx)]
    env = dict(os.environ, OMP_NUM_THREADS=str(ctx.threads), MKL_NUM_THREADS=str(ctx.threads))
    if ctx.on_launch is not None:
        ctx.on_launch(cmd)
    start = time.monotonic()
    with open(log, "a") as handle:
        handle.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resumed else 'start'}: "
                     f"{' '.join(cmd)}\n")
        handle.flush()
        proc = subprocess.Popen(cmd, cwd=run_dir, stdout=handle, stderr=subprocess.STDOUT, env=env)
        _CHILDREN.add(proc)
        try:
            returncode, cpu_time = wait_with_cpu_time(proc)
        finally:
            _CHILDREN.discard(proc)
    train_time = time.monotonic() - start
    if returncode != 0:
        raise BenchmarkError(f"run {spec.run_id} failed (exit {returncode}); log {log}:\n{log_tail(log)}")
    result: Dict[str, Any] = {
        "run_id": spec.run_id, "kind": spec.kind, "strategy": spec.method, "seed": spec.seed,
        "config": f"{spec.stage}/{spec.config_name}", "overrides": full_overrides(spec, ctx),
        "resumed": resumed, "log": str(log), "train_cpu_time_s": cpu_time,
    }
    if spec.kind == PRETRAIN:
        checkpoint = ctx.pretrain_checkpoint(spec.run_id)
        if not checkpoint.is_file():
            raise BenchmarkError(f"run {spec.run_id}: finished without writing {checkpoint}; log {log}")
        result.update(uses_labels=strategy_uses_labels(ctx, spec, log), metrics=None,
                      wall_time_s=train_time, checkpoint=str(checkpoint))
    else:
        checkpoint = run_dir / "ckpt" / "checkpoint_best.pt"
        if not checkpoint.is_file():
            raise BenchmarkError(f"run {spec.run_id}: no {checkpoint} (did validation run?); log {log}")
        metrics = score(checkpoint, ctx.threads)
        pretrain = results.get(spec.depends_on) if spec.depends_on else None
        result.update(
            protocol=spec.protocol, label_fraction=spec.label_fraction, metrics=metrics, checkpoint=str(checkpoint),
            wall_time_s=time.monotonic() - start, uses_labels=bool(pretrain and pretrain["uses_labels"]),
            pretrain=None if pretrain is None else {
                "run_id": pretrain["run_id"], "wall_time_s": pretrain["wall_time_s"],
                "checkpoint": pretrain["checkpoint"], "overrides": pretrain["overrides"]},
        )
        result["total_wall_time_s"] = result["wall_time_s"] + (pretrain["wall_time_s"] if pretrain else 0.0)
    with atomic_open(run_dir / "result.json") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    (run_dir / "error.txt").unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------------------------
# Running the plan


@dataclass
class Outcome:
    results: Dict[str, Dict[str, Any]]
    #: run id -> why it did not finish (its error, or the failed run it depended on)
    failed: Dict[str, str]
    #: run ids launched by this invocation (empty when everything had finished before)
    launched: List[str] = field(default_factory=list)


def run_plan(plan: Sequence[RunSpec], ctx: Context) -> Outcome:
    """Run every unfinished run of ``plan``, ``ctx.jobs`` at a time, dependencies first."""
    outcome = Outcome(results={}, failed={})
    pending: List[RunSpec] = []
    for spec in plan:
        done = read_result(ctx.run_dir(spec.run_id) / "result.json")
        if done is not None:
            outcome.results[spec.run_id] = done
        else:
            pending.append(spec)
    if pending:
        logger.info("%d of %d runs to do (%d finished before)", len(pending), len(plan), len(outcome.results))
    running: Dict[Future, RunSpec] = {}
    with ThreadPoolExecutor(max_workers=max(1, ctx.jobs)) as pool:
        while pending or running:
            for spec in list(pending):
                if len(running) >= max(1, ctx.jobs):
                    break
                if spec.depends_on in outcome.failed:
                    outcome.failed[spec.run_id] = f"its pretraining run {spec.depends_on} failed"
                    pending.remove(spec)
                elif spec.depends_on is None or spec.depends_on in outcome.results:
                    pending.remove(spec)
                    outcome.launched.append(spec.run_id)
                    logger.info("start %s", spec.run_id)
                    running[pool.submit(execute_run, spec, ctx, outcome.results)] = spec
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                spec = running.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # one broken run must not stop the others: report it
                    why = str(exc) if isinstance(exc, BenchmarkError) else (
                        f"run {spec.run_id}: {''.join(traceback.format_exception(exc))}")
                    outcome.failed[spec.run_id] = why
                    logger.error("%s", why)
                    with atomic_open(ctx.run_dir(spec.run_id) / "error.txt") as handle:
                        handle.write(why + "\n")
                    continue
                outcome.results[spec.run_id] = result
                logger.info("done %s in %.0f s%s", spec.run_id, result["wall_time_s"], _metric_note(result))
    for spec in pending:
        outcome.failed.setdefault(spec.run_id, "not run")
    return outcome


def _metric_note(result: Dict[str, Any]) -> str:
    metrics = result.get("metrics") or {}
    auroc = metrics.get("macro_auroc")
    return "" if auroc is None else f": test macro AUROC {auroc:.3f}"


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold ``OUT/.lock`` so two benchmarks never train into the same run folders."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BenchmarkError(f"another benchmark is running in {out}") from None
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


# --------------------------------------------------------------------------------------------
# Data


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


# --------------------------------------------------------------------------------------------
# Entry points


def run_benchmark(
    out: str | Path,
    preset: str | Preset = "cpu-small",
    data: Optional[str | Path] = None,
    synthetic: Optional[int] = None,
    seeds: Optional[int] = None,
    strategies: Optional[Sequence[str]] = None,
    finetune: Optional[bool] = None,
    label_fractions: Optional[Sequence[float]] = None,
    jobs: Optional[int] = None,
    config_root: str | Path = DEFAULT_CONFIG_ROOT,
    on_launch: Optional[Callable[[List[str]], None]] = None,
) -> Outcome:
    """Run (or finish) a benchmark in ``out`` and write its report; returns what happened."""
    from fairseq_goodviews.benchmark.report import write_report

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise BenchmarkError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    changes: Dict[str, Any] = {}
    if seeds is not None:
        changes["seeds"] = seeds
    if strategies is not None:
        changes["strategies"] = tuple(strategies)
    if finetune is not None:
        changes["finetune"] = finetune
    if label_fractions is not None:
        if any(not 0.0 < f <= 1.0 for f in label_fractions):
            raise BenchmarkError(f"label fractions must lie in (0, 1]: {list(label_fractions)}")
        changes["label_fractions"] = tuple(label_fractions)
    if jobs is not None:
        changes["jobs"] = jobs
    preset = replace(preset, **changes)
    if preset.seeds < 1:
        raise BenchmarkError("--seeds must be at least 1")
    out = Path(out).resolve()
    config_root = Path(config_root).resolve()
    if not (config_root / "finetuning" / "linear_probe.yaml").is_file():
        raise BenchmarkError(f"{config_root}: no finetuning/linear_probe.yaml (pass --config-root)")
    present, missing = available_strategies(config_root, preset.strategies)
    unknown = [s for s in missing if s not in ALL_STRATEGIES]
    if unknown:
        raise BenchmarkError(f"no pretraining config for {', '.join(unknown)} in {config_root / 'pretraining'}")
    for name in missing:
        logger.warning("skipping %s: %s does not exist", name, config_path(config_root, "pretraining", name))
    cpus = os.cpu_count() or 1
    with exclusive(out), terminate_children_on_signal():
        if data is None:
            if synthetic is None:
                raise BenchmarkError("give --data MANIFEST_DIR or --synthetic N")
            data = prepare_synthetic(out, synthetic or preset.synthetic_records, workers=cpus)
        elif synthetic is not None:
            raise BenchmarkError("give either --data or --synthetic, not both")
        ctx = Context(data=check_data(Path(data)), out=out, config_root=config_root, jobs=preset.jobs,
                      threads=max(1, cpus // max(1, preset.jobs)), on_launch=on_launch)
        plan = build_plan(preset, present, config_root)
        start = time.monotonic()
        outcome = run_plan(plan, ctx)
        # Every completed invocation in OUT, so that the wall time of a benchmark finished in
        # several goes (resumed) stays on record.
        previous = (read_result(out / "results.json") or {}).get("benchmark", {}).get("invocations", [])
        invocation = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_time_s": time.monotonic() - start,
                      "runs_launched": len(outcome.launched)}
        settings = {**asdict(preset), "strategies": present, "skipped_strategies": missing,
                    "data": str(ctx.data), "out": str(out), "config_root": str(config_root),
                    "threads_per_run": ctx.threads, "invocations": [*previous, invocation]}
        write_report(out, plan, outcome, settings)
    return outcome


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="goodviews-benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="prepared manifest folder ({train,valid,test}.tsv/.csv)")
    parser.add_argument("--synthetic", type=int, metavar="N", nargs="?", const=0,
                        help="without --data: generate N synthetic Chapman records (default: the preset's "
                             "number) and prepare them in OUT/data")
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    parser.add_argument("--out", required=True, help="output folder (re-use it to resume)")
    parser.add_argument("--seeds", type=int, help="number of seeds, 1..N (default: the preset's)")
    parser.add_argument("--strategies", help="comma-separated pretraining configs (default: the preset's)")
    parser.add_argument("--finetune", action="store_true", help="also fully fine-tune every pretrained encoder")
    parser.add_argument("--label-fractions", help="comma-separated fractions of training labels for the probes, "
                                                  "e.g. 0.01,0.1,1.0 (default: the preset's)")
    parser.add_argument("--jobs", type=int, help="runs at once; the CPU cores are shared between them")
    parser.add_argument("--config-root", default=str(DEFAULT_CONFIG_ROOT), help="folder with pretraining/ and "
                                                                                 "finetuning/ hydra configs")
    return parser.parse_args(argv)


def _csv(text: Optional[str], cast: Callable[[str], Any]) -> Optional[List[Any]]:
    if text is None:
        return None
    return [cast(item.strip()) for item in text.split(",") if item.strip()]


def setup_logging() -> None:
    """Progress lines on stderr; fairseq's own logging (root logger) stays as it is."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging()
    try:
        outcome = run_benchmark(
            args.out, args.preset, data=args.data, synthetic=args.synthetic, seeds=args.seeds,
            strategies=_csv(args.strategies, str), finetune=args.finetune or None,
            label_fractions=_csv(args.label_fractions, float), jobs=args.jobs, config_root=args.config_root,
        )
    except BenchmarkError as exc:
        print(f"goodviews-benchmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("goodviews-benchmark: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    out = Path(args.out)
    print(f"{len(outcome.results)} runs finished ({len(outcome.launched)} in this invocation); "
          f"report: {out / 'results.md'}")
    if outcome.failed:
        print(f"{len(outcome.failed)} runs failed or were not run:", file=sys.stderr)
        for run_id, why in outcome.failed.items():
            print(f"  {run_id}: {why.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
