"""A whole Table 1 benchmark: its preset, methods and data checked, its plan run, its report written.

:func:`run_benchmark` is what ``goodviews-benchmark`` (:mod:`fairseq_goodviews.cli.benchmark`)
and ``examples/demo.py`` run; the same call on the same ``out`` resumes a killed benchmark.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.table1.cost import (
    DEFAULT_RATES,
    PTBXL_SHARES,
    estimate,
    plan_text,
    resplit_counts,
    split_counts,
    update_freq,
)
from fairseq_goodviews.table1.data import (
    check_data,
    choose_task,
    prepare_synthetic,
    prepare_synthetic_ptbxl,
    split_for_seed,
)
from fairseq_goodviews.table1.downstream import RHYTHM4
from fairseq_goodviews.table1.execute import (
    Context,
    Outcome,
    exclusive,
    read_result,
    run_plan,
    terminate_children_on_signal,
    training_command,
)
from fairseq_goodviews.table1.executors import (
    WORLD_SIZE,
    Launch,
    build_executor,
    job_parameters,
    sbatch_script,
)
from fairseq_goodviews.table1.placement import Slot, split_update_freq
from fairseq_goodviews.table1.plan import (
    ALL_STRATEGIES,
    DEFAULT_CONFIG_ROOT,
    MAIN_DATA,
    PRESETS,
    PRETRAIN,
    PTBXL_DATA,
    BenchmarkError,
    Method,
    Preset,
    RunSpec,
    build_plan,
    check_applicable,
    describe_method,
    lead_sets,
    schedules,
)
from fairseq_goodviews.table1.report import write_report

logger = logging.getLogger("fairseq_goodviews.table1")


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
    split_seeds: Optional[bool] = None,
    lead_masking: Optional[Sequence[str]] = None,
    ptbxl_data: Optional[str | Path] = None,
    task: Optional[str] = None,
    lead_sets: Optional[Sequence[str]] = None,
    lead_sets_other_tasks: Optional[bool] = None,
    report_only: bool = False,
    rerun_changed: bool = False,
    config_root: str | Path = DEFAULT_CONFIG_ROOT,
    on_launch: Optional[Callable[[List[str]], None]] = None,
    launch: Optional[Launch] = None,
) -> Outcome:
    """Run (or finish) a benchmark in ``out`` and write its report; returns what happened.

    ``launch`` says where the runs run (:class:`~.executors.Launch`: this process on its GPUs or
    CPU cores, the default; submitit's local executor; SLURM); with its ``slurm_dry_run`` the sbatch script
    of every unfinished run is written (``Outcome.scripts``) and nothing runs.

    ``lead_sets`` (names such as ``2`` or leads joined by ``+``, :func:`~fairseq_goodviews.leads.parse_lead_set`)
    adds probes and baselines trained and tested on each lead set; the 12-lead runs are always there.

    ``task`` is the downstream task (``rhythm4``, ``cinc2021``, ``ptbxl_<set>``); without it (and
    without one in ``preset``) the one the data supports (:func:`~.data.choose_task`). A finished
    run made with other settings than the plan's stops the benchmark before anything runs
    (:mod:`~.resume`), unless ``rerun_changed`` sets it aside and redoes it.
    """

    launch = launch or Launch()
    preset = _customised(
        preset,
        seeds=seeds,
        strategies=None if strategies is None else tuple(strategies),
        finetune=finetune,
        label_fractions=None if label_fractions is None else tuple(label_fractions),
        jobs=jobs,
        split_seeds=split_seeds,
        lead_masking=None if lead_masking is None else tuple(lead_masking),
        task=task,
        lead_sets=None if lead_sets is None else tuple(lead_sets),
        lead_sets_other_tasks=lead_sets_other_tasks,
    )
    out = Path(out).resolve()
    config_root = Path(config_root).resolve()
    present, missing = _configured_strategies(preset, config_root)
    methods = [describe_method(config_root, name) for name in present]
    cpus = os.cpu_count() or 1
    # A report of the finished runs may be written while the benchmark itself still runs.
    lock = contextlib.nullcontext() if report_only or launch.slurm_dry_run else exclusive(out)
    with lock, terminate_children_on_signal():
        data = _main_data(out, preset, data, synthetic, cpus)
        chosen, how = choose_task(data, preset.task)
        preset = replace(preset, task=chosen)
        _keep_task(out, chosen)
        logger.info("downstream task %s (%s)", chosen, how)
        ptbxl = _ptbxl_data(out, preset, synthetic, ptbxl_data, cpus)
        methods = _applicable(methods, config_root, data)
        by_seed = {
            seed: split_for_seed(data, out, seed) if preset.split_seeds else data for seed in range(1, preset.seeds + 1)
        }
        facts = schedules(config_root, preset)
        executor = None if report_only or launch.slurm_dry_run else build_executor(launch, out / "runs", preset.jobs)
        ctx = Context(
            data=by_seed,
            out=out,
            config_root=config_root,
            methods={m.name: m for m in methods},
            ptbxl=ptbxl,
            identification_crop=facts["linear_probe"]["sample_size"],
            jobs=preset.jobs,
            on_launch=on_launch,
            rerun_changed=rerun_changed,
            preloaded=not launch.fresh_processes,
        )
        plan = benchmark_plan(preset, methods, config_root, ptbxl is not None, launch.gpus_per_pretrain)
        if launch.slurm_dry_run:
            return Outcome(results={}, failed={}, scripts=write_sbatch_scripts(plan, ctx, launch))
        for spec in plan if executor is not None else ():
            executor.check(spec)
        start = time.monotonic()
        outcome = run_plan(plan, ctx, execute=not report_only, executor=executor)
        settings = {
            **asdict(preset),
            "task_chosen_by": how,
            "strategies": present,
            "skipped_strategies": missing,
            "methods": {m.name: asdict(m) for m in methods},
            "schedules": facts,
            "ptbxl_data": None if ptbxl is None else str(ptbxl),
            "data": str(data),
            "split_data": {str(k): str(v) for k, v in by_seed.items()},
            "out": str(out),
            "config_root": str(config_root),
            "launch": launch.describe(),
            "invocations": _invocations(out, outcome, start, report_only),
        }
        write_report(out, plan, outcome, settings)
    return outcome


def plan_cost(
    preset: str | Preset = "paper",
    data: Optional[str | Path] = None,
    records: Optional[int] = None,
    ptbxl_data: Optional[str | Path] = None,
    ptbxl_records: Optional[int] = None,
    step_rate: Optional[float] = None,
    gpus_per_pretrain: int = 1,
    config_root: str | Path = DEFAULT_CONFIG_ROOT,
    **changes: Any,
) -> str:
    """The plan of a benchmark and its GPU-hours (:mod:`~.cost`), as ``--plan`` prints it; trains
    nothing. The sizes come from the prepared folders ``data`` / ``ptbxl_data`` (manifests only;
    the methods are checked for applicability on ``data``) or from ``records`` / ``ptbxl_records``
    (split 60/20/20 as the benchmark re-splits, PTB-XL 80/10/10 as its folds); ``step_rate`` (records/s) replaces the per-family :data:`~.cost.DEFAULT_RATES`.
    ``changes``: the preset's settings as :func:`run_benchmark` takes them (seeds, strategies, ...)."""
    unknown = set(changes) - set(_PRESET_CHANGES)
    if unknown:
        raise TypeError(f"plan_cost() got unexpected settings {sorted(unknown)}")
    as_tuples = {key: tuple(v) if isinstance(v, list) else v for key, v in changes.items()}
    preset = _customised(preset, **{key: as_tuples.get(key) for key in _PRESET_CHANGES})
    config_root = Path(config_root).resolve()
    present, _ = _configured_strategies(preset, config_root)
    methods = [describe_method(config_root, name) for name in present]
    if (data is None) == (records is None):
        raise BenchmarkError("--plan needs the data's size: give --data MANIFEST_DIR or --records N")
    if data is not None:
        folder = check_data(Path(data))
        methods = _applicable(methods, config_root, folder)
        counts = {
            MAIN_DATA: resplit_counts(sum(split_counts(folder).values()))
            if preset.split_seeds
            else split_counts(folder)
        }
        preset = replace(preset, task=choose_task(folder, preset.task)[0])
    else:
        counts = {MAIN_DATA: resplit_counts(records)}
        preset = replace(preset, task=preset.task or RHYTHM4)
    if ptbxl_data is not None:
        counts[PTBXL_DATA] = split_counts(check_data(Path(ptbxl_data)))
    elif ptbxl_records is not None:
        counts[PTBXL_DATA] = resplit_counts(ptbxl_records, PTBXL_SHARES)
    plan = benchmark_plan(preset, methods, config_root, PTBXL_DATA in counts, gpus_per_pretrain)
    rates = dict(DEFAULT_RATES) if step_rate is None else {family: step_rate for family in DEFAULT_RATES}
    used = {spec.encoder for spec in plan}
    header = (
        f"preset {preset.name}, {preset.seeds} seed(s), task {preset.task}; records per split "
        + "; ".join(f"{name} {sizes}" for name, sizes in counts.items())
        + ("" if data is not None else " (methods not checked for applicability without --data)")
    )
    return header + "\n" + plan_text(estimate(plan, config_root, counts, rates), {f: rates[f] for f in used})


#: The preset settings :func:`run_benchmark` and :func:`plan_cost` take.
_PRESET_CHANGES = (
    "seeds",
    "strategies",
    "finetune",
    "label_fractions",
    "jobs",
    "split_seeds",
    "lead_masking",
    "task",
    "lead_sets",
    "lead_sets_other_tasks",
)


def benchmark_plan(
    preset: Preset, methods: Sequence[Method], config_root: Path, ptbxl: bool, gpus_per_pretrain: int = 1
) -> List[RunSpec]:
    """The runs of ``preset`` (:func:`~.plan.build_plan`); with ``gpus_per_pretrain`` above 1 each
    pretraining runs on as many of them as divide its schedule's ``update_freq``, which shrinks so
    that batch x GPUs x update_freq stays the schedule's (:func:`~.placement.split_update_freq`)."""
    plan = build_plan(preset, methods, config_root, ptbxl=ptbxl)
    if gpus_per_pretrain == 1:
        return plan
    spread = []
    for spec in plan:
        if spec.kind == PRETRAIN:
            composed = compose(config_root, spec.stage, spec.config_name, spec.overrides)
            gpus, per_gpu = split_update_freq(update_freq(composed), gpus_per_pretrain)
            if gpus > 1:
                extra = [f"{WORLD_SIZE}{gpus}", f"++optimization.update_freq=[{per_gpu}]"]
                spec = replace(spec, overrides=[*spec.overrides, *extra])
        spread.append(spec)
    return spread


def write_sbatch_scripts(plan: Sequence[RunSpec], ctx: Context, launch: Launch) -> List[str]:
    """``runs/<id>/submitit/dry-run.sbatch`` of every run of ``plan`` that trains and has no
    ``result.json`` yet: its training command as a SLURM job of ``launch``'s settings (the job's
    own GPUs are SLURM's ``CUDA_VISIBLE_DEVICES``); returns the paths. Nothing is submitted; the
    scoring that follows the training of a downstream run is not in the script."""
    written = []
    for spec in plan:
        if spec.stage == "none" or read_result(ctx.run_dir(spec.run_id) / "result.json") is not None:
            continue
        parameters = job_parameters(launch.jobs, spec, None)
        gpus = parameters["gpus_per_node"]
        slot = Slot(devices=tuple(range(gpus)), visible=(), cores=parameters["cpus_per_task"], exclusive=True)
        command, env = training_command(spec, ctx, slot)
        folder = ctx.run_dir(spec.run_id) / "submitit"
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {key: env[key] for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        path = folder / "dry-run.sbatch"
        with atomic_open(path) as handle:
            handle.write(sbatch_script(launch.jobs, spec, folder, command, wanted))
        written.append(str(path))
    return written


def _customised(preset: str | Preset, **changes: Any) -> Preset:
    """``preset`` (or the preset of that name) with the ``changes`` that are not None."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise BenchmarkError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    fractions = changes["label_fractions"]
    if fractions is not None and any(not 0.0 < f <= 1.0 for f in fractions):
        raise BenchmarkError(f"label fractions must lie in (0, 1]: {list(fractions)}")
    preset = replace(preset, **{name: value for name, value in changes.items() if value is not None})
    if preset.seeds < 1:
        raise BenchmarkError("--seeds must be at least 1")
    lead_sets(preset)  # an unknown lead is one line before any data is made
    return preset


def _keep_task(out: Path, task: str) -> None:
    """Record ``task`` as the downstream task of ``out`` (``OUT/task.json``), or refuse another:
    the finished runs of one task must not be reported as another's. Runs from before the
    benchmark had a task option were all ``rhythm4``."""
    marker = out / "task.json"
    recorded = read_result(marker)
    before = recorded.get("task") if recorded else (RHYTHM4 if (out / "runs").is_dir() else None)
    if before is not None and before != task:
        raise BenchmarkError(f"{out} holds runs of task {before}, not {task}: use another --out or --task {before}")
    if recorded is None:
        with atomic_open(marker) as handle:
            json.dump({"task": task}, handle)


def _configured_strategies(preset: Preset, config_root: Path) -> tuple[List[str], List[str]]:
    """The preset's strategies that have a pretraining config in ``config_root``, and those that do
    not (skipped with a warning, unless no config of that name exists anywhere); checks that
    ``config_root`` has the downstream configs and the preset's lead-masking columns."""
    if not (config_root / "finetuning" / "linear_probe.yaml").is_file():
        raise BenchmarkError(f"{config_root}: no finetuning/linear_probe.yaml (pass --config-root)")
    masking_dir = config_root / "pretraining" / "lead_masking"
    known_masking = sorted(p.stem for p in masking_dir.glob("*.yaml"))
    for name in preset.lead_masking:
        if name not in known_masking:
            raise BenchmarkError(f"unknown lead masking {name!r}; {masking_dir} has {', '.join(known_masking)}")
    present = [s for s in preset.strategies if (config_root / "pretraining" / f"{s}.yaml").is_file()]
    missing = [s for s in preset.strategies if s not in present]
    unknown = [s for s in missing if s not in ALL_STRATEGIES]
    if unknown:
        raise BenchmarkError(f"no pretraining config for {', '.join(unknown)} in {config_root / 'pretraining'}")
    for name in missing:
        logger.warning("skipping %s: %s does not exist", name, config_root / "pretraining" / f"{name}.yaml")
    return present, missing


def _main_data(out: Path, preset: Preset, data: Optional[str | Path], synthetic: Optional[int], cpus: int) -> Path:
    """The benchmark's prepared folder: ``data``, or with ``synthetic`` records generated and
    prepared in ``out``."""
    if data is None:
        if synthetic is None:
            raise BenchmarkError("give --data MANIFEST_DIR or --synthetic N")
        data = prepare_synthetic(out, synthetic or preset.synthetic_records, workers=cpus)
    elif synthetic is not None:
        raise BenchmarkError("give either --data or --synthetic, not both")
    return check_data(Path(data))


def _ptbxl_data(
    out: Path, preset: Preset, synthetic: Optional[int], ptbxl_data: Optional[str | Path], cpus: int
) -> Optional[Path]:
    """The PTB-XL-layout folder of the multi-label and identification columns: ``ptbxl_data``, or
    with ``synthetic`` one generated and prepared in ``out``; None without one."""
    wanted = bool(preset.ptbxl_label_set or preset.identification)
    if ptbxl_data is None and synthetic is not None and wanted:
        ptbxl_data = prepare_synthetic_ptbxl(out, preset.synthetic_ptbxl_patients, workers=cpus)
    if ptbxl_data is None and wanted:
        logger.warning("no PTB-XL-layout folder (--ptbxl-data): no multi-label and identification columns")
    return check_data(Path(ptbxl_data)) if ptbxl_data is not None else None


def _applicable(methods: Sequence[Method], config_root: Path, data: Path) -> List[Method]:
    """``methods``, each cross-record one checked on ``data`` (a warning for each not applicable)."""
    checked = [check_applicable(m, config_root, data) if m.cross_record else m for m in methods]
    for method in checked:
        if method.not_applicable:
            logger.warning("%s is not applicable to %s: %s", method.name, data, method.not_applicable)
    return checked


def _invocations(out: Path, outcome: Outcome, start: float, report_only: bool) -> List[Dict[str, Any]]:
    """Every completed invocation in ``out``, this one (started at ``start``) included unless it only
    reported, so that the wall time of a benchmark finished in several goes stays on record."""
    previous = (read_result(out / "results.json") or {}).get("benchmark", {}).get("invocations", [])
    invocation = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_time_s": time.monotonic() - start,
        "runs_launched": len(outcome.launched),
    }
    return previous if report_only else [*previous, invocation]


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a line is logged, so that the
    command run again in one process (tests, notebooks) never writes to a stream closed since."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    """Progress lines on stderr, and warnings only from everything else (see :func:`quiet_fairseq_logging`)."""
    quiet_fairseq_logging()
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
