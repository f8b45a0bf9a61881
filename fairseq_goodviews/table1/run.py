"""A whole Table 1 benchmark: its preset, methods and data checked, its plan run, its report written.

:func:`run_benchmark` is what ``goodviews-benchmark`` (:mod:`fairseq_goodviews.cli.benchmark`)
and ``examples/demo.py`` run; the same call on the same ``out`` resumes a killed benchmark.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.io.atomic import atomic_open
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
)
from fairseq_goodviews.table1.plan import (
    ALL_STRATEGIES,
    DEFAULT_CONFIG_ROOT,
    PRESETS,
    BenchmarkError,
    Method,
    Preset,
    build_plan,
    check_applicable,
    describe_method,
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
    report_only: bool = False,
    rerun_changed: bool = False,
    config_root: str | Path = DEFAULT_CONFIG_ROOT,
    on_launch: Optional[Callable[[List[str]], None]] = None,
) -> Outcome:
    """Run (or finish) a benchmark in ``out`` and write its report; returns what happened.

    ``task`` is the downstream task (``rhythm4``, ``cinc2021``, ``ptbxl_<set>``); without it (and
    without one in ``preset``) the one the data supports (:func:`~.data.choose_task`). A finished
    run made with other settings than the plan's stops the benchmark before anything runs
    (:mod:`~.resume`), unless ``rerun_changed`` sets it aside and redoes it.
    """

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
    )
    out = Path(out).resolve()
    config_root = Path(config_root).resolve()
    present, missing = _configured_strategies(preset, config_root)
    methods = [describe_method(config_root, name) for name in present]
    cpus = os.cpu_count() or 1
    # A report of the finished runs may be written while the benchmark itself still runs.
    lock = contextlib.nullcontext() if report_only else exclusive(out)
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
        ctx = Context(
            data=by_seed,
            out=out,
            config_root=config_root,
            methods={m.name: m for m in methods},
            ptbxl=ptbxl,
            identification_crop=facts["linear_probe"]["sample_size"],
            jobs=preset.jobs,
            threads=max(1, cpus // max(1, preset.jobs)),
            on_launch=on_launch,
            rerun_changed=rerun_changed,
        )
        plan = build_plan(preset, methods, config_root, ptbxl=ptbxl is not None)
        start = time.monotonic()
        outcome = run_plan(plan, ctx, execute=not report_only)
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
            "threads_per_run": ctx.threads,
            "invocations": _invocations(out, outcome, start, report_only),
        }
        write_report(out, plan, outcome, settings)
    return outcome


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


def setup_logging() -> None:
    """Progress lines on stderr, and warnings only from everything else (see :func:`quiet_fairseq_logging`)."""
    quiet_fairseq_logging()
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
