"""CPU runs forked from the fork server that has fairseq imported train as fairseq-hydra-train does."""

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from fairseq_goodviews.table1 import run_start
from fairseq_goodviews.table1.preloaded import PreloadedRun
from tests.conftest import PRETRAIN_CONFIGS

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(data: Path, save_dir: Path, *extra: str) -> list[str]:
    exe = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    return [
        exe,
        "--config-dir",
        str(PRETRAIN_CONFIGS),
        "--config-name",
        "simclr",
        f"task.data={data}",
        "preset=cpu_small",
        "schedule=tiny",
        "common.seed=3",
        f"checkpoint.save_dir={save_dir / 'ckpt'}",
        f"hydra.run.dir={save_dir / 'hydra'}",
        *extra,
    ]


@pytest.mark.slow
def test_a_forked_run_writes_the_checkpoint_a_fairseq_hydra_train_process_writes(tiny_dataset, tmp_path):
    own, forked = tmp_path / "own", tmp_path / "forked"
    for folder in (own, forked):
        folder.mkdir()
    subprocess.run(_command(tiny_dataset, own), cwd=own, env=ENV, check=True, capture_output=True)
    run = PreloadedRun(_command(tiny_dataset, forked), forked, ENV, forked / "train.log")
    code, cpu_time = run.wait()
    log = (forked / "train.log").read_text()
    assert code == 0, log[-3000:]
    assert cpu_time > 0
    assert "done training" in log
    expected = torch.load(own / "ckpt" / "checkpoint_last.pt", weights_only=True)["model"]
    got = torch.load(forked / "ckpt" / "checkpoint_last.pt", weights_only=True)["model"]
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)


def test_a_failing_forked_run_exits_non_zero_with_its_error_in_its_log(tmp_path):
    run = PreloadedRun(_command(tmp_path / "no_such_folder", tmp_path), tmp_path, ENV, tmp_path / "train.log")
    code, _ = run.wait()
    assert code != 0
    assert "no_such_folder" in (tmp_path / "train.log").read_text()


def test_runs_ending_at_once_in_several_threads_each_get_their_own_exit_code(tmp_path):
    # The runner waits for its runs in threads while others start: multiprocessing's start() reads
    # the exit code of every finished run too, and two readers at once once left one run with 255.
    def failing_runs(thread: int) -> list[int]:
        codes = []
        for k in range(10):
            command = ["fairseq-hydra-train", "--config-dir", str(tmp_path / "none"), "--config-name", "none"]
            codes.append(PreloadedRun(command, tmp_path, ENV, tmp_path / f"{thread}_{k}.log").wait()[0])
        return codes

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = [code for part in pool.map(failing_runs, range(6)) for code in part]
    assert codes == [1] * 60


def test_terminate_stops_a_forked_run(tiny_dataset, tmp_path):
    run = PreloadedRun(
        _command(tiny_dataset, tmp_path, "optimization.max_epoch=1000"), tmp_path, ENV, tmp_path / "train.log"
    )
    log = tmp_path / "train.log"
    deadline = time.monotonic() + 120
    while "begin training epoch" not in (log.read_text() if log.is_file() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    run.terminate()
    code, _ = run.wait()
    assert code == -15


@pytest.mark.slow
def test_run_start_times_both_ways_and_finds_the_same_checkpoint(tiny_dataset, tmp_path):
    result = run_start.run(tiny_dataset, tmp_path, rounds=1, log=lambda line: None)
    assert result["same_checkpoint"] is True
    assert len(result["seconds"]["own process"]) == len(result["seconds"]["forked"]) == 1
    assert result["saved_s"] == pytest.approx(result["median_s"]["own process"] - result["median_s"]["forked"])
    assert "forked / own process" in run_start.format_result(result)
