"""Errors a newcomer meets under the real fairseq-hydra-train: one line naming the file or option, no traceback.

The data come from the real commands (goodviews-synthetic-chapman, goodviews-prepare-chapman), the
checkpoints from one-epoch runs; every case runs fairseq-hydra-train as the README does.
"""

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import FINETUNE_CONFIGS, PRETRAIN_CONFIGS, USER_DIR, console_script

pytestmark = pytest.mark.slow  # real fairseq-hydra-train runs

TINY = [
    "preset=cpu_small",
    "task.sample_size=1000",
    "dataset.batch_size=8",
    "dataset.num_workers=0",
    "optimization.max_epoch=1",
]


def train(
    config_dir: Path, config_name: str, overrides: list[str], cwd: Path, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("fairseq-hydra-train"), "--config-dir", str(config_dir), "--config-name", config_name,
         f"common.user_dir={USER_DIR}", *TINY, *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def refused(run: subprocess.CompletedProcess, message: str) -> None:
    """The run failed with ``message`` alone on one line of stderr, no traceback, and no model printed."""
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert message in run.stderr.splitlines(), run.stderr[-3000:]
    assert "Traceback" not in output and "Resnet1dModel(" not in output, output[-3000:]


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A folder with ``raw/`` (a synthetic Chapman database), ``data/`` (prepared), a one-epoch SimCLR
    pretraining (``checkpoints/simclr``) and a linear probe of it (``checkpoints/probe``)."""
    root = tmp_path_factory.mktemp("errors")
    for command in (
        [console_script("goodviews-synthetic-chapman"), "--records", "40", "raw"],
        [console_script("goodviews-prepare-chapman"), "--no-progress", "raw", "data"],
    ):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    pretrain = train(PRETRAIN_CONFIGS, "simclr", ["task.data=data", "checkpoint.save_dir=checkpoints/simclr"], root)
    assert pretrain.returncode == 0, pretrain.stderr[-3000:]
    probe = [
        "task.data=data",
        "checkpoint.save_dir=checkpoints/probe",
        "model.model_path=checkpoints/simclr/checkpoint_last.pt",
    ]
    assert train(FINETUNE_CONFIGS, "linear_probe", probe, root).returncode == 0
    return root


def test_a_probe_checkpoint_as_model_path_gives_its_encoder(workdir):
    run = train(
        FINETUNE_CONFIGS,
        "linear_probe",
        [
            "task.data=data",
            "checkpoint.save_dir=checkpoints/probe2",
            "model.model_path=checkpoints/probe/checkpoint_last.pt",
        ],
        workdir,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        "model.model_path=checkpoints/probe/checkpoint_last.pt: an ecg_classifier checkpoint; its encoder (resnet1d) "
        "is loaded, not its head" in run.stdout
    )
    first = torch.load(workdir / "checkpoints/probe/checkpoint_last.pt", weights_only=True)
    second = torch.load(workdir / "checkpoints/probe2/checkpoint_last.pt", weights_only=True)
    encoder = [key for key in first["model"] if key.startswith("encoder.")]
    assert encoder and all(torch.equal(first["model"][k], second["model"][k]) for k in encoder)  # frozen in both
    assert second["cfg"]["model"]["encoder"]["_name"] == "resnet1d"


def test_a_file_that_is_not_a_checkpoint_is_one_line(workdir):
    (workdir / "notes.pt").write_text("not a checkpoint\n")
    run = train(
        FINETUNE_CONFIGS,
        "linear_probe",
        ["task.data=data", "checkpoint.save_dir=checkpoints/junk", "model.model_path=notes.pt"],
        workdir,
    )
    refused(run, "model.model_path=notes.pt: not a fairseq checkpoint (not a PyTorch file)")
    evaluate = subprocess.run(
        [console_script("goodviews-evaluate"), "notes.pt", "--data", "data"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert evaluate.returncode == 2
    assert evaluate.stderr == "goodviews-evaluate: error: notes.pt: not a fairseq checkpoint (not a PyTorch file)\n"


def test_a_raw_database_as_task_data_names_its_preparer(workdir):
    run = train(PRETRAIN_CONFIGS, "simclr", ["task.data=raw", "checkpoint.save_dir=checkpoints/raw"], workdir)
    refused(
        run,
        "task.data=raw: not a prepared folder (no train.tsv); it holds the raw Chapman/Shaoxing database: run "
        "goodviews-prepare-chapman raw OUT first",
    )


def test_a_misspelled_task_data_is_one_line_and_full_error_shows_the_traceback(workdir):
    overrides = ["task.data=data/chapmn", "checkpoint.save_dir=checkpoints/typo"]
    refused(
        train(PRETRAIN_CONFIGS, "simclr", overrides, workdir),
        f"task.data=data/chapmn: no such folder (relative paths mean the folder you started in: {workdir})",
    )
    full = train(PRETRAIN_CONFIGS, "simclr", overrides, workdir, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "DataFolderError" in full.stderr


def test_no_positive_pair_is_one_line(workdir):
    single = workdir / "single_visit"
    if not single.exists():
        subprocess.run(["cp", "-r", str(workdir / "data"), str(single)], check=True)
        train_table = pd.read_csv(single / "train.csv")
        train_table["patient_id"] = train_table["record_id"]
        train_table.to_csv(single / "train.csv", index=False)
    run = train(
        PRETRAIN_CONFIGS, "patient", ["task.data=single_visit", "checkpoint.save_dir=checkpoints/pclr"], workdir
    )
    refused(
        run,
        "strategy 'patient' cannot pretrain on single_visit: every patient has a single record (one ECG per "
        "patient), so no anchor can have a positive",
    )
