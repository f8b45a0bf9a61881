"""The training data loader alone: records/s it delivers, beside the rate a GPU consumes them at.

The pretraining task's training dataset over ``--data`` (a packed folder reads fastest) with the
strategy and preset of a run (default: SimCLR, two augmented views per record, ``paper``: batch
64 of 5,000 samples), batched by the same DataLoader the throughput benchmark's bare loop trains
from (shuffled, persistent workers, the preset's ``dataset.num_workers`` unless ``--workers``).
After ``--warmup`` batches (the workers' start), ``--batches`` batches are timed; the rate is
records/s. With ``--gpu-records-per-s`` (a GPU's training rate, from ``training-throughput`` or
``step-rate``) the ratio loader / GPU is printed beside the goal, 1.5: a loader that keeps up with
room to spare.

With ``--versus-encodings``, the same loader reads the same training records three ways, each
from its own copy of the folder's top-level files (manifests and tables, never the records; the
folder itself is not touched) in a temporary folder under ``--out``: (a) an int16 pack cut into
shards of ``--shard-records`` (``write_pack``'s default encoding: int16 where exact), (b) a
float32 pack (``encoding="float32"``, one shard) and (c) that shard as one memory-mapped float32
array read with bare numpy, record-loading's reference (:class:`~.record_loading.MemmapReference`
in the pack's place). After ``--warmup`` untimed batches of each, ``--rounds`` rounds in which
each takes a turn of ``--batches`` timed batches (the order rotating from round to round; with
workers, the batches they prefetched while waiting are taken untimed first). Each turn's
records/s, the median of each, and the ratios int16 / float32, int16 / memmap and float32 /
memmap of the turns of one round: the median, quartiles, lowest and highest over the rounds. The folder
must hold 16-bit records at their own rate (a prepared PTB-XL, PhysioNet 2021 or MIMIC-IV-ECG),
or the int16 pack holds no int16 record: that is refused.

    goodviews-perf loader --data MANIFEST_DIR --out DIR [--preset paper] [--gpu-records-per-s R]
    goodviews-perf loader --data MANIFEST_DIR --out DIR --versus-encodings [--workers 0] [--rounds 15]
"""

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.io.packed import ShardedPack, write_pack
from fairseq_goodviews.io.packed_float32 import INDEX_SUFFIX, PACK_SUFFIX
from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.perf.record_loading import MemmapReference
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "pretraining"
TARGET_RATIO = 1.5
#: The three ways ``--versus-encodings`` reads the records, and the ratios it reports.
ENCODINGS = ("int16 pack", "float32 pack", "memmap float32")
RATIOS = (("int16 pack", "float32 pack"), ("int16 pack", "memmap float32"), ("float32 pack", "memmap float32"))
#: The goal of issue 23 for the int16 pack against a memory-mapped array.
INT16_GOAL = 0.9


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


def loader_settings(data: Path, dataset: Any, cfg: Any, batch_size: int | None, workers: int | None) -> tuple[int, int]:
    """(batch size, data-loading workers): the ones given, else the composed config's; a dataset
    smaller than one batch is refused in one line."""
    batch_size = batch_size or int(cfg.dataset.batch_size)
    workers = int(cfg.dataset.num_workers) if workers is None else workers
    if len(dataset) < batch_size:
        raise PerfSettingsError(f"{data}: {len(dataset)} training records, fewer than one batch of {batch_size}")
    return batch_size, workers


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
    batch_size, workers = loader_settings(data, dataset, cfg, batch_size, workers)
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


def copy_manifest_folder(data: Path, to: Path) -> None:
    """The regular files at the top of ``data`` (manifests, metadata tables, reports: not the
    records, whose manifests name them by absolute root, nor packs of the first format) copied
    into the new folder ``to``."""
    to.mkdir(parents=True)
    for path in data.iterdir():
        if path.is_file() and not path.name.endswith((PACK_SUFFIX, INDEX_SUFFIX)):
            shutil.copy2(path, to / path.name)


def _endless(loader: torch.utils.data.DataLoader) -> Iterator[dict[str, Any]]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def _turn(batches: Iterator[dict[str, Any]], skip: int, timed: int) -> float:
    """Seconds taken by ``timed`` batches of ``batches``, after ``skip`` untimed ones."""
    for _ in itertools.islice(batches, skip):
        pass
    start = time.perf_counter()
    for _ in itertools.islice(batches, timed):
        pass
    return time.perf_counter() - start


def _check_same_items(datasets: dict[str, Any], items: int) -> None:
    """The first ``items`` items have the same views whichever way the records are read."""
    names = list(datasets)
    for index in range(min(items, len(datasets[names[0]]))):
        expected = [view["source"] for view in datasets[names[0]][index]["views"]]
        for name in names[1:]:
            got = [view["source"] for view in datasets[name][index]["views"]]
            if len(got) != len(expected) or not all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)):
                raise AssertionError(f"the {name} gives other views of item {index} than the {names[0]}")


