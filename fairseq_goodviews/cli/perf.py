"""``goodviews-perf``: the speed and memory benchmarks of :mod:`fairseq_goodviews.perf`, one subcommand each.

Each measures against its reference in the same run, prints the figures side by side and writes
them as JSON under ``--out`` (the Table 1 experiment is ``goodviews-benchmark``):

    goodviews-perf record-loading --out DIR [--data MANIFEST_DIR] [--records 2000]
    goodviews-perf preprocessing --out DIR [--records 60] [--repeats 3]
    goodviews-perf corpus-scale --out DIR [--subjects 50000] [--array-jobs 2] [--project 800000]
    goodviews-perf partner-index --out DIR [--records 1000000] [--threads 2] [--distribution normal]
    goodviews-perf augmentation --out DIR [--repeats 300]
    goodviews-perf positives-at-scale --out DIR [--views 8192 16384] [--world 64]
    goodviews-perf optimizer-step --out DIR [--preset paper]
    goodviews-perf training-throughput --data MANIFEST_DIR --out DIR
    goodviews-perf flops --out DIR [--preset paper] [--w2v-preset w2v_paper]
    goodviews-perf step-rate --data MANIFEST_DIR --out DIR [--batch-sizes 64 256 1024] [--compile]
    goodviews-perf loader --data MANIFEST_DIR --out DIR [--gpu-records-per-s R] [--versus-encodings]

``BENCHMARK --help`` describes one benchmark and lists its options.
"""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.io.atomic import write_json
from fairseq_goodviews.perf import (
    PerfSettingsError,
    augmentation,
    corpus_scale,
    flops,
    loader,
    optimizer_step,
    partner_index,
    positives_at_scale,
    preprocessing,
    record_loading,
    step_rate,
    training_throughput,
)
from fairseq_goodviews.strategies.attributes import AttributesConfig
from fairseq_goodviews.table1 import run_start

PROG = "goodviews-perf"
Subcommands = argparse._SubParsersAction


def _print(text: str) -> None:
    """Print as soon as measured (the output may be a pipe)."""
    print(text, flush=True)


def _write(out: Path, name: str, result: dict[str, Any]) -> None:
    """``result`` as ``out/name``, the path printed."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / name, result)
    _print(f"wrote {out / name}")


def _report(out: Path, benchmark: ModuleType, result: dict[str, Any]) -> None:
    """Print ``benchmark.format_result(result)`` and write the result as ``out/<benchmark's module name>.json``."""
    _print(benchmark.format_result(result))
    _write(out, f"{benchmark.__name__.rsplit('.', 1)[-1]}.json", result)


def _options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options ``names`` of ``args``, by name, as a benchmark's keyword arguments."""
    return {name: getattr(args, name) for name in names}


