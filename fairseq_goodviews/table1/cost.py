"""What a benchmark costs before it runs (``goodviews-benchmark --plan``): every run, what it waits
for, and its GPU-hours from its schedule and a step rate.

A run's records are its epochs x (its share of the training records + the validation records),
plus one pass over the test records for a downstream run's scoring (identification: one pass over
its folder's train and test records); its GPU-hours are those records over the step rate of its
encoder family (records per second of one GPU, :data:`DEFAULT_RATES` unless ``--step-rate``). A
run that shares a GPU, or a pretraining spread over several, takes the same GPU-hours. The
wall time on N GPUs is bounded below by the total over N and by the longest chain of a
pretraining and its slowest downstream run; that bound is what the plan prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from omegaconf import OmegaConf

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.table1.executors import world_size
from fairseq_goodviews.table1.plan import BenchmarkError, RunSpec

#: Training records per second of one GPU by encoder family: the fairseq-hydra-train figures of
#: docs/performance.md ("the GPU check on an NVIDIA H200"; no H100 figure is recorded), SimCLR on
#: the paper's ResNet-18 and W2V+CMSC+RLM on ``w2v_paper``. Probes are counted at the same rate.
DEFAULT_RATES: Dict[str, float] = {"resnet1d": 1393.0, "wav2vec2_ecg": 373.0}
#: The shares of a benchmark's patient-wise re-split (:func:`~.data.split_for_seed`).
SPLIT_SHARES = {"train": 0.6, "valid": 0.2, "test": 0.2}
#: PTB-XL's published folds (1-8 train, 9 valid, 10 test), which a PTB-XL-layout folder keeps.
PTBXL_SHARES = {"train": 0.8, "valid": 0.1, "test": 0.1}
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RunCost:
    """One run of the plan and what it costs."""

    run_id: str
    kind: str
    depends_on: Optional[str]
    gpus: int
    epochs: int
    #: Optimizer updates (epochs x batches of batch x GPUs x update_freq records).
    updates: int
    #: Records the run reads (training epochs, validation, scoring).
    records: int
    gpu_hours: float

    @property
    def wall_hours(self) -> float:
        return self.gpu_hours / self.gpus


def split_counts(folder: Path) -> Dict[str, int]:
    """Records of each split of a prepared folder (its ``.tsv`` manifests)."""
    return {split: len(read_manifest(folder / f"{split}.tsv")[1]) for split in SPLITS}


def resplit_counts(total: int, shares: Mapping[str, float] = SPLIT_SHARES) -> Dict[str, int]:
    """Records of each split when ``total`` records are split in ``shares`` (default 60/20/20)."""
    if total < 1:
        raise BenchmarkError(f"a record count must be at least 1, not {total}")
    train, valid = round(total * shares["train"]), round(total * shares["valid"])
    return {"train": train, "valid": valid, "test": total - train - valid}


def update_freq(cfg: Any) -> int:
    """The batches a composed config accumulates per update (fairseq's default: 1)."""
    value = OmegaConf.select(cfg, "optimization.update_freq", default=None)
    return int(value[0]) if value else 1


def run_cost(spec: RunSpec, config_root: Path, counts: Mapping[str, int], rate: float) -> RunCost:
    """The cost of ``spec`` on a folder of ``counts`` records per split at ``rate`` records/s."""
    if rate <= 0:
        raise BenchmarkError(f"the step rate must be positive, not {rate}")
    if spec.stage == "none":  # identification: embeds the train (standardisation) and test records
        records = counts["train"] + counts["test"]
        return RunCost(spec.run_id, spec.kind, spec.depends_on, 1, 0, 0, records, records / rate / 3600)
    cfg = compose(config_root, spec.stage, spec.config_name, spec.overrides)
    epochs = int(cfg.optimization.max_epoch)
    fraction = float(OmegaConf.select(cfg, "task.train_fraction", default=1.0))
    train = max(1, round(counts["train"] * fraction))
    processes = world_size(spec)
    per_update = int(cfg.dataset.batch_size) * processes * update_freq(cfg)
    valid = 0 if OmegaConf.select(cfg, "dataset.disable_validation", default=False) else counts["valid"]
    scoring = 0 if spec.stage == "pretraining" else counts["test"]
    records = epochs * (train + valid) + scoring
    return RunCost(
        spec.run_id,
        spec.kind,
        spec.depends_on,
        processes,
        epochs,
        epochs * math.ceil(train / per_update),
        records,
        records / rate / 3600,
    )


def estimate(
    plan: Sequence[RunSpec],
    config_root: Path,
    counts: Mapping[str, Mapping[str, int]],
    rates: Mapping[str, float],
) -> List[RunCost]:
    """Every run's cost; ``counts``: records per split of each dataset (``spec.dataset``),
    ``rates``: records/s per encoder family."""
    costs = []
    for spec in plan:
        if spec.dataset not in counts:
            raise BenchmarkError(f"run {spec.run_id} reads the {spec.dataset} data, whose size is not known")
        if spec.encoder not in rates:
            raise BenchmarkError(f"no step rate for encoder {spec.encoder} (pass --step-rate)")
        costs.append(run_cost(spec, config_root, counts[spec.dataset], rates[spec.encoder]))
    return costs


def longest_chain(costs: Sequence[RunCost]) -> float:
    """Hours of the longest pretraining + downstream chain (a run that waits for nothing: itself)."""
    wall = {cost.run_id: cost.wall_hours for cost in costs}
    return max((wall[c.depends_on] if c.depends_on else 0.0) + c.wall_hours for c in costs) if costs else 0.0


def wall_hours_at_least(costs: Sequence[RunCost], gpus: int) -> float:
    """A lower bound of the wall time on ``gpus`` GPUs: total GPU-hours over ``gpus``, or the
    longest chain, whichever is longer."""
    return max(sum(c.gpu_hours for c in costs) / gpus, longest_chain(costs))


def plan_text(costs: Sequence[RunCost], rates: Mapping[str, float], gpu_counts: Sequence[int] = (1, 8, 32)) -> str:
    """The plan as ``--plan`` prints it: one line a run, then the totals."""
    lines = [f"{'run':<40} {'kind':<18} {'after':<32} {'gpus':>4} {'epochs':>6} {'updates':>8} {'GPU-h':>8}"]
    for c in costs:
        lines.append(
            f"{c.run_id:<40} {c.kind:<18} {c.depends_on or '-':<32} {c.gpus:>4} {c.epochs:>6} {c.updates:>8} "
            f"{c.gpu_hours:>8.2f}"
        )
    kinds: Dict[str, int] = {}
    for c in costs:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    total = sum(c.gpu_hours for c in costs)
    rate_text = ", ".join(f"{family} {rate:g}" for family, rate in sorted(rates.items()))
    lines += [
        "",
        f"{len(costs)} runs ({', '.join(f'{n} {kind}' for kind, n in kinds.items())})",
        f"step rate (records/s per GPU): {rate_text}",
        f"total: {total:.1f} GPU-hours; longest chain {longest_chain(costs):.1f} h",
        "wall time at least: "
        + ", ".join(f"{n} GPU{'s' if n > 1 else ''} {wall_hours_at_least(costs, n):.1f} h" for n in gpu_counts),
    ]
    return "\n".join(lines)