def versus_encodings(
    data: Path,
    work: Path,
    strategy: str = "simclr",
    preset: str = "paper",
    batch_size: int | None = None,
    sample_size: int | None = None,
    workers: int | None = None,
    warmup: int = 3,
    batches: int = 4,
    rounds: int = 15,
    shard_records: int = 100,
) -> dict[str, Any]:
    """Records/s of the training loader over ``data``'s training records read from an int16 pack, a
    float32 pack and a memory-mapped float32 array, in alternating rounds, and their ratios (the
    packs are written in a temporary folder under ``work``; ``None`` options: the preset's)."""
    if min(batches, rounds, shard_records) < 1 or warmup < 0:
        raise PerfSettingsError(
            f"--batches {batches}, --rounds {rounds}, --shard-records {shard_records}: each must be at least 1 "
            f"(and --warmup {warmup} at least 0)"
        )
    manifest = Path(data) / "train.tsv"
    n_records = len(read_manifest(manifest)[1])
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loader-encodings-", dir=work) as tmp:
        copies = {encoding: Path(tmp) / encoding for encoding in ("int16", "float32")}
        for copy in copies.values():
            copy_manifest_folder(Path(data), copy)
        packs = {
            "int16 pack": write_pack(copies["int16"] / "train.tsv", shard_bytes=None, shard_records=shard_records),
            "float32 pack": write_pack(copies["float32"] / "train.tsv", encoding="float32", shard_bytes=None),
        }
        if packs["int16 pack"]["int16_records"] == 0:
            raise PerfSettingsError(
                f"{manifest}: none of its {n_records} records can be stored as int16 (not 16-bit samples at "
                "their source's rate), so an int16 pack would be a float32 one; prepare a 16-bit source "
                "(PTB-XL, PhysioNet 2021, MIMIC-IV-ECG) without resampling"
            )
        datasets = {}
        for name, copy in zip(ENCODINGS, (copies["int16"], copies["float32"], copies["float32"]), strict=True):
            datasets[name], cfg = pretraining_dataset(copy, strategy, preset, sample_size)
            if not isinstance(datasets[name].source.pack, ShardedPack):
                raise AssertionError(f"the training dataset over {copy} did not pick up its pack")
        datasets["memmap float32"].source.pack = MemmapReference(copies["float32"] / "train.tsv")
        _check_same_items(datasets, 3)
        batch_size, workers = loader_settings(data, datasets["int16 pack"], cfg, batch_size, workers)
        loaders = {name: training_loader(dataset, batch_size, workers) for name, dataset in datasets.items()}
        # Batches a loader's workers prepared while the others took their turns, untimed.
        prefetched = workers * (next(iter(loaders.values())).prefetch_factor or 0)
        streams = {name: _endless(loader) for name, loader in loaders.items()}
        for stream in streams.values():
            _turn(stream, 0, warmup)
        rates: dict[str, list[float]] = {name: [] for name in ENCODINGS}
        for r in range(rounds):
            for k in range(len(ENCODINGS)):
                name = ENCODINGS[(r + k) % len(ENCODINGS)]
                rates[name].append(batches * batch_size / _turn(streams[name], prefetched, batches))
        del streams, loaders  # the workers stop before the packs go
    return {
        "benchmark": "loader_encodings",
        "data": str(data),
        "records": n_records,
        "strategy": strategy,
        "preset": preset,
        "batch_size": batch_size,
        "sample_size": int(cfg.task.sample_size),
        "workers": workers,
        "rounds": rounds,
        "batches_per_turn": batches,
        "packs": {name: {k: v for k, v in summary.items() if k != "data"} for name, summary in packs.items()},
        "records_per_s": {name: float(np.median(values)) for name, values in rates.items()},
        "turns_records_per_s": rates,
        "ratios": {f"{a} / {b}": _spread(np.array(rates[a]) / np.array(rates[b])) for a, b in RATIOS},
        "int16_goal": INT16_GOAL,
        "torch_threads": torch.get_num_threads(),
    }


def _spread(ratios: np.ndarray) -> dict[str, Any]:
    """Median, quartiles, lowest and highest of one ratio's values, one per round."""
    return {
        "median": float(np.median(ratios)),
        "quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
        "low": float(ratios.min()),
        "high": float(ratios.max()),
        "rounds": [float(x) for x in ratios],
    }


def format_encodings(result: dict[str, Any]) -> str:
    """The three rates, the int16 records of the int16 pack, and the ratios with their spread."""
    int16 = result["packs"]["int16 pack"]
    shards = int16["shards"]
    lines = [
        f"training loader ({result['strategy']}/{result['preset']}, batch {result['batch_size']} x "
        f"{result['sample_size']} samples, {result['workers']} workers) over {result['records']} training records; "
        f"{result['rounds']} rounds of {result['batches_per_turn']} batches a turn",
        f"int16 pack: {int16['int16_records']} of {int16['records']} records int16, {int16['float32_records']} "
        f"float32, {shards} shard{'s' if shards != 1 else ''}",
    ]
    lines += [f"  {name:<16}{rate:>10.1f} records/s (median)" for name, rate in result["records_per_s"].items()]
    for name, ratio in result["ratios"].items():
        goal = ""
        if name == "int16 pack / memmap float32":
            goal = f"  goal >= {result['int16_goal']} {'met' if ratio['median'] >= result['int16_goal'] else 'MISSED'}"
        (q1, q3), low, high = ratio["quartiles"], ratio["low"], ratio["high"]
        lines.append(
            f"  {name:<30}{ratio['median']:.3f} (quartiles {q1:.3f}-{q3:.3f}, rounds {low:.3f}-{high:.3f}){goal}"
        )
    return "\n".join(lines)
