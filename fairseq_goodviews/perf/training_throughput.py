"""Training speed: ``fairseq-hydra-train`` against a bare PyTorch loop, and the W2V+CMSC step.

**Throughput ratio.** Both loops train the same model (the pretraining config's ResNet with the
chosen preset) on the same dataset, strategy, batch size, number of data-loading workers
(persistent in both) and optimiser (PyTorch's AdamW kernel with the config's hyperparameters,
which ``torch_adam`` uses). Each runs in its own process (group); after ``--warmup`` updates
each, run one at a time, the two take turns on the machine in ``--slices`` time slices of
``--slice-seconds`` each (the one not running is stopped with SIGSTOP, its data-loading workers
with it), so that a change of the machine's load hits both loops alike. A loop's rate is the
updates it completed between its first and last logged update in a block of consecutive slices,
over its running time between them; the ratio is the mean of the ``--blocks`` blocks' ratios
fairseq / bare, its spread the half-width of that mean's 95% t interval. The goal (issue 14) is
>= 0.95. ``--versus glibc-defaults`` compares fairseq-hydra-train with itself under glibc's
malloc defaults instead (:mod:`fairseq_goodviews.host_memory`).

**W2V+CMSC step.** One training step (forward, loss, backward) of the ``w2v_cmsc_rlm`` config
with ``--w2v-preset``, on the same fixed batches, with the CMSC embedding pooled from the one
masked pass (``cmsc_pass=masked``, the default) and from a second, unmasked pass
(``cmsc_pass=unmasked``), interleaved step by step; the medians are compared.

On a GPU (``--device cuda``, the default when one is visible) the bare loop and the W2V step
run there, synchronised before each clock reading; ``--bf16`` runs every loop under bf16
autocast (``task.autocast_bf16=true`` for fairseq). ``--w2v-fairseq-updates`` adds the
samples/s of ``w2v_cmsc_rlm`` trained through ``fairseq-hydra-train``.

Beside each rate: the achieved TFLOP/s, from the model's FLOPs per record
(:mod:`fairseq_goodviews.perf.flops`), and on a GPU of its peak table the share of the bf16 peak.

    goodviews-perf training-throughput --data MANIFEST_DIR --out DIR
"""

import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import scipy.stats
import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.criterions.w2v_cmsc import Wav2Vec2CmscCriterion
from fairseq_goodviews.host_memory import OPT_OUT_VARIABLE, keep_freed_host_memory
from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
from fairseq_goodviews.models.wav2vec2_ecg import Wav2Vec2EcgConfig, Wav2Vec2EcgModel
from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.perf.flops import flops_per_record, format_utilisation, utilisation
from fairseq_goodviews.perf.loader import training_loader
from fairseq_goodviews.perf.step_rate import build_optimizer, contrastive_step, synchronize
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

USER_DIR = Path(__file__).resolve().parents[1]  # the plugin, wherever it is installed
CONFIG_DIR = USER_DIR / "config" / "pretraining"
_FAIRSEQ_UPDATE = re.compile(r"\[train_inner\].*num_updates[= ](?P<n>\d+)")
_BARE_UPDATE = re.compile(r"^bare_update (?P<n>\d+)$")
TARGET_RATIO = 0.95


@dataclass(frozen=True)
class ThroughputArgs:
    """The benchmark's settings: the options of ``goodviews-perf training-throughput`` (``--out`` aside)."""

    data: Path
    config_dir: Path
    strategy: str
    preset: str
    batch_size: int
    sample_size: int
    workers: int
    warmup: int
    slices: int
    slice_seconds: float
    blocks: int
    log_every: int
    warmup_timeout: float
    versus: str
    w2v_preset: str
    w2v_batch_size: int
    w2v_warmup: int
    w2v_steps: int
    skip_throughput: bool
    w2v_fairseq_updates: int
    device: str
    bf16: bool


