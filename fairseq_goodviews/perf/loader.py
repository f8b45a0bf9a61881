"""The training data loader alone: records/s it delivers, beside the rate a GPU consumes them at.

The pretraining task's training dataset over ``--data`` (a packed folder reads fastest) with the
strategy and preset of a run (default: SimCLR, two augmented views per record, ``paper``: batch
64 of 5,000 samples), batched by the same DataLoader the throughput benchmark's bare loop trains
from (shuffled, persistent workers, the preset's ``dataset.num_workers`` unless ``--workers``).
After ``--warmup`` batches (the workers' start), ``--batches`` batches are timed; the rate is
records/s. With ``--gpu-records-per-s`` (a GPU's training rate, from ``training-throughput`` or
``step-rate``) the ratio loader / GPU is printed beside the goal, 1.5: a loader that keeps up with
room to spare.

    goodviews-perf loader --data MANIFEST_DIR --out DIR [--preset paper] [--gpu-records-per-s R]
"""

import time
from pathlib import Path
from typing import Any

import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "pretraining"
TARGET_RATIO = 1.5


def training_loader(
    dataset: torch.utils.data.Dataset, batch_size: int, workers: int, pin_memory: bool = False
) -> torch.utils.data.DataLoader:
    """The training batches of ``dataset``: shuffled, ``batch_size`` records (the last short one
    dropped), its collater, ``workers`` persistent worker processes."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=dataset.collater,
        drop_last=True,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )


def pretraining_dataset(data: Path, strategy: str, preset: str, sample_size: int | None = None) -> tuple[Any, Any]:
    """(the training dataset of ``strategy`` with ``preset`` over ``data``, the composed config)."""
    cfg = compose(CONFIG_DIR.parent, CONFIG_DIR.name, strategy, [f"preset={preset}"])
    OmegaConf.update(cfg, "task.data", str(data), force_add=True)
    OmegaConf.update(cfg, "task.seed", 1, force_add=True)
    if sample_size:
        OmegaConf.update(cfg, "task.sample_size", sample_size, force_add=True)
    task = EcgPretrainingTask.setup_task(merge_with_parent(EcgPretrainingConfig(), cfg.task))
    task.load_dataset("train")
    return task.dataset("train"), cfg


def run(
    data: Path,
    strategy: str = "simclr",
    preset: str = "paper",
    batch_size: int | None = None,
    sample_size: int | None = None,
    workers: int | None = None,
    warmup: int = 3,
    batches: int = 20,
    gpu_records_per_s: float | None = None,
) -> dict[str, Any]:
    """Records/s of the training loader (``None`` options: the preset's), and its ratio to ``gpu_records_per_s``."""
    dataset, cfg = pretraining_dataset(data, strategy, preset, sample_size)
    batch_size = batch_size or int(cfg.dataset.batch_size)
    workers = int(cfg.dataset.num_workers) if workers is None else workers
    if len(dataset) < batch_size:
        raise PerfSettingsError(f"{data}: {len(dataset)} training records, fewer than one batch of {batch_size}")
    loader = training_loader(dataset, batch_size, workers)
    seen, start = 0, None
    while seen < warmup + batches:
        for batch in loader:
            if batch["net_input"]["source"].shape[0] == 0:
                raise PerfSettingsError(f"{data}: an empty batch")
            seen += 1
            if seen == warmup:
                start = time.perf_counter()
            if seen == warmup + batches:
                break
    elapsed = time.perf_counter() - start if start is not None else float("nan")
    rate = batches * batch_size / elapsed
    return {
        "data": str(data),
        "strategy": strategy,
        "preset": preset,
        "batch_size": batch_size,
        "sample_size": int(cfg.task.sample_size),
        "workers": workers,
        "batches_timed": batches,
        "records_per_s": rate,
        "gpu_records_per_s": gpu_records_per_s,
        "ratio": rate / gpu_records_per_s if gpu_records_per_s else None,
        "target_ratio": TARGET_RATIO,
        "torch_threads": torch.get_num_threads(),
    }


def format_result(result: dict[str, Any]) -> str:
    """The loader's records/s, and beside a GPU rate the ratio with its goal."""
    lines = [
        f"training loader ({result['strategy']}/{result['preset']}, batch {result['batch_size']} x "
        f"{result['sample_size']} samples, {result['workers']} workers): {result['records_per_s']:.1f} records/s"
    ]
    if result["ratio"] is not None:
        lines.append(
            f"training consumes {result['gpu_records_per_s']:.1f} records/s: loader / training {result['ratio']:.2f}x "
            f"(goal >= {result['target_ratio']}x)"
        )
    return "\n".join(lines)
