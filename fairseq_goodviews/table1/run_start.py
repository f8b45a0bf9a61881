"""Starting a CPU run: ``fairseq-hydra-train`` as a process of its own against the same run forked
from the fork server that has fairseq imported (:mod:`~.preloaded`, the benchmark's way on a CPU).

The same short pretraining (``--config``, ``preset=cpu_small schedule=tiny``: one epoch of 1 s
views, no validation) on ``--data`` runs ``--rounds`` times each way, the two ways taking turns,
one thread each. Printed side by side: the median wall time from launch to exit of each way, the
seconds a forked run saves and the ratio of the two; the fork server's own start (paid once by a
benchmark) is the first forked run's extra time, untimed in the medians; and whether the two
ways wrote the same checkpoint, bit for bit.

    goodviews-perf run-start --data MANIFEST_DIR --out DIR
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from fairseq_goodviews.config import CONFIG_ROOT
from fairseq_goodviews.table1.preloaded import PreloadedRun


def _command(config: str, data: Path, folder: Path, epochs: int) -> list[str]:
    exe = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    return [
        exe,
        "--config-dir",
        str(CONFIG_ROOT / "pretraining"),
        "--config-name",
        config,
        f"task.data={data}",
        "preset=cpu_small",
        "schedule=tiny",
        f"optimization.max_epoch={epochs}",
        "common.seed=1",
        f"checkpoint.save_dir={folder / 'ckpt'}",
        f"hydra.run.dir={folder / 'hydra'}",
    ]


def _timed_run(command: list[str], folder: Path, env: dict[str, str], forked: bool) -> float:
    """Wall seconds of one run from launch to exit, in a new ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = folder / "train.log"
    start = time.perf_counter()
    if forked:
        code, _ = PreloadedRun(command, folder, env, log).wait()
    else:
        with open(log, "w") as handle:
            code = subprocess.run(command, cwd=folder, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"run-start: the run in {folder} failed (exit {code}); log {log}")
    return seconds


def _same_checkpoint(first: Path, second: Path) -> bool:
    a = torch.load(first / "ckpt" / "checkpoint_last.pt", weights_only=True)["model"]
    b = torch.load(second / "ckpt" / "checkpoint_last.pt", weights_only=True)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def run(
    data: Path, work: Path, config: str = "simclr", rounds: int = 3, epochs: int = 1, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Time ``rounds`` runs each way (see the module docstring); the result as JSON-ready values."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = functools.partial(_command, config, Path(data).resolve(), epochs=epochs)
    first_forked = _timed_run(command(work / "forked"), work / "forked", env, forked=True)
    times: dict[str, list[float]] = {"own process": [], "forked": []}
    for i in range(rounds):
        for way, forked in (("own process", False), ("forked", True)):
            folder = work / way.replace(" ", "_")
            times[way].append(_timed_run(command(folder), folder, env, forked))
            log(f"round {i + 1}/{rounds}: {way} {times[way][-1]:.1f} s")
    own, forked = (statistics.median(times[way]) for way in ("own process", "forked"))
    return {
        "config": config,
        "data": str(data),
        "epochs": epochs,
        "rounds": rounds,
        "seconds": times,
        "median_s": {"own process": own, "forked": forked},
        "saved_s": own - forked,
        "forked_over_own": forked / own,
        "fork_server_start_s": first_forked - forked,
        "same_checkpoint": _same_checkpoint(work / "own_process", work / "forked"),
    }


def format_result(result: dict[str, Any]) -> str:
    median = result["median_s"]
    return "\n".join(
        [
            f"run start ({result['config']}, {result['epochs']} epoch(s), median of {result['rounds']} runs each way):",
            f"  fairseq-hydra-train, own process   {median['own process']:7.1f} s",
            f"  forked from the preloaded server   {median['forked']:7.1f} s",
            f"  saved per run {result['saved_s']:.1f} s; forked / own process {result['forked_over_own']:.2f}",
            f"  the fork server's own start, once: {result['fork_server_start_s']:.1f} s",
            f"  same checkpoint, bit for bit: {'yes' if result['same_checkpoint'] else 'NO'}",
        ]
    )