def _overrides(args: ThroughputArgs) -> list[str]:
    return [
        f"preset={args.preset}",
        f"task.data={args.data}",
        f"dataset.batch_size={args.batch_size}",
        f"dataset.num_workers={args.workers}",
        f"task.sample_size={args.sample_size}",
        f"++task.autocast_bf16={str(args.bf16).lower()}",
    ]


def _config(args: ThroughputArgs, name: str, preset: str) -> Any:
    """The config ``fairseq-hydra-train`` composes for ``name`` with ``preset`` (and the benchmark's data)."""

    cfg = compose(args.config_dir.parent, args.config_dir.name, name, [f"preset={preset}"])
    OmegaConf.update(cfg, "task.data", str(args.data), force_add=True)
    OmegaConf.update(cfg, "task.seed", 1, force_add=True)
    return cfg


def fairseq_command(args: ThroughputArgs, workdir: Path, config: str = "", overrides=None) -> list[str]:
    """``fairseq-hydra-train`` for ``config`` (default: ``--strategy``) without checkpoints or validation,
    logging every ``--log-every`` updates, until stopped."""
    hydra = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    return [
        hydra,
        "--config-dir",
        str(args.config_dir),
        "--config-name",
        config or args.strategy,
        *(_overrides(args) if overrides is None else overrides),
        f"common.user_dir={USER_DIR}",
        f"checkpoint.save_dir={workdir}/ckpt",
        f"hydra.run.dir={workdir}/hydra",
        "checkpoint.no_save=true",
        "dataset.disable_validation=true",
        f"common.log_interval={args.log_every}",
        "optimization.max_update=1000000000",
        "optimization.max_epoch=0",
    ]


def bare_loop(args: ThroughputArgs) -> None:
    """The same model, data, loss and optimiser in a plain loop over a torch DataLoader.

    Prints ``bare_update N`` every ``--log-every`` updates, until killed (the benchmark's child).
    The process is a training process: it keeps freed host memory as fairseq-hydra-train does.
    """
    keep_freed_host_memory()
    cfg = _config(args, args.strategy, args.preset)
    OmegaConf.update(cfg, "task.sample_size", args.sample_size, force_add=True)
    task = EcgPretrainingTask(merge_with_parent(EcgPretrainingConfig(), cfg.task))
    task.load_dataset("train")
    dataset = task.dataset("train")
    device = torch.device(args.device)
    torch.manual_seed(1)
    model = Resnet1dModel.build_model(merge_with_parent(Resnet1dConfig(), cfg.model)).to(device)
    optimizer = build_optimizer(cfg, model)
    loader = training_loader(dataset, args.batch_size, args.workers, pin_memory=device.type == "cuda")
    temperature = float(cfg.criterion.temperature)
    updates = 0
    while True:
        for batch in loader:
            batch["net_input"]["source"] = batch["net_input"]["source"].to(device, non_blocking=True)
            batch["views_meta"] = {key: value.to(device) for key, value in batch["views_meta"].items()}
            contrastive_step(model, optimizer, task, batch, temperature, args.bf16)
            updates += 1
            if updates % args.log_every == 0:
                synchronize(device)
                print(f"bare_update {updates}", flush=True)