def _subcommand(
    subcommands: Subcommands, name: str, module: ModuleType, body: Callable[[argparse.Namespace], None]
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, described by ``module``'s docstring, running ``body``."""
    doc = module.__doc__ or name
    parser = subcommands.add_parser(
        name, help=doc.split("\n")[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(body=body)
    return parser


def _record_loading(args: argparse.Namespace) -> None:
    names = (
        "data",
        "split",
        "records",
        "samples",
        "sample_size",
        "rounds",
        "chunk",
        "seed",
        "shard_records",
        "project",
    )
    _report(args.out, record_loading, record_loading.run(work=args.out / "work", **_options(args, *names)))


def _add_record_loading(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "record-loading", record_loading, _record_loading)
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON result and work files")
    parser.add_argument("--data", type=Path, help="manifest folder to read (default: write synthetic records)")
    parser.add_argument("--split", default="train", help="split of --data to read")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=5000, help="length of synthetic records")
    parser.add_argument("--sample-size", type=int, default=5000, help="crop length for EcgRecordSource.load")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=25, help="records read by one reader before the next one's turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-records", type=int, default=500, help="records per shard of the int16 pack")
    parser.add_argument(
        "--project", type=int, default=800_000, help="records the disk and writing time are projected to"
    )


def _preprocessing(args: argparse.Namespace) -> None:
    _report(args.out, preprocessing, preprocessing.run(records=args.records, seed=args.seed, repeats=args.repeats))


def _add_preprocessing(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "preprocessing", preprocessing, _preprocessing)
    parser.add_argument("--out", type=Path, required=True, help="folder for preprocessing.json")
    parser.add_argument("--records", type=int, default=60, help="synthetic records per preparer (default: 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every timing (median)")


def _corpus_scale(args: argparse.Namespace) -> None:
    options = _options(args, "subjects", "array_jobs", "workers", "seed", "node_cores", "keep")
    result = corpus_scale.run(work=args.out / "corpus_scale_work", project_records=args.project, **options)
    _report(args.out, corpus_scale, result)


def _add_corpus_scale(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "corpus-scale", corpus_scale, _corpus_scale)
    parser.add_argument("--out", type=Path, required=True, help="folder for corpus_scale.json and the work folder")
    parser.add_argument("--subjects", type=int, default=50_000, help="synthetic subjects, about two studies each")
    parser.add_argument("--array-jobs", type=int, default=2, help="shard jobs run at once (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="workers of each shard job (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--project", type=int, default=800_000, help="records to project to (MIMIC-IV-ECG's size)")
    parser.add_argument("--node-cores", type=int, default=16, help="cores of a node in the projection")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the source, records and packs)")


def _partner_index(args: argparse.Namespace) -> None:
    index = _options(args, "radius", "max_candidates", "exact_below", "cell_size", "probes", "threads")
    vectors = _options(args, "records", "distribution", "diagnostics", "dim", "check", "seed")
    sklearn = {
        "sklearn_algorithms": tuple(args.sklearn_algorithm) if args.versus_sklearn else (),
        **_options(args, "sklearn_anchors", "sklearn_max_output_mib", "sklearn_max_query_s"),
    }
    _report(args.out, partner_index, partner_index.run(**vectors, **index, **sklearn))


def _add_partner_index(subcommands: Subcommands) -> None:
    defaults = AttributesConfig()
    diagnostics = partner_index.default_diagnostics()
    parser = _subcommand(subcommands, "partner-index", partner_index, _partner_index)
    parser.add_argument("--out", required=True, type=Path, help="folder for partner_index.json")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--distribution",
        choices=("chapman", "normal"),
        default="chapman" if diagnostics else "normal",
        help="real Chapman attribute rows (default when the file exists) or standard-normal vectors",
    )
    parser.add_argument("--diagnostics", type=Path, default=diagnostics, help="Chapman Diagnostics.xlsx")
    parser.add_argument(
        "--dim", type=int, default=10, help="normal: vector dimension (default: the attribute vector's)"
    )
    parser.add_argument("--radius", type=float, default=defaults.radius)
    parser.add_argument("--max-candidates", type=int, default=defaults.max_candidates)
    parser.add_argument("--exact-below", type=int, default=defaults.exact_below)
    parser.add_argument("--cell-size", type=int, default=defaults.index_cell_size)
    parser.add_argument("--probes", type=int, default=defaults.index_probes)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--check", type=int, default=500, help="anchors compared with every record exactly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--versus-sklearn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time scikit-learn's exact radius search of the same vectors beside the index (default: on)",
    )
    parser.add_argument(
        "--sklearn-algorithm",
        nargs="+",
        choices=partner_index.SKLEARN_ALGORITHMS,
        default=list(partner_index.SKLEARN_ALGORITHMS),
        help="NearestNeighbors algorithms to compare (default: both)",
    )
    parser.add_argument(
        "--sklearn-anchors", type=int, default=2000, help="random anchors both searches answer for (the same sample)"
    )
    parser.add_argument(
        "--sklearn-max-output-mib",
        type=float,
        default=1024.0,
        help="run sklearn's queries of every record only when their output, estimated from the sample, is smaller",
    )
    parser.add_argument(
        "--sklearn-max-query-s",
        type=float,
        default=120.0,
        help="run sklearn's kneighbors of every record only when the sample's time scaled to it is shorter",
    )


def _augmentation(args: argparse.Namespace) -> None:
    _report(args.out, augmentation, augmentation.run(args.repeats, args.record))


def _add_augmentation(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "augmentation", augmentation, _augmentation)
    parser.add_argument("--out", required=True, type=Path, help="folder for augmentation.json")
    parser.add_argument("--repeats", type=int, default=300, help="timed views per transform")
    parser.add_argument(
        "--record", type=Path, default=augmentation.default_record(), help="WFDB header of a real 12-lead record"
    )


def _positives_at_scale(args: argparse.Namespace) -> None:
    if args.one:  # one measurement, in the fresh process positives_at_scale.run started for it
        strategy_name, views, variant = args.one
        measured = positives_at_scale.measure(
            strategy_name, int(views), args.world, variant, args.repeats, args.diagnostics
        )
        print(json.dumps(measured))
        return
    if args.out is None:
        raise PerfSettingsError("--out is required")
    options = _options(args, "strategies", "views", "world", "repeats", "diagnostics")
    result = positives_at_scale.run(**options, report=_print)
    _write(args.out, "positives_at_scale.json", result)


def _add_positives_at_scale(subcommands: Subcommands) -> None:
    strategies = positives_at_scale.STRATEGIES
    parser = _subcommand(subcommands, "positives-at-scale", positives_at_scale, _positives_at_scale)
    parser.add_argument("--out", type=Path, help="folder for positives_at_scale.json")
    parser.add_argument("--views", type=int, nargs="+", default=[8192, 16384], help="global views N")
    parser.add_argument("--world", type=int, default=64, help="simulated workers (the local batch is N / world)")
    parser.add_argument("--strategies", nargs="+", default=list(strategies), choices=strategies)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per measurement (median)")
    parser.add_argument(
        "--diagnostics",
        type=Path,
        default=partner_index.default_diagnostics(),
        help="Chapman Diagnostics.xlsx for real attribute vectors (default: the shared data's, if set)",
    )
    parser.add_argument("--one", nargs=3, metavar=("STRATEGY", "N", "VARIANT"), help=argparse.SUPPRESS)


def _optimizer_step(args: argparse.Namespace) -> None:
    _report(args.out, optimizer_step, optimizer_step.run(args.preset, args.repeats))


def _add_optimizer_step(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "optimizer-step", optimizer_step, _optimizer_step)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--preset", default="paper", help="the pretraining preset whose ResNet's parameters are used")
    parser.add_argument("--repeats", type=int, default=50)


def _training_throughput(args: argparse.Namespace) -> None:
    names = [field.name for field in fields(training_throughput.ThroughputArgs)]
    settings = training_throughput.ThroughputArgs(**_options(args, *names))
    if args.bare_child:  # the bare loop, in the process training_throughput.run started for it
        training_throughput.bare_loop(settings)
        return
    result = training_throughput.run(settings, _print)
    name = "training_throughput" + ("" if args.versus == "bare" else "_vs_" + args.versus.replace("-", "_"))
    _write(args.out, f"{name}.json", result)


def _add_training_throughput(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "training-throughput", training_throughput, _training_throughput)
    parser.add_argument("--data", required=True, type=Path, help="prepared manifest folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=training_throughput.CONFIG_DIR,
        help="the pretraining configs (default: the plugin's)",
    )
    parser.add_argument("--strategy", default="simclr")
    parser.add_argument("--preset", default="cpu_small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample-size", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=1, help="data-loading worker processes (both loops)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed updates of each loop before the slices")
    parser.add_argument("--slices", type=int, default=60, help="time slices of each loop, alternating")
    parser.add_argument("--slice-seconds", type=float, default=2.0, help="length of one time slice")
    parser.add_argument("--blocks", type=int, default=10, help="blocks of consecutive slices for the spread")
    parser.add_argument("--log-every", type=int, default=5, help="updates between two logged updates (both loops)")
    parser.add_argument("--warmup-timeout", type=float, default=900.0, help="seconds allowed for start-up and warm-up")
    parser.add_argument(
        "--versus",
        choices=sorted(training_throughput.BASELINES),
        default="bare",
        help="the throughput baseline: the bare PyTorch loop, or fairseq-hydra-train with glibc's malloc defaults",
    )
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--w2v-preset", default="w2v_cpu_small")
    parser.add_argument("--w2v-batch-size", type=int, default=8)
    parser.add_argument("--w2v-warmup", type=int, default=2)
    parser.add_argument("--w2v-steps", type=int, default=8, help="timed steps per cmsc_pass (0: skip)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the W2V+CMSC step")
    parser.add_argument(
        "--w2v-fairseq-updates",
        type=int,
        default=0,
        help="also train w2v_cmsc_rlm (--w2v-preset) this many timed updates through fairseq-hydra-train",
    )
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="device of the bare loop and the W2V+CMSC step (fairseq-hydra-train picks its own)",
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in every loop (task.autocast_bf16=true)")


def _flops(args: argparse.Namespace) -> None:
    _report(args.out, flops, flops.run(args.strategy, args.preset, args.w2v_preset, args.sample_size))


def _add_flops(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "flops", flops, _flops)
    parser.add_argument("--out", required=True, type=Path, help="folder for flops.json")
    parser.add_argument("--strategy", default="simclr", help="the ResNet strategy's pretraining config")
    parser.add_argument("--preset", default="paper", help="its preset")
    parser.add_argument("--sample-size", type=int, help="crop length (default: the preset's)")
    parser.add_argument("--w2v-preset", default="w2v_paper", help="the preset of w2v_cmsc_rlm")


def _step_rate(args: argparse.Namespace) -> None:
    options = _options(args, "data", "config", "preset", "batch_sizes", "device", "bf16", "warmup", "steps")
    result = step_rate.run(
        **options,
        cudnn_benchmark=args.cudnn_benchmark,
        compile_encoder=args.compile,
        sample_size=args.sample_size,
        report=_print,
    )
    suffix = "_compiled" if args.compile else ""
    _write(args.out, f"step_rate_{args.config}_{args.preset}{suffix}.json", result)


def _add_step_rate(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "step-rate", step_rate, _step_rate)
    parser.add_argument("--data", required=True, type=Path, help="prepared manifest folder (the batches' records)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--config", default="simclr", help="pretraining config (w2v_cmsc_rlm: W2V+CMSC+RLM)")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024], help="records per step")
    parser.add_argument("--sample-size", type=int, help="crop length (default: the preset's)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN search, compilation)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per batch size")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda when visible"
    )
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="task.cudnn_benchmark=true")
    parser.add_argument("--compile", action="store_true", help="model.compile_encoder=true (torch.compile)")


