"""goodviews-train as a user runs it: from an installed wheel, in a folder that is not the clone, and
its log; the plain fairseq-hydra-train form on the folder it prints, without common.user_dir."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # real training runs

VENV_BIN = Path(sys.executable).parent
TINY = ["preset=cpu_small", "optimization.max_epoch=1", "dataset.num_workers=0", "task.sample_size=1000"]
#: Lines a user cannot act on, which a run must not print.
NOISE = ("detected shared parameter", "| wps ", "| wpb ", "tensorboardX", "Warning", "DEBUG", "Conv1d(")
#: What fairseq and hydra print while fairseq-hydra-train imports them, before any plugin runs: the
#: tensorboardX hint, hydra's warning on fairseq's entry point (5 lines) and one hydra debug line.
IMPORT_TIME = (
    "tensorboardX",
    "hydra_train.py:25: UserWarning",
    "version_base",
    "compatability",
    "Will assume",
    "@hydra.main",
    "JobRuntime:name=UNKNOWN_NAME",
)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``command``, asserting success; its output captured."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The project built as a wheel and installed with ``--target`` into a folder of its own; that
    folder and the environment that imports from it (no path into the clone)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: the build writes build/ and *.egg-info beside setup.py
    source.mkdir()
    shutil.copy(REPO_ROOT / "setup.py", source)
    for package in ("fairseq_goodviews", "hydra_plugins"):
        shutil.copytree(REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(source)], check=True
    )
    (wheel,) = (tmp / "dist").glob("fairseq_goodviews-*.whl")
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    shutil.rmtree(source)
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return site, env


def test_goodviews_train_from_an_installed_wheel_in_another_folder_with_a_quiet_log(installed, tmp_path):
    site, env = installed
    work = tmp_path / "work"  # the user's folder: neither the clone nor the install
    work.mkdir()
    found = run([sys.executable, "-c", "import fairseq_goodviews; print(fairseq_goodviews.__file__)"], work, env)
    assert Path(found.stdout.strip()).is_relative_to(site)  # the wheel's package, not the clone's
    bin_ = site / "bin"
    run([str(bin_ / "goodviews-synthetic-chapman"), "raw", "--records", "40", "--seed", "0"], work, env)
    run([str(bin_ / "goodviews-prepare-chapman"), "raw", "data/chapman", "--workers", "1", "--no-progress"], work, env)

    result = run([str(bin_ / "goodviews-train"), "pretraining/simclr", "task.data=data/chapman", *TINY], work, env)
    log = result.stdout + result.stderr

    save = work / "checkpoints" / "simclr"  # relative to the folder the command started in
    assert {"checkpoint_last.pt", "checkpoint_best.pt", "hydra_train.log", "run_fingerprint.json"} <= {
        p.name for p in save.iterdir()
    }
    assert not (work / "outputs").exists()
    lines = log.splitlines()
    for noise in NOISE:
        assert not [line for line in lines if noise in line], noise
    epoch = next(line for line in lines if re.search(r"\[train\]\[INFO\] - epoch 001 \|", line))
    assert re.search(r"\| rps [0-9.]+ \|", epoch) and re.search(r"\| bsz [0-9.]+ \|", epoch)
    # the config line, the task, model, criterion and size, each split's records, one validation,
    # the saved checkpoint and the epoch: the whole run in a screenful
    assert len(lines) <= 25, "\n".join(lines)
    assert (save / "hydra_train.log").read_text().count("epoch 001 |") == 2  # valid and train, filtered alike


def test_fairseq_hydra_train_on_the_printed_config_dir_needs_no_user_dir(tiny_dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    printed = run([sys.executable, "-m", "fairseq_goodviews.cli.train", "--config-dir", "pretraining"], tmp_path, env)
    config_dir = printed.stdout.strip()
    hydra = shutil.which("fairseq-hydra-train", path=str(VENV_BIN)) or "fairseq-hydra-train"
    result = run(
        [hydra, "--config-dir", config_dir, "--config-name", "simclr", f"task.data={tiny_dataset}", *TINY],
        tmp_path,
        env,
    )
    assert (tmp_path / "checkpoints" / "simclr" / "checkpoint_last.pt").is_file()
    # The run's log is as quiet as under goodviews-train; before it, on stderr, only what fairseq and
    # hydra print while they import, before any plugin runs (docs/training.md#what-a-run-logs).
    for noise in NOISE:
        assert noise not in result.stdout, noise
    first = result.stderr.splitlines()
    assert len(first) <= 7 and not [line for line in first if not any(known in line for known in IMPORT_TIME)]