class _TrainingProcess:
    """A training loop in its own process group, stopped and resumed by signals; its logged updates timed."""

    def __init__(self, name: str, cmd: list[str], update_line: re.Pattern, cwd: Path, env: dict[str, str]):
        self.name, self.update_line = name, update_line
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.events: list[tuple[float, int]] = []  # (time.perf_counter() when read, updates done)
        self.slices: list[tuple[float, float]] = []  # running intervals
        self.tail: deque[str] = deque(maxlen=60)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.tail.append(line)
            match = self.update_line.search(line)
            if match:
                self.events.append((time.perf_counter(), int(match["n"])))

    @property
    def updates(self) -> int:
        return self.events[-1][1] if self.events else 0

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            self._reader.join(timeout=5)
            raise RuntimeError(f"the {self.name} loop exited ({self.process.returncode}):\n{''.join(self.tail)}")

    def pause(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def run_until(self, updates: int, timeout: float, timed: bool = False) -> None:
        """Run (alone) until ``updates`` updates are logged, then stop; ``timed``: as one more time slice."""
        start = time.perf_counter()
        deadline = start + timeout
        self.resume()
        while self.updates < updates:
            self._check_alive()
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the {self.name} loop logged {self.updates} of {updates} updates in {timeout:.0f} s"
                )
            time.sleep(0.05)
        self.pause()
        if timed:
            self.slices.append((start, time.perf_counter()))

    def run_slice(self, seconds: float) -> None:
        self._check_alive()
        start = time.perf_counter()
        self.resume()
        time.sleep(seconds)
        self.pause()
        self.slices.append((start, time.perf_counter()))

    def samples_per_second(self, slices: range, batch_size: int) -> float:
        """Rate over ``slices``: updates between the first and last update logged in them / running time between."""
        windows = [self.slices[i] for i in slices]
        events = []
        for index, (start, end) in zip(slices, windows, strict=True):
            stop = self.slices[index + 1][0] if index + 1 < len(self.slices) else math.inf
            events += [(min(t, end), n) for t, n in self.events if start <= t < stop]
        if len(events) < 2 or events[-1][1] == events[0][1]:
            raise RuntimeError(f"the {self.name} loop logged fewer than 2 updates in slices {slices}: lengthen them")
        (t0, n0), (t1, n1) = events[0], events[-1]
        running = sum(max(0.0, min(end, t1) - max(start, t0)) for start, end in windows)
        return (n1 - n0) * batch_size / running

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


#: The options the bare loop's child process receives from the benchmark.
_BARE_CHILD_OPTIONS = (
    "data",
    "config_dir",
    "strategy",
    "preset",
    "batch_size",
    "sample_size",
    "workers",
    "device",
    "log_every",
)


#: What ``--versus`` compares fairseq-hydra-train with, as printed.
BASELINES = {"bare": "bare PyTorch loop", "glibc-defaults": "fairseq-hydra-train, glibc malloc defaults"}


def throughput_time_sliced(args: ThroughputArgs) -> dict[str, Any]:
    """fairseq-hydra-train and the ``--versus`` baseline, warmed up one at a time, then alternating
    ``--slices`` slices each; the ratio fairseq / baseline and its spread."""
    loops: list[_TrainingProcess] = []
    with tempfile.TemporaryDirectory() as workdir:
        try:
            runs = [("fairseq", fairseq_command(args, Path(workdir) / "a"), _FAIRSEQ_UPDATE, {})]
            if args.versus == "bare":
                bare_cmd = [sys.executable, "-m", "fairseq_goodviews.cli.perf", "training-throughput", "--bare-child"]
                bare_cmd += [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in _BARE_CHILD_OPTIONS]
                bare_cmd += [f"--out={workdir}"] + (["--bf16"] if args.bf16 else [])
                runs.append(("baseline", bare_cmd, _BARE_UPDATE, {}))
            else:
                glibc_defaults = {OPT_OUT_VARIABLE: "0"}
                runs.append(
                    (
                        "baseline",
                        fairseq_command(args, Path(workdir) / "b"),
                        _FAIRSEQ_UPDATE,
                        glibc_defaults,
                    )
                )
            for name, cmd, line, env in runs:
                loops.append(_TrainingProcess(name, cmd, line, Path(workdir), env))
                loops[-1].run_until(args.warmup, timeout=args.warmup_timeout)
            for index in range(args.slices):
                for loop in loops if index % 2 == 0 else loops[::-1]:
                    loop.run_slice(args.slice_seconds)
        finally:
            for loop in loops:
                loop.close()
    fairseq = loops[0]
    size = args.slices // args.blocks
    blocks = [range(b * size, (b + 1) * size if b < args.blocks - 1 else args.slices) for b in range(args.blocks)]
    per_block = []
    for block in blocks:
        rates = {loop.name: loop.samples_per_second(block, args.batch_size) for loop in loops}
        per_block.append({**rates, "ratio": rates["fairseq"] / rates["baseline"]})
    ratios = [block["ratio"] for block in per_block]
    rates = {loop.name: loop.samples_per_second(range(args.slices), args.batch_size) for loop in loops}
    spread = (
        float(scipy.stats.t.ppf(0.975, len(ratios) - 1)) * statistics.stdev(ratios) / math.sqrt(len(ratios))
        if len(ratios) > 1
        else math.nan
    )
    return {
        "baseline": BASELINES[args.versus],
        "blocks": per_block,
        "fairseq_samples_per_s": rates["fairseq"],
        "baseline_samples_per_s": rates["baseline"],
        "ratio": statistics.mean(ratios),
        "ratio_spread": spread,
        "ratio_spread_means": "half-width of the 95% t interval of the mean of the blocks' ratios",
        "running_seconds_each": sum(end - start for start, end in fairseq.slices),
        "target_ratio": TARGET_RATIO if args.versus == "bare" else None,
    }


