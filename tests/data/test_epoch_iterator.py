"""The pretraining epoch iterator persists: fairseq keeps it (and its data-loading workers) across
epochs, and the kept workers still draw each epoch's own crops, partners and augmentations."""

import numpy as np
import torch

from strategies.helpers import make_task, write_ramp_dataset

STRATEGY = {"_name": "simclr", "jitter_prob": 1.0, "time_warp_prob": 1.0}


def _task(tmp_path):
    data = write_ramp_dataset(tmp_path / "ramp", n_per_split=(12, 4, 4))
    task = make_task(data, STRATEGY, lead_mask_prob=0.5)
    task.load_dataset("train")
    return task


def _in_process(dataset, ids, epoch):
    """The batch the main process makes for ``ids`` at ``epoch`` (the reference for the workers)."""
    dataset.set_epoch(epoch)
    return dataset.collater([dataset[i] for i in ids])


def test_persistent_workers_see_every_epoch(tmp_path):
    dataset = _task(tmp_path).dataset("train")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=dataset.collater
    )
    sources = {}
    for epoch in (1, 2):
        dataset.set_epoch(epoch)
        sources[epoch] = [batch["net_input"]["source"] for batch in loader]
    workers = loader._iterator._workers
    assert len(workers) == 1 and workers[0].is_alive(), "the worker outlived the first epoch"
    for epoch in (1, 2):
        expected = [_in_process(dataset, range(start, start + 4), epoch)["net_input"]["source"] for start in (0, 4, 8)]
        assert all(torch.equal(a, b) for a, b in zip(sources[epoch], expected, strict=True))
    assert not torch.equal(sources[1][0], sources[2][0]), "a new epoch draws new views"


def test_fairseq_keeps_the_epoch_iterator_and_its_loader_and_rebuilds_batches(tmp_path):
    task = _task(tmp_path)
    dataset = task.dataset("train")

    def iterator(epoch):
        return task.get_batch_iterator(dataset, max_sentences=4, seed=1, num_workers=1, epoch=epoch)

    epoch_itr = iterator(1)
    first = list(epoch_itr.next_epoch_itr(shuffle=True))
    loader = epoch_itr.dataloader
    assert iterator(2) is epoch_itr, "fairseq reuses the epoch iterator"
    second = list(epoch_itr.next_epoch_itr(shuffle=True))
    assert epoch_itr.epoch == 2 and epoch_itr.dataloader is loader, "and its DataLoader (workers persist)"
    assert loader._iterator._workers[0].is_alive()

    ids = [sorted(batch["id"].tolist()) for batch in first], [sorted(batch["id"].tolist()) for batch in second]
    assert sorted(np.concatenate(ids[0])) == sorted(np.concatenate(ids[1])) == list(range(12))
    assert ids[0] != ids[1], "every epoch has its own batches"
    for batch in second:
        expected = _in_process(dataset, batch["id"].tolist(), 2)
        assert torch.equal(batch["net_input"]["source"], expected["net_input"]["source"])
