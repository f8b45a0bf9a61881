"""Two-process pretraining with torchrun and gloo on CPU (the recipe in the README's multi-GPU section).

With negatives gathered from every worker, the loss of a global batch split over two processes
must equal the single-process loss on the same records. GroupNorm is used so the encoder has no
batch statistics (with BatchNorm each worker normalises its own half, and the two runs would
legitimately differ).
"""

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PRETRAIN_CONFIGS, USER_DIR, hydra_train, write_tiny_dataset

pytestmark = pytest.mark.slow  # real fairseq-hydra-train runs

PRETRAIN = PRETRAIN_CONFIGS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_loss(log: str) -> float:
    match = re.search(r"\[train\]\[INFO\] - epoch 001 \| loss ([0-9.]+) \|", log)
    assert match, log[-3000:]
    return float(match.group(1))


@pytest.fixture(scope="module")
def sixteen_records(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("dist"), n_per_split=(16, 8, 8), seed=3)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["demographics", "simclr"])
def test_two_gloo_workers_give_the_single_process_loss(sixteen_records, tmp_path, strategy):
    common = [
        "preset=cpu_small",
        "model.norm=group",
        "task.sample_size=1000",
        "dataset.num_workers=0",
        "dataset.disable_validation=true",
        "optimization.max_epoch=1",
        f"task.data={sixteen_records}",
    ]
    single = hydra_train(
        PRETRAIN, strategy, [*common, "dataset.batch_size=16", f"checkpoint.save_dir={tmp_path}/single"], tmp_path
    )
    single_loss = _train_loss(single.stdout + single.stderr)

    bindir = Path(sys.executable).parent
    torchrun = shutil.which("torchrun", path=str(bindir))
    hydra = shutil.which("fairseq-hydra-train", path=str(bindir))
    cmd = [
        torchrun,
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        hydra,
        "--config-dir",
        str(PRETRAIN),
        "--config-name",
        strategy,
        *common,
        "dataset.batch_size=8",
        f"checkpoint.save_dir={tmp_path}/dist",
        f"common.user_dir={USER_DIR}",
        f"hydra.run.dir={tmp_path}/hydra_dist",
        "distributed_training.distributed_backend=gloo",
        "distributed_training.distributed_world_size=2",
        "distributed_training.distributed_init_method=env://",
        "distributed_training.distributed_no_spawn=true",
        "distributed_training.distributed_rank=${oc.env:RANK}",
        "distributed_training.ddp_backend=legacy_ddp",
    ]
    dist = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = dist.stdout + dist.stderr
    assert dist.returncode == 0, log[-4000:]
    assert "distributed init (rank 1)" in log
    assert _train_loss(log) == pytest.approx(single_loss, abs=2e-3)
    assert (tmp_path / "dist" / "checkpoint_last.pt").is_file()
