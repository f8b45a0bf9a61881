"""Two-process pretraining with torchrun and gloo on CPU (the recipe in the README's multi-GPU section).

With negatives gathered from every worker, the loss of a global batch split over two processes
must equal the single-process loss on the same records. GroupNorm is used so the encoder has no
batch statistics (with BatchNorm each worker normalises its own half, and the two runs would
legitimately differ).
"""

import re
from pathlib import Path

import pytest
from gloo_runs import torchrun_two_gloo_workers

from conftest import PRETRAIN_CONFIGS, hydra_train, write_tiny_dataset

pytestmark = pytest.mark.slow  # real fairseq-hydra-train runs

PRETRAIN = PRETRAIN_CONFIGS


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

    dist = torchrun_two_gloo_workers(
        PRETRAIN, strategy, [*common, "dataset.batch_size=8", f"checkpoint.save_dir={tmp_path}/dist"], tmp_path
    )
    log = dist.stdout + dist.stderr
    assert dist.returncode == 0, log[-4000:]
    assert "distributed init (rank 1)" in log
    assert _train_loss(log) == pytest.approx(single_loss, abs=2e-3)
    assert (tmp_path / "dist" / "checkpoint_last.pt").is_file()
