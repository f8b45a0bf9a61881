"""Training speed: ``fairseq-hydra-train`` against a bare PyTorch loop, and the W2V+CMSC step.

**Throughput ratio.** Both loops train the same model (the pretraining config's ResNet with the
chosen preset) on the same dataset, strategy, batch size and number of data-loading workers
(persistent in both); each is timed over ``--updates`` updates after ``--warmup``. The two loops
run ``--rounds`` times, interleaved (fairseq, bare, then bare, fairseq, ...) so that a change of
the machine's load hits both; the ratio of each round is fairseq / bare, and the result is the
median ratio with its spread (half the range over the rounds). The goal (issue 14) is >= 0.95.

**W2V+CMSC step.** One training step (forward, loss, backward) of the ``w2v_cmsc_rlm`` config
with ``--w2v-preset``, on the same fixed batches, with the CMSC embedding pooled from the one
masked pass (``cmsc_pass=masked``, the default) and from a second, unmasked pass
(``cmsc_pass=unmasked``), interleaved step by step; the medians are compared.

On a GPU (``--device cuda``, the default when one is visible) the bare loop and the W2V step
run there, synchronised before each clock reading; ``--bf16`` runs every loop under bf16
autocast (``task.autocast_bf16=true`` for fairseq). ``--w2v-fairseq-updates`` adds the
samples/s of ``w2v_cmsc_rlm`` trained through ``fairseq-hydra-train``.

    python -m fairseq_goodviews.speed.training_throughput --data MANIFEST_DIR --out DIR
"""

import argparse
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.evaluation.evaluate import write_json

USER_DIR = Path(__file__).resolve().parents[1]  # the plugin, wherever it is installed
CONFIG_DIR = USER_DIR / "config" / "pretraining"
_INNER = re.compile(r"^\[(?P<stamp>[\d-]+ [\d:,]+)\]\[train_inner\]\[INFO\] - .*num_updates[= ](?P<n>\d+)")
TARGET_RATIO = 0.95


def _overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"preset={args.preset}",
        f"task.data={args.data}",
        f"dataset.batch_size={args.batch_size}",
        f"dataset.num_workers={args.workers}",
        f"task.sample_size={args.sample_size}",
        f"++task.autocast_bf16={str(args.bf16).lower()}",
    ]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _config(args: argparse.Namespace, name: str, preset: str) -> Any:
    """The config ``fairseq-hydra-train`` composes for ``name`` with ``preset`` (and the benchmark's data)."""
    from fairseq_goodviews.table1.plan import compose

    cfg = compose(args.config_dir.parent, args.config_dir.name, name, [f"preset={preset}"])
    OmegaConf.update(cfg, "task.data", str(args.data), force_add=True)
    OmegaConf.update(cfg, "task.seed", 1, force_add=True)
    return cfg


def fairseq_samples_per_second(
    args: argparse.Namespace, workdir: Path, config: str = "", overrides: list[str] | None = None
) -> float:
    """Samples/s between update ``warmup`` and the last one, from the trainer's own log timestamps.

    Runs ``config`` (default: ``--strategy``) with ``overrides`` (default: the benchmark's settings).
    The trainer logs only at the two updates timed and their common divisors (``log_interval`` =
    gcd(warmup, updates)), as a real run logs every few hundred updates: logging every update
    would add a host synchronisation and a log line per step that no real run pays.
    """
    hydra = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    cmd = [
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
        f"common.log_interval={math.gcd(args.warmup, args.updates)}",
        f"optimization.max_update={args.warmup + args.updates}",
        "optimization.max_epoch=0",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"fairseq-hydra-train failed:\n{log[-3000:]}")
    stamps: dict[int, datetime] = {}
    for line in log.splitlines():
        match = _INNER.match(line)
        if match:
            stamps[int(match["n"])] = datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f")
    first, last = args.warmup, args.warmup + args.updates
    if first not in stamps or last not in stamps:
        raise RuntimeError(f"updates {first} and {last} not both logged (dataset too small for the run?)")
    return args.updates * args.batch_size / (stamps[last] - stamps[first]).total_seconds()


