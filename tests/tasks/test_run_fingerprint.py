"""A save folder holds one run: another data folder or encoder is refused in one line, not resumed."""

import subprocess

import pytest

from conftest import FINETUNE_CONFIGS, PRETRAIN_CONFIGS, USER_DIR, console_script, write_tiny_dataset

pytestmark = pytest.mark.slow  # real fairseq-hydra-train runs

TINY = ["preset=cpu_small", "task.sample_size=1000", "dataset.batch_size=8", "dataset.num_workers=0"]


def train(config_dir, config_name: str, overrides: list[str], cwd, ok: bool = True) -> subprocess.CompletedProcess:
    """``fairseq-hydra-train`` as the README runs it (hydra's run folder is ``.``); asserts its success or
    failure (``ok``) and, on failure, one line without a traceback."""
    run = subprocess.run(
        [console_script("fairseq-hydra-train"), "--config-dir", str(config_dir), "--config-name", config_name,
         f"common.user_dir={USER_DIR}", *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert (run.returncode == 0) == ok, run.stdout[-2000:] + run.stderr[-3000:]
    assert ok or "Traceback" not in run.stderr, run.stderr[-3000:]
    return run


def refusal(run: subprocess.CompletedProcess) -> str:
    return next(line for line in run.stderr.splitlines() if "holds the checkpoints of another run" in line)


def test_a_save_folder_refuses_another_run_and_resumes_its_own(tmp_path):
    write_tiny_dataset(tmp_path / "data" / "a", (16, 8, 8))
    write_tiny_dataset(tmp_path / "data" / "b", (16, 8, 8), seed=1)
    pretrain = [*TINY, "optimization.max_epoch=1"]  # the README's command: default save folder, relative paths
    train(PRETRAIN_CONFIGS, "simclr", [*pretrain, "task.data=data/a"], tmp_path)
    folder = tmp_path / "checkpoints" / "simclr"
    assert {"checkpoint_last.pt", "run_fingerprint.json", "hydra_train.log"} <= {p.name for p in folder.iterdir()}

    line = refusal(train(PRETRAIN_CONFIGS, "simclr", [*pretrain, "task.data=data/b"], tmp_path, ok=False))
    assert line.startswith("checkpoints/simclr holds the checkpoints of another run (task.data: ")
    assert f"{tmp_path}/data/a -> {tmp_path}/data/b" in line and "task.fresh_run=true" in line

    fresh = train(PRETRAIN_CONFIGS, "simclr", [*pretrain, "task.data=data/b", "task.fresh_run=true"], tmp_path)
    assert "Loaded checkpoint" not in fresh.stdout and "done training" in fresh.stdout
    assert (folder / "earlier_run_1" / "checkpoint_last.pt").is_file()

    again = train(PRETRAIN_CONFIGS, "simclr", [*pretrain, "task.data=data/b"], tmp_path)
    assert "Loaded checkpoint checkpoints/simclr/checkpoint_last.pt" in again.stdout

    probe = [*TINY, "optimization.max_epoch=1", "task.data=data/b"]
    train(
        FINETUNE_CONFIGS, "linear_probe", [*probe, "model.model_path=checkpoints/simclr/checkpoint_last.pt"], tmp_path
    )
    other = "model.model_path=checkpoints/simclr/earlier_run_1/checkpoint_last.pt"
    line = refusal(train(FINETUNE_CONFIGS, "linear_probe", [*probe, other], tmp_path, ok=False))
    assert "(model.model_path: checkpoints/simclr/checkpoint_last.pt -> checkpoints/simclr/earlier_run_1/" in line
