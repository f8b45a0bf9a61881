"""A classification fine-tune over several processes.

Training logs are plain numbers, summed across workers in one all-reduce, so fine-tuning runs on
CPU processes (gloo) too. The validation logging carries every record's probabilities (for
AUROC), which fairseq gathers from all workers as pickles of at most
``common.all_gather_list_size`` bytes staged in a CUDA buffer: on CPU processes that cannot work,
and the task refuses it in one line. On GPUs the fine-tuning configs' buffer (1 MiB) must hold a
large validation batch.
"""

import pickle

import numpy as np
import pytest
from gloo_runs import torchrun_two_gloo_workers
from omegaconf import OmegaConf

from conftest import FINETUNE_CONFIGS, write_tiny_dataset


@pytest.mark.slow
def test_fine_tuning_trains_over_cpu_processes_and_refuses_their_validation_in_one_line(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", n_per_split=(16, 8, 4), sample_size=500)
    overrides = [
        "preset=cpu_small",
        f"task.data={data}",
        "task.sample_size=500",
        "dataset.batch_size=8",
        "dataset.num_workers=0",
        "optimization.max_epoch=1",
        "checkpoint.no_save=true",
    ]
    trained = torchrun_two_gloo_workers(
        FINETUNE_CONFIGS, "linear_probe", [*overrides, "dataset.disable_validation=true"], tmp_path
    )
    log = trained.stdout + trained.stderr
    assert trained.returncode == 0, log[-3000:]
    assert "distributed init (rank 1)" in log and "[train][INFO] - epoch 001 | loss" in log
    run = torchrun_two_gloo_workers(FINETUNE_CONFIGS, "linear_probe", overrides, tmp_path)
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
        "split": "valid",
    }
    # all_gather_list pickles the list of a worker's logging outputs, with a 4-byte header.
    assert len(pickle.dumps([logging_output])) + 4 < size
