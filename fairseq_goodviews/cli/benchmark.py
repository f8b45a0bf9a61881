"""``goodviews-benchmark``: reproduce the "Good Views" Table 1.

For every pretraining method and seed the benchmark pretrains an encoder, trains a linear probe
on it (optionally also a full fine-tune, probes on 1% / 10% of the training labels, and probes
trained and tested on fewer leads, ``--lead-sets``), and runs the two baselines: the supervised encoder trained from scratch (scored on its own trained head)
and a random-initialised frozen encoder with a linear probe. Every training is a
``fairseq-hydra-train`` subprocess on the project's configs, exactly as a user would run it; each
downstream run is scored on the test split from its best (valid macro AUROC) checkpoint. The
report (``results.json``, ``results.md``, ``auroc.png``, ``label_efficiency.png``) goes to ``OUT``;
the same command resumes a killed benchmark.

The downstream task (``--task``) is what the probes and baselines learn: Chapman's four rhythm
classes (``rhythm4``), the CinC 2021 classes (``cinc2021``, multi-label) or a PTB-XL statement
set (``ptbxl_<set>``, multi-label); by default the task of the preparer that wrote ``--data``.

Every run gets its own GPU (``--gpus``; linear probes share one, ``--runs-per-gpu``; a
pretraining may take several under torchrun, ``--gpus-per-pretrain``), or each run is a submitit
job on this machine (``--executor local``) or on a SLURM cluster (``--executor slurm``).
``--plan`` prints every run and the GPU-hours of the plan without training anything.
"""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.table1.downstream import TASKS
from fairseq_goodviews.table1.executors import JobSettings, Launch
from fairseq_goodviews.table1.plan import DEFAULT_CONFIG_ROOT, PRESETS, BenchmarkError
from fairseq_goodviews.table1.run import plan_cost, run_benchmark, setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit status: 0 done, 1 some runs failed, 2 an error, 130 interrupted."""
    return run_command(_parser(), _benchmark, argv)


def _parser() -> argparse.ArgumentParser:
    """The command's options; each left out keeps the preset's setting."""
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
    parser.add_argument(
        "--task",
        choices=TASKS,
        help="downstream task of the probes and baselines (default: the task of the preparer that wrote "
        "the data - Chapman rhythm4, PhysioNet 2021 cinc2021, PTB-XL ptbxl_superdiagnostic - else the "
        "first the data supports)",
    )
    parser.add_argument("--out", help="output folder (re-use it to resume; not needed with --plan)")
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
        "--lead-sets",
        help="comma-separated lead sets the probes and baselines are trained and tested on, each a named set "
        "(12: all; 6: I,II,III,aVR,aVL,aVF; 4: I,II,III,V2; 3: I,II,V2; 2: I,II; 1: II) or leads joined by '+' "
        "(e.g. 12,2,I+II+V2); the other leads are zero-filled; 12 is always run (default: the preset's)",
    )
    parser.add_argument(
        "--lead-sets-other-tasks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run the PTB-XL probe and identification on every lead set (default: the preset's; paper: on)",
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
    parser.add_argument(
        "--rerun-changed",
        action="store_true",
        help="set aside and redo the finished runs in OUT whose settings differ from this command's "
        "(without it such runs stop the benchmark, naming what differs)",
    )
    parser.add_argument(
        "--jobs", type=int, help="runs at once on a machine without GPUs; the CPU cores are shared between them"
    )
    parser.add_argument(
        "--fresh-processes",
        action="store_true",
        help="start every run as a fairseq-hydra-train process of its own (by default a CPU run forks from a "
        "server that has fairseq imported once, which saves seconds of imports a run)",
    )
    gpus = parser.add_argument_group("GPUs and clusters")
    gpus.add_argument(
        "--gpus",
        help="comma-separated indices of the GPUs the runs may use, or 'none' (default: every visible GPU; "
        "each run gets its own, in its CUDA_VISIBLE_DEVICES)",
    )
    gpus.add_argument(
        "--runs-per-gpu", type=int, default=2, help="linear probes sharing one GPU (a training that fills it: one)"
    )
    gpus.add_argument(
        "--gpus-per-pretrain",
        type=int,
        default=1,
        help="GPUs of a pretraining run (torchrun, NCCL): as many as divide its schedule's update_freq, which "
        "shrinks so that batch x GPUs x update_freq stays the schedule's",
    )
    gpus.add_argument(
        "--executor",
        choices=("direct", "local", "slurm"),
        default="direct",
        help="direct: this process starts the runs; local: each run a submitit job on this machine; slurm: each "
        "run a SLURM job through submitit (logs in OUT/runs/<id>/submitit/)",
    )
    gpus.add_argument("--slurm-partition", help="SLURM partition of the jobs")
    gpus.add_argument("--slurm-time", type=int, default=24 * 60, help="time limit of a job in minutes")
    gpus.add_argument(
        "--gpus-per-run", type=int, default=1, help="GPUs of a SLURM job (0: CPU jobs); a pretraining asks for its own"
    )
    gpus.add_argument("--cpus-per-gpu", type=int, default=8, help="CPU cores a SLURM job asks for per GPU")
    gpus.add_argument("--max-parallel", type=int, default=32, help="SLURM jobs in flight at once")
    gpus.add_argument(
        "--slurm-dry-run",
        action="store_true",
        help="write each unfinished run's sbatch script to OUT/runs/<id>/submitit/dry-run.sbatch, submit nothing",
    )
    cost = parser.add_argument_group("cost before the launch")
    cost.add_argument(
        "--plan", action="store_true", help="print every run, what it waits for and its GPU-hours; train nothing"
    )
    cost.add_argument("--records", type=int, help="with --plan and no --data: records of the data (re-split 60/20/20)")
    cost.add_argument(
        "--ptbxl-records", type=int, help="with --plan: records of a PTB-XL-layout folder (its folds: 80/10/10)"
    )
    cost.add_argument(
        "--step-rate",
        type=float,
        help="with --plan: training records per second of one GPU (default: the measured figures of "
        "docs/performance.md per encoder family)",
    )
    parser.add_argument(
        "--config-root", default=str(DEFAULT_CONFIG_ROOT), help="folder with pretraining/ and finetuning/ hydra configs"
    )
    return parser


def _csv(text: str | None, cast: Callable[[str], Any]) -> list[Any] | None:
    """The items of a comma-separated option, each ``cast``; None when the option was not given."""
    if text is None:
        return None
    return [cast(item.strip()) for item in text.split(",") if item.strip()]


def _launch(args: argparse.Namespace) -> Launch:
    """Where the runs of ``args`` run."""
    gpus = None if args.gpus is None else () if args.gpus.strip().lower() == "none" else tuple(_csv(args.gpus, int))
    return Launch(
        executor=args.executor,
        gpus=gpus,
        runs_per_gpu=args.runs_per_gpu,
        gpus_per_pretrain=args.gpus_per_pretrain,
        jobs=JobSettings(
            cluster="slurm",
            time_min=args.slurm_time,
            partition=args.slurm_partition,
            gpus_per_run=args.gpus_per_run,
            cpus_per_gpu=args.cpus_per_gpu,
            max_parallel=args.max_parallel,
        ),
        slurm_dry_run=args.slurm_dry_run,
        fresh_processes=args.fresh_processes,
    )


def _benchmark(args: argparse.Namespace) -> int:
    """Run (or resume) the benchmark of ``args``; prints where the report is and which runs failed."""
    setup_logging()
    # the preset's settings and the folders, as both the plan and the benchmark take them
    common = {
        "data": args.data,
        "ptbxl_data": args.ptbxl_data,
        "config_root": args.config_root,
        "seeds": args.seeds,
        "strategies": _csv(args.strategies, str),
        "finetune": args.finetune or None,
        "label_fractions": _csv(args.label_fractions, float),
        "jobs": args.jobs,
        "split_seeds": args.split_seeds,
        "lead_masking": _csv(args.lead_masking, str),
        "task": args.task,
        "lead_sets": _csv(args.lead_sets, str),
        "lead_sets_other_tasks": args.lead_sets_other_tasks,
    }
    if args.plan:
        print(
            plan_cost(
                args.preset,
                records=args.records,
                ptbxl_records=args.ptbxl_records,
                step_rate=args.step_rate,
                gpus_per_pretrain=args.gpus_per_pretrain,
                **common,
            )
        )
        return 0
    if args.out is None:
        raise BenchmarkError("give --out DIR (or --plan to only print the plan)")
    try:
        outcome = run_benchmark(
            args.out,
            args.preset,
            synthetic=args.synthetic,
            report_only=args.report_only,
            rerun_changed=args.rerun_changed,
            launch=_launch(args),
            **common,
        )
    except KeyboardInterrupt:
        print("goodviews-benchmark: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if args.slurm_dry_run:
        print(
            f"{len(outcome.scripts)} sbatch scripts written to {Path(args.out) / 'runs'}/*/submitit/ (nothing submitted)"
        )
        return 0
    print(
        f"{len(outcome.results)} runs finished ({len(outcome.launched)} in this invocation); "
        f"report: {Path(args.out) / 'results.md'}"
    )
    if outcome.failed:
        print(f"{len(outcome.failed)} runs failed or were not run:", file=sys.stderr)
        for run_id, why in outcome.failed.items():
            print(f"  {run_id}: {why.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