def _loader(args: argparse.Namespace) -> None:
    options = _options(args, "data", "strategy", "preset", "batch_size", "sample_size", "workers", "warmup")
    if args.versus_encodings:
        if args.gpu_records_per_s is not None:
            raise PerfSettingsError("--gpu-records-per-s and --versus-encodings: one loader rate or three, not both")
        batches = args.batches or 4
        more = _options(args, "rounds", "shard_records")
        result = loader.versus_encodings(**options, work=args.out, batches=batches, **more)
        _print(loader.format_encodings(result))
        _write(args.out, "loader_encodings.json", result)
        return
    _report(
        args.out, loader, loader.run(**options, batches=args.batches or 20, gpu_records_per_s=args.gpu_records_per_s)
    )


def _add_loader(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "loader", loader, _loader)
    parser.add_argument("--data", required=True, type=Path, help="prepared (packed) manifest folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for loader.json (loader_encodings.json)")
    parser.add_argument("--strategy", default="simclr")
    parser.add_argument("--preset", default="paper", help="batch, crop and workers of this preset")
    parser.add_argument("--batch-size", type=int, help="records per batch (default: the preset's)")
    parser.add_argument("--sample-size", type=int, help="crop length (default: the preset's)")
    parser.add_argument("--workers", type=int, help="data-loading worker processes (default: the preset's)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (the workers' start)")
    parser.add_argument(
        "--batches", type=int, help="timed batches (default: 20; with --versus-encodings, 4 in each turn)"
    )
    parser.add_argument("--gpu-records-per-s", type=float, help="a GPU's training rate to compare with (goal 1.5x)")
    parser.add_argument(
        "--versus-encodings",
        action="store_true",
        help="the training records read from an int16 pack, a float32 pack and a memory-mapped float32 array, "
        "taking turns (writes loader_encodings.json)",
    )
    parser.add_argument("--rounds", type=int, default=15, help="with --versus-encodings: turns of each")
    parser.add_argument(
        "--shard-records", type=int, default=100, help="with --versus-encodings: records per shard of the int16 pack"
    )