def bare_samples_per_second(args: argparse.Namespace) -> float:
    """The same model, data, loss and optimiser in a plain loop over a torch DataLoader."""
    from fairseq.dataclass.utils import merge_with_parent

    from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce
    from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
    from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

    cfg = _config(args, args.strategy, args.preset)
    OmegaConf.update(cfg, "task.sample_size", args.sample_size, force_add=True)
    task = EcgPretrainingTask(merge_with_parent(EcgPretrainingConfig(), cfg.task))
    task.load_dataset("train")
    dataset = task.dataset("train")
    device = torch.device(args.device)
    torch.manual_seed(1)
    model = Resnet1dModel.build_model(merge_with_parent(Resnet1dConfig(), cfg.model)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.optimization.lr[0]))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=dataset.collater,
        drop_last=True,
        persistent_workers=args.workers > 0,
        pin_memory=device.type == "cuda",
    )
    temperature = float(cfg.criterion.temperature)
    updates, start = 0, None
    while updates < args.warmup + args.updates:
        for batch in loader:
            source = batch["net_input"]["source"].to(device, non_blocking=True)
            meta = {key: value.to(device) for key, value in batch["views_meta"].items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                embeddings = model(source)["embedding"]
                positive = task.positive_mask(meta)
                loss, n_positive = multi_positive_info_nce(embeddings, embeddings, positive, 0, temperature)
            optimizer.zero_grad()
            (loss.sum() / max(int((n_positive > 0).sum()), 1)).backward()
            optimizer.step()
            updates += 1
            if updates == args.warmup:
                _synchronize(device)
                start = time.perf_counter()
            if updates == args.warmup + args.updates:
                break
    _synchronize(device)
    return args.updates * args.batch_size / (time.perf_counter() - start)


def throughput_rounds(args: argparse.Namespace) -> dict[str, Any]:
    """``--rounds`` interleaved measurements of both loops; the median ratio and its spread."""
    rounds = []
    for index in range(args.rounds):
        order = ("fairseq", "bare") if index % 2 == 0 else ("bare", "fairseq")
        rates = {}
        for loop in order:
            if loop == "fairseq":
                with tempfile.TemporaryDirectory() as workdir:
                    rates[loop] = fairseq_samples_per_second(args, Path(workdir))
            else:
                rates[loop] = bare_samples_per_second(args)
        rounds.append({**rates, "ratio": rates["fairseq"] / rates["bare"]})
        print(
            f"  round {index + 1}: fairseq {rates['fairseq']:.1f}, bare {rates['bare']:.1f} samples/s, "
            f"ratio {rounds[-1]['ratio']:.3f}",
            flush=True,
        )
    ratios = [r["ratio"] for r in rounds]
    return {
        "rounds": rounds,
        "fairseq_samples_per_s": statistics.median(r["fairseq"] for r in rounds),
        "bare_pytorch_samples_per_s": statistics.median(r["bare"] for r in rounds),
        "ratio": statistics.median(ratios),
        "ratio_spread": (max(ratios) - min(ratios)) / 2,
        "target_ratio": TARGET_RATIO,
    }


def w2v_step_seconds(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds of one W2V+CMSC training step per ``cmsc_pass``, interleaved on the same batches."""
    from fairseq.dataclass.utils import merge_with_parent

    from fairseq_goodviews.criterions.w2v_cmsc import Wav2Vec2CmscCriterion
    from fairseq_goodviews.models.wav2vec2_ecg import Wav2Vec2EcgConfig, Wav2Vec2EcgModel
    from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

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
            _synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                loss, _, _ = criterion(model, batch)
            loss.backward()
            _synchronize(device)
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            if step >= args.w2v_warmup:
                times[variant].append(elapsed)
    return {variant: statistics.median(values) for variant, values in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="prepared manifest folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--config-dir", type=Path, default=CONFIG_DIR, help="the pretraining configs (default: the plugin's)"
    )
    parser.add_argument("--strategy", default="simclr")
    parser.add_argument("--preset", default="cpu_small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample-size", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=1, help="data-loading worker processes (both loops)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--updates", type=int, default=100, help="timed updates per loop and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of both loops")
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
    args = parser.parse_args(argv)
    quiet_fairseq_logging()
    args.data, args.config_dir = args.data.resolve(), args.config_dir.resolve()
    result: dict[str, Any] = {
        "settings": {k: str(v) for k, v in vars(args).items() if k != "out"},
        "torch_threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
    }
    if args.w2v_steps > 0:
        step = w2v_step_seconds(args)
        result["w2v_cmsc_step_seconds"] = {**step, "unmasked_over_masked": step["unmasked"] / step["masked"]}
        print(f"{'W2V+CMSC step (' + args.w2v_preset + ')':<36}{'ms/step':>10}")
        print(f"{'  one masked pass (default)':<36}{1e3 * step['masked']:>10.1f}")
        print(f"{'  + unmasked second pass':<36}{1e3 * step['unmasked']:>10.1f}")
        print(f"{'  cost of the second pass':<36}{step['unmasked'] / step['masked']:>9.2f}x")
    if args.w2v_fairseq_updates > 0:
        w2v_args = argparse.Namespace(**{**vars(args), "updates": args.w2v_fairseq_updates})
        overrides = [
            f"preset={args.w2v_preset}",
            f"task.data={args.data}",
            f"dataset.batch_size={args.w2v_batch_size}",
            f"dataset.num_workers={args.workers}",
            f"++task.autocast_bf16={str(args.bf16).lower()}",
        ]
        with tempfile.TemporaryDirectory() as workdir:
            rate = fairseq_samples_per_second(w2v_args, Path(workdir), "w2v_cmsc_rlm", overrides)
        result["w2v_cmsc_rlm_fairseq_samples_per_s"] = rate
        print(f"{'W2V+CMSC+RLM fairseq-hydra-train':<36}{rate:>10.1f} samples/s")
    if not args.skip_throughput:
        print(f"training throughput, {args.strategy}/{args.preset}, {args.rounds} interleaved rounds:", flush=True)
        throughput = throughput_rounds(args)
        result.update(throughput)
        print(f"{'loop':<28}{'samples/s':>12}")
        print(f"{'fairseq-hydra-train':<28}{throughput['fairseq_samples_per_s']:>12.1f}")
        print(f"{'bare PyTorch':<28}{throughput['bare_pytorch_samples_per_s']:>12.1f}")
        print(
            f"{'ratio (goal >= ' + str(TARGET_RATIO) + ')':<28}{throughput['ratio']:>12.3f} "
            f"+- {throughput['ratio_spread']:.3f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "training_throughput.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