def w2v_step_seconds(args: ThroughputArgs) -> dict[str, float]:
    """Median seconds of one W2V+CMSC training step per ``cmsc_pass``, interleaved on the same batches."""

    cfg = _config(args, "w2v_cmsc_rlm", args.w2v_preset)
    task = EcgPretrainingTask(merge_with_parent(EcgPretrainingConfig(), cfg.task))
    task.load_dataset("train")
    dataset = task.dataset("train")
    device = torch.device(args.device)
    torch.manual_seed(1)
    model = Wav2Vec2EcgModel.build_model(merge_with_parent(Wav2Vec2EcgConfig(), cfg.model)).to(device).train()
    criterion_cfg = OmegaConf.to_container(cfg.criterion)
    criterion_cfg.pop("_name")
    criterion = Wav2Vec2CmscCriterion(task, **criterion_cfg).train()
    size = args.w2v_batch_size
    batches = [dataset.collater([dataset[i] for i in range(start, start + size)]) for start in range(0, 2 * size, size)]
    for batch in batches:
        batch["net_input"]["source"] = batch["net_input"]["source"].to(device)
    times: dict[str, list[float]] = {"masked": [], "unmasked": []}
    for step in range(args.w2v_warmup + args.w2v_steps):
        for variant in times:
            model.cmsc_pass = variant
            batch = batches[step % len(batches)]
            synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss, _, _ = criterion(model, batch)
            loss.backward()
            synchronize(device)
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            if step >= args.w2v_warmup:
                times[variant].append(elapsed)
    return {variant: statistics.median(values) for variant, values in times.items()}


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def run(args: ThroughputArgs, report: Callable[[str], None]) -> dict[str, Any]:
    """The W2V+CMSC step, the W2V+CMSC+RLM rate and the throughput ratio, each as ``args`` asks.

    ``report`` receives each one's figures as text as soon as they are measured. This process
    trains (the W2V step), so it keeps freed host memory as the training processes do. Stopped by
    SIGTERM meanwhile (a time limit, as ``examples/gpu_check.sh`` sets), it exits through its
    clean-up, so its training processes, each in its own process group, stop with it.
    """
    keep_freed_host_memory()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _measure(args, report)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _measure(args: ThroughputArgs, report: Callable[[str], None]) -> dict[str, Any]:
    if not args.skip_throughput and (args.slices < args.blocks or args.blocks < 1):
        raise PerfSettingsError(f"--slices ({args.slices}) must be at least --blocks ({args.blocks}) >= 1")
    args = replace(args, data=args.data.resolve(), config_dir=args.config_dir.resolve())
    result: dict[str, Any] = {
        "settings": {k: str(v) for k, v in asdict(args).items()},
        "torch_threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
    }
    if args.w2v_steps > 0:
        step = w2v_step_seconds(args)
        result["w2v_cmsc_step_seconds"] = {**step, "unmasked_over_masked": step["unmasked"] / step["masked"]}
        report(
            f"{'W2V+CMSC step (' + args.w2v_preset + ')':<36}{'ms/step':>10}\n"
            f"{'  one masked pass (default)':<36}{1e3 * step['masked']:>10.1f}\n"
            f"{'  + unmasked second pass':<36}{1e3 * step['unmasked']:>10.1f}\n"
            f"{'  cost of the second pass':<36}{step['unmasked'] / step['masked']:>9.2f}x"
        )
    if args.w2v_fairseq_updates > 0:
        overrides = [
            f"preset={args.w2v_preset}",
            f"task.data={args.data}",
            f"dataset.batch_size={args.w2v_batch_size}",
            f"dataset.num_workers={args.workers}",
            f"++task.autocast_bf16={str(args.bf16).lower()}",
        ]
        with tempfile.TemporaryDirectory() as workdir:
            cmd = fairseq_command(args, Path(workdir), "w2v_cmsc_rlm", overrides)
            loop = _TrainingProcess("w2v_cmsc_rlm", cmd, _FAIRSEQ_UPDATE, Path(workdir), {})
            try:
                loop.run_until(args.warmup, timeout=args.warmup_timeout)
                loop.run_until(args.warmup + args.w2v_fairseq_updates, timeout=args.warmup_timeout, timed=True)
            finally:
                loop.close()
        rate = loop.samples_per_second(range(1), args.w2v_batch_size)
        result["w2v_cmsc_rlm_fairseq_samples_per_s"] = rate
        gflop = flops_per_record("w2v_cmsc_rlm", args.w2v_preset).gflop_per_record
        use = utilisation(rate, gflop, result["device_name"])
        result["w2v_cmsc_rlm_fairseq_utilisation"] = {"gflop_per_record": gflop, **use}
        report(
            f"{'W2V+CMSC+RLM fairseq-hydra-train':<36}{rate:>10.1f} samples/s, "
            f"{format_utilisation(use, result['device_name'])}"
        )
    if not args.skip_throughput:
        report(
            f"training throughput, {args.strategy}/{args.preset}, fairseq-hydra-train vs {BASELINES[args.versus]}: "
            f"{args.slices} alternating slices of {args.slice_seconds:g} s each"
        )
        throughput = throughput_time_sliced(args)
        gflop = flops_per_record(args.strategy, args.preset, args.sample_size).gflop_per_record
        throughput["gflop_per_record"] = gflop
        for loop in ("fairseq", "baseline"):
            use = utilisation(throughput[f"{loop}_samples_per_s"], gflop, result["device_name"])
            throughput[f"{loop}_utilisation"] = use
        result.update(throughput)
        report(format_throughput(throughput, args.versus, result["device_name"]))
    return result