def _run_start(args: argparse.Namespace) -> None:
    options = _options(args, "data", "config", "rounds", "epochs")
    _report(args.out, run_start, run_start.run(work=args.out / "run_start_work", **options, log=_print))


def _add_run_start(subcommands: Subcommands) -> None:
    parser = _subcommand(subcommands, "run-start", run_start, _run_start)
    parser.add_argument("--data", required=True, type=Path, help="prepared manifest folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for run_start.json and the runs")
    parser.add_argument("--config", default="simclr", help="the pretraining config to run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs each way, taking turns")
    parser.add_argument("--epochs", type=int, default=1)


def build_parser() -> argparse.ArgumentParser:
    """``goodviews-perf`` and its subcommands, one per benchmark."""
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    subcommands = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for add in (
        _add_record_loading,
        _add_preprocessing,
        _add_corpus_scale,
        _add_partner_index,
        _add_augmentation,
        _add_positives_at_scale,
        _add_optimizer_step,
        _add_training_throughput,
        _add_flops,
        _add_step_rate,
        _add_loader,
        _add_run_start,
    ):
        add(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark ``argv`` names; 2 (with ``goodviews-perf: error: ...``) when its settings are wrong."""
    quiet_fairseq_logging()
    return run_command(build_parser(), lambda args: args.body(args), argv)


if __name__ == "__main__":
    sys.exit(main())
