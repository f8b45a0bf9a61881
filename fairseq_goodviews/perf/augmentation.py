"""Cost of one augmented view: every transform on a 5,000-sample 12-lead float32 view.

Times each transform of :mod:`fairseq_goodviews.strategies.augment` (and random lead masking, and the
composition of the six independent transforms as one view with every probability at 1) on a real record when
``--record`` (or the shared data's PhysioNet 2021 Chapman record) exists, else on random data.
Reports, per view, the median wall time and the median CPU time of this thread (the CPU time
depends much less on other processes of a shared machine) beside the target of 0.5 ms, in one
process with one torch thread, as a data-loading worker runs.

    goodviews-perf augmentation --out DIR [--repeats 300]
"""

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import wfdb

from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.strategies import augment as aug

TARGET_MS = 0.5
LEADS, SAMPLES = 12, 5000
SHARED_RECORD = "real/physionet2021/training/chapman_shaoxing/g1/JS01048.hea"


def default_record() -> Path | None:
    """The shared data's PhysioNet 2021 Chapman record, if ``$GOODVIEWS_SHARED_DATA`` has it."""
    shared = os.environ.get("GOODVIEWS_SHARED_DATA")
    path = Path(shared) / SHARED_RECORD if shared else None
    return path if path is not None and path.is_file() else None


def view(record: Path | None) -> np.ndarray:
    """[12, 5000] float32: the record's first 5,000 samples in mV, or N(0, 1) samples."""
    if record is None:
        return np.random.default_rng(0).normal(size=(LEADS, SAMPLES)).astype(np.float32)

    signal = wfdb.rdrecord(str(record.with_suffix(""))).p_signal
    if signal.shape[0] < SAMPLES or signal.shape[1] != LEADS:
        raise PerfSettingsError(f"{record}: need {LEADS} leads x {SAMPLES} samples, got {signal.shape}")
    return np.ascontiguousarray(signal[:SAMPLES].T, dtype=np.float32)


def transforms(x: np.ndarray, rng: np.random.Generator) -> dict[str, Callable[[], np.ndarray]]:
    """Each timed transform of ``x`` as a call, with the default settings (the composition: every probability 1)."""
    cfg = aug.AugmentationConfig()
    every = aug.AugmentationConfig(
        jitter_prob=1, scaling_prob=1, flip_prob=1, permute_prob=1, time_warp_prob=1, magnitude_warp_prob=1
    )
    present = np.ones(LEADS, dtype=bool)
    return {
        "jitter": lambda: aug.jitter(x, rng, cfg.jitter_sigma),
        "scaling": lambda: aug.scaling(x, rng, cfg.scaling_sigma),
        "flip": lambda: aug.flip(x, rng),
        "permute_leads": lambda: aug.permute_leads(x, rng, present),
        "rotation": lambda: aug.rotate(x, rng, present),
        "time_warp": lambda: aug.time_warp(x, rng, cfg.time_warp_sigma, cfg.warp_knots),
        "magnitude_warp": lambda: aug.magnitude_warp(x, rng, cfg.magnitude_warp_sigma, cfg.warp_knots),
        "random_lead_mask": lambda: aug.random_lead_mask(x, present, 0.5, rng)[0],
        "all_six_composed": lambda: aug.augment(x, rng, every, present),
    }


def run(repeats: int, record: Path | None) -> dict[str, Any]:
    """Median wall and CPU time per view of every transform, ``repeats`` views each, with one torch thread.

    The process's torch thread count is set back afterwards.
    """
    x = view(record)
    rng = np.random.default_rng(0)
    rows = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, transform in transforms(x, rng).items():
            out = transform()
            if out.dtype != np.float32 or out.shape != x.shape:
                raise RuntimeError(f"{name} returned {out.dtype} {out.shape}, expected float32 {x.shape}")
            wall, cpu = [], []
            for _ in range(repeats):
                start_wall, start_cpu = time.perf_counter(), time.thread_time()
                transform()
                wall.append(time.perf_counter() - start_wall)
                cpu.append(time.thread_time() - start_cpu)
            rows[name] = {"wall_ms": 1e3 * statistics.median(wall), "cpu_ms": 1e3 * statistics.median(cpu)}
    finally:
        torch.set_num_threads(threads)
    return {
        "per_view": rows,
        "target_ms": TARGET_MS,
        "view": f"{LEADS} leads x {SAMPLES} samples float32",
        "data": f"real: {record}" if record else "synthetic: N(0, 1)",
        "repeats": repeats,
    }


def format_result(result: dict[str, Any]) -> str:
    """The per-view times beside the target; the composition of all six has no target of its own."""
    lines = [f"{'transform':<20}{'wall ms/view':>14}{'CPU ms/view':>13}   target < {result['target_ms']} ms"]
    for name, row in result["per_view"].items():
        verdict = "ok" if name == "all_six_composed" or row["cpu_ms"] < result["target_ms"] else "OVER"
        lines.append(f"{name:<20}{row['wall_ms']:>14.3f}{row['cpu_ms']:>13.3f}   {verdict}")
    return "\n".join(lines)