def format_throughput(throughput: dict[str, Any], versus: str, device_name: str) -> str:
    """Each block's rates and ratio, then both loops' samples/s (with their TFLOP/s and, on a GPU
    of the peak table, its share of the bf16 peak) and the ratio with its 95% interval."""
    lines = [
        f"  block {index + 1}: fairseq {block['fairseq']:.1f}, baseline {block['baseline']:.1f} samples/s, "
        f"ratio {block['ratio']:.3f}"
        for index, block in enumerate(throughput["blocks"])
    ]
    goal = f" (goal >= {TARGET_RATIO})" if versus == "bare" else ""
    lines += [
        f"{'loop':<44}{'samples/s':>12}   model FLOPs ({throughput['gflop_per_record']:.2f} GFLOP/record)",
        f"{'fairseq-hydra-train':<44}{throughput['fairseq_samples_per_s']:>12.1f}   "
        f"{format_utilisation(throughput['fairseq_utilisation'], device_name)}",
        f"{BASELINES[versus]:<44}{throughput['baseline_samples_per_s']:>12.1f}   "
        f"{format_utilisation(throughput['baseline_utilisation'], device_name)}",
        f"{'ratio' + goal:<44}{throughput['ratio']:>12.3f} +- {throughput['ratio_spread']:.3f} (95% CI)",
    ]
    return "\n".join(lines)
