"""The training log's filter: fairseq's bookkeeping lines out, everything a user reads kept."""

import logging

import torch

from fairseq_goodviews.config.run_log import FairseqBookkeeping


def record(name: str, msg, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_bookkeeping_lines_are_dropped_and_the_rest_kept():
    keep = FairseqBookkeeping().filter
    assert not keep(record("fairseq.tasks.fairseq_task", "can_reuse_epoch_itr = True"))
    assert not keep(record("fairseq.data.iterators", "grouped total_num_itrs = 2"))
    assert not keep(record("fairseq_cli.train", "max tokens per device = None and max sentences per device = 32"))
    assert not keep(record("fairseq.trainer", "Saving checkpoint to /x/checkpoint_best.pt"))
    assert not keep(record("fairseq_cli.train", torch.nn.Linear(2, 2)))  # the model's printout
    # what a user reads: the run's config, the loaded checkpoint, the epoch lines, every warning
    assert keep(record("fairseq_cli.train", {"task": {"_name": "ecg_pretraining"}}))
    assert keep(
        record("fairseq.trainer", "Loaded checkpoint checkpoints/simclr/checkpoint_last.pt (epoch 1 @ 2 updates)")
    )
    assert keep(record("fairseq.trainer", "No existing checkpoint found checkpoints/simclr/checkpoint_last.pt"))
    assert keep(record("train", "epoch 001 | loss 3.133 | rps 34.5"))
    assert keep(record("fairseq.tasks.fairseq_task", "can_reuse_epoch_itr = True", logging.WARNING))
