"""End-to-end runs through fairseq-hydra-train, as a user runs them."""

import os
import re
import signal
import subprocess
import time

import pytest
import torch

from conftest import FINETUNE_CONFIGS, PRETRAIN_CONFIGS, REPO_ROOT, USER_DIR, hydra_train

pytestmark = pytest.mark.slow  # real fairseq-hydra-train runs

PRETRAIN = PRETRAIN_CONFIGS
FINETUNE = FINETUNE_CONFIGS
SMALL = ["preset=cpu_small", "task.sample_size=1000", "dataset.batch_size=16", "dataset.num_workers=0"]


def _epochs_logged(output: str) -> list[int]:
    return [int(m) for m in re.findall(r"\[train\]\[INFO\] - epoch (\d+) \|", output)]


def test_pretrain_two_epochs_then_linear_probe_loads_the_encoder(tiny_dataset, tmp_path):
    ckpt = tmp_path / "pretrain"
    run = hydra_train(
        PRETRAIN,
        "simclr",
        [*SMALL, f"task.data={tiny_dataset}", f"checkpoint.save_dir={ckpt}", "optimization.max_epoch=2"],
        tmp_path,
    )
    assert _epochs_logged(run.stdout + run.stderr) == [1, 2]
    assert (ckpt / "checkpoint_last.pt").is_file()
    pretrained = torch.load(ckpt / "checkpoint_last.pt", weights_only=True)

    probe = tmp_path / "probe"
    run = hydra_train(
        FINETUNE,
        "linear_probe",
        [
            *SMALL,
            f"task.data={tiny_dataset}",
            f"checkpoint.save_dir={probe}",
            f"model.model_path={ckpt / 'checkpoint_last.pt'}",
            "optimization.max_epoch=2",
            "dataset.valid_subset='valid,test'",
        ],
        tmp_path,
    )
    log = run.stdout + run.stderr
    assert re.search(r"valid on 'test' subset \| .*macro_auroc [0-9.]+", log)
    probed = torch.load(probe / "checkpoint_best.pt", weights_only=True)["model"]
    for key, value in pretrained["model"].items():
        if key.startswith("encoder."):
            assert torch.equal(probed[f"encoder.{key}"], value), f"{key} changed during a frozen-encoder probe"


def test_interrupted_pretraining_resumes_from_its_last_checkpoint(tiny_dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    exe = REPO_ROOT / ".venv" / "bin" / "fairseq-hydra-train"
    cmd = [
        str(exe) if exe.exists() else "fairseq-hydra-train",
        "--config-dir",
        str(PRETRAIN),
        "--config-name",
        "simclr",
        *SMALL,
        f"task.data={tiny_dataset}",
        f"checkpoint.save_dir={ckpt}",
        f"common.user_dir={USER_DIR}",
        f"hydra.run.dir={tmp_path}/hydra",
        "optimization.max_epoch=4",
    ]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while not (ckpt / "checkpoint_last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (ckpt / "checkpoint_last.pt").exists(), "no checkpoint was written before the kill"
    interrupted_at = torch.load(ckpt / "checkpoint_last.pt", weights_only=True)["extra_state"]["train_iterator"][
        "epoch"
    ]

    run = hydra_train(
        PRETRAIN,
        "simclr",
        [*SMALL, f"task.data={tiny_dataset}", f"checkpoint.save_dir={ckpt}", "optimization.max_epoch=4"],
        tmp_path,
    )
    log = run.stdout + run.stderr
    assert "Loaded checkpoint" in log
    epochs = _epochs_logged(log)
    assert epochs and epochs[0] > 1 and epochs[-1] == 4, epochs
    assert epochs[0] >= interrupted_at, "training restarted before the checkpointed epoch"


@pytest.mark.slow
def test_w2v_cmsc_rlm_pretraining_is_reproducible_given_its_seed(tiny_dataset, tmp_path):
    """Two runs with one seed write the same weights (wav2vec 2.0's mask spans included)."""
    weights = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        hydra_train(
            PRETRAIN,
            "w2v_cmsc_rlm",
            [
                "preset=w2v_cpu_small",
                "task.sample_size=1000",
                "task.strategy.segment_length=500",
                "dataset.batch_size=8",
                "dataset.num_workers=0",
                "dataset.disable_validation=true",
                "optimization.max_update=3",
                "optimization.max_epoch=0",
                "common.seed=5",
                f"task.data={tiny_dataset}",
                f"checkpoint.save_dir={tmp_path / run}",
            ],
            tmp_path / run,
        )
        weights.append(torch.load(tmp_path / run / "checkpoint_last.pt", weights_only=True)["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
