"""``goodviews-benchmark``: reproduce the "Good Views" Table 1.

For every pretraining method and seed the benchmark pretrains an encoder, trains a linear probe
on it (optionally also a full fine-tune, and probes on 1% / 10% of the training labels), and runs
the two baselines: the supervised encoder trained from scratch (scored on its own trained head)
and a random-initialised frozen encoder with a linear probe. Every training is a
``fairseq-hydra-train`` subprocess on the project's configs, exactly as a user would run it; each
downstream run is scored on the test split from its best (valid macro AUROC) checkpoint. The
report (``results.json``, ``results.md``, ``auroc.png``, ``label_efficiency.png``) goes to ``OUT``;
the same command resumes a killed benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.table1.data import check_data, prepare_synthetic, prepare_synthetic_ptbxl, split_for_seed
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
    Preset,
    build_plan,
    check_applicable,
    describe_method,
    schedules,
)

logger = logging.getLogger("fairseq_goodviews.table1")


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
    split_seeds: Optional[bool] = None,
    lead_masking: Optional[Sequence[str]] = None,
    ptbxl_data: Optional[str | Path] = None,
    report_only: bool = False,
    config_root: str | Path = DEFAULT_CONFIG_ROOT,
    on_launch: Optional[Callable[[List[str]], None]] = None,
) -> Outcome:
    """Run (or finish) a benchmark in ``out`` and write its report; returns what happened."""
    from fairseq_goodviews.table1.report import write_report

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
    if split_seeds is not None:
        changes["split_seeds"] = split_seeds
    if lead_masking is not None:
        changes["lead_masking"] = tuple(lead_masking)
    preset = replace(preset, **changes)
    if preset.seeds < 1:
        raise BenchmarkError("--seeds must be at least 1")
    out = Path(out).resolve()
    config_root = Path(config_root).resolve()
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
    methods = [describe_method(config_root, name) for name in present]
    cpus = os.cpu_count() or 1
    # A report of the finished runs may be written while the benchmark itself still runs.
    lock = contextlib.nullcontext() if report_only else exclusive(out)
    with lock, terminate_children_on_signal():
        if data is None:
            if synthetic is None:
                raise BenchmarkError("give --data MANIFEST_DIR or --synthetic N")
            data = prepare_synthetic(out, synthetic or preset.synthetic_records, workers=cpus)
            if ptbxl_data is None and (preset.ptbxl_label_set or preset.identification):
                ptbxl_data = prepare_synthetic_ptbxl(out, preset.synthetic_ptbxl_patients, workers=cpus)
        elif synthetic is not None:
            raise BenchmarkError("give either --data or --synthetic, not both")
        data = check_data(Path(data))
        ptbxl = check_data(Path(ptbxl_data)) if ptbxl_data is not None else None
        if ptbxl is None and (preset.ptbxl_label_set or preset.identification):
            logger.warning("no PTB-XL-layout folder (--ptbxl-data): no multi-label and identification columns")
        methods = [check_applicable(m, config_root, data) if m.cross_record else m for m in methods]
        for method in methods:
            if method.not_applicable:
                logger.warning("%s is not applicable to %s: %s", method.name, data, method.not_applicable)
        seeds = range(1, preset.seeds + 1)
        by_seed = {seed: split_for_seed(data, out, seed) if preset.split_seeds else data for seed in seeds}
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
        )
        plan = build_plan(preset, methods, config_root, ptbxl=ptbxl is not None)
        start = time.monotonic()
        outcome = run_plan(plan, ctx, execute=not report_only)
        # Every completed invocation in OUT, so that the wall time of a benchmark finished in
        # several goes (resumed) stays on record.
        previous = (read_result(out / "results.json") or {}).get("benchmark", {}).get("invocations", [])
        invocation = {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "wall_time_s": time.monotonic() - start,
            "runs_launched": len(outcome.launched),
        }
        invocations = previous if report_only else [*previous, invocation]
        settings = {
            **asdict(preset),
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
            "invocations": invocations,
        }
        write_report(out, plan, outcome, settings)
    return outcome


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="goodviews-benchmark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="prepared manifest folder ({train,valid,test}.tsv/.csv)")
    parser.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        nargs="?",
        const=0,
        help="without --data: generate N synthetic Chapman records (default: the preset's "
        "number) and prepare them in OUT/data",
    )
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    parser.add_argument("--out", required=True, help="output folder (re-use it to resume)")
    parser.add_argument("--seeds", type=int, help="number of seeds, 1..N (default: the preset's)")
    parser.add_argument("--strategies", help="comma-separated pretraining configs (default: the preset's)")
    parser.add_argument("--finetune", action="store_true", help="also fully fine-tune every pretrained encoder")
    parser.add_argument(
        "--label-fractions",
        help="comma-separated fractions of training labels for the probes, e.g. 0.01,0.1,1.0 (default: the preset's)",
    )
    parser.add_argument(
        "--split-seeds",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="re-split the data patient-wise with every seed (default: the preset's, on)",
    )
    parser.add_argument(
        "--lead-masking",
        help="lead-masking columns, e.g. none,rlm (config/pretraining/lead_masking; default: the preset's)",
    )
    parser.add_argument(
        "--ptbxl-data",
        help="prepared PTB-XL-layout folder for the multi-label probe and the "
        "identification columns (--synthetic generates one)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report of the runs finished so far in OUT, train nothing (works while the "
        "benchmark still runs)",
    )
    parser.add_argument("--jobs", type=int, help="runs at once; the CPU cores are shared between them")
    parser.add_argument(
        "--config-root", default=str(DEFAULT_CONFIG_ROOT), help="folder with pretraining/ and finetuning/ hydra configs"
    )
    return parser.parse_args(argv)


def _csv(text: Optional[str], cast: Callable[[str], Any]) -> Optional[List[Any]]:
    if text is None:
        return None
    return [cast(item.strip()) for item in text.split(",") if item.strip()]


def setup_logging() -> None:
    """Progress lines on stderr, and warnings only from everything else (see :func:`quiet_fairseq_logging`)."""
    quiet_fairseq_logging()
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
            args.out,
            args.preset,
            data=args.data,
            synthetic=args.synthetic,
            seeds=args.seeds,
            strategies=_csv(args.strategies, str),
            finetune=args.finetune or None,
            label_fractions=_csv(args.label_fractions, float),
            jobs=args.jobs,
            split_seeds=args.split_seeds,
            lead_masking=_csv(args.lead_masking, str),
            ptbxl_data=args.ptbxl_data,
            report_only=args.report_only,
            config_root=args.config_root,
        )
    except BenchmarkError as exc:
        print(f"goodviews-benchmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("goodviews-benchmark: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    out = Path(args.out)
    print(
        f"{len(outcome.results)} runs finished ({len(outcome.launched)} in this invocation); "
        f"report: {out / 'results.md'}"
    )
    if outcome.failed:
        print(f"{len(outcome.failed)} runs failed or were not run:", file=sys.stderr)
        for run_id, why in outcome.failed.items():
            print(f"  {run_id}: {why.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0
