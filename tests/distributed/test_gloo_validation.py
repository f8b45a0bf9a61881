"""A classification fine-tune over several processes.

Training logs are plain numbers, summed across workers in one all-reduce, so fine-tuning runs on
CPU processes (gloo) too. The validation logging carries every record's probabilities (for
AUROC), which fairseq gathers from all workers as pickles of at most
``common.all_gather_list_size`` bytes staged in a CUDA buffer: on CPU processes that cannot work,
and the task refuses it in one line. On GPUs the fine-tuning configs' buffer (1 MiB) must hold a
large validation batch.
"""

import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import FINETUNE_CONFIGS, USER_DIR, write_tiny_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fine_tuning_trains_over_cpu_processes_and_refuses_their_validation_in_one_line(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n_per_split=(16, 8, 4), sample_size=500)
    bindir = Path(sys.executable).parent
    cmd = [
        shutil.which("torchrun", path=str(bindir)),
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        shutil.which("fairseq-hydra-train", path=str(bindir)),
        "--config-dir",
        str(FINETUNE_CONFIGS),
        "--config-name",
        "linear_probe",
        "preset=cpu_small",
        f"task.data={data}",
        "task.sample_size=500",
        "dataset.batch_size=8",
        "dataset.num_workers=0",
        "optimization.max_epoch=1",
        "checkpoint.no_save=true",
        f"common.user_dir={USER_DIR}",
        f"hydra.run.dir={tmp_path}/hydra",
        "distributed_training.distributed_backend=gloo",
        "distributed_training.distributed_world_size=2",
        "distributed_training.distributed_init_method=env://",
        "distributed_training.distributed_no_spawn=true",
        "distributed_training.distributed_rank=${oc.env:RANK}",
        "distributed_training.ddp_backend=legacy_ddp",
    ]
    trained = subprocess.run([*cmd, "dataset.disable_validation=true"], cwd=tmp_path, capture_output=True, text=True)
    log = trained.stdout + trained.stderr
    assert trained.returncode == 0, log[-3000:]
    assert "distributed init (rank 1)" in log and "[train][INFO] - epoch 001 | loss" in log
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode != 0
    assert "EcgClassificationTask: validation over 2 processes needs GPUs" in log, log[-3000:]
    assert "torch.cuda.ByteTensor" not in log


def test_the_gather_buffer_holds_a_large_cinc2021_validation_batch():
    """One worker's validation logging for 1,000 records x 26 CinC classes fits the configs' buffer."""
    from fairseq.distributed.utils import all_gather_list  # noqa: F401  (the reader of this size)

    size = OmegaConf.load(FINETUNE_CONFIGS / "base.yaml").common.all_gather_list_size
    n, k = 1000, 26
    logging_output = {
        "loss": 1.0,
        "nsentences": n,
        "ntokens": n * 5000,
        "sample_size": n,
        "probs": np.random.default_rng(0).random((n, k), dtype=np.float32),
        "targets": np.zeros((n, k), dtype=np.float32),
        "class_names": [f"{1000000 + i}" for i in range(k)],
        "split": "valid",
        "label_set": "cinc2021",
        "threshold_key": "/data/physionet2021|cinc2021",
    }
    # all_gather_list pickles the list of a worker's logging outputs, with a 4-byte header.
    assert len(pickle.dumps([logging_output])) + 4 < size
