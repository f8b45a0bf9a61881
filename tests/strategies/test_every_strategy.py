"""What holds for every strategy: no labels read outside train, random lead masking composes, and a
one-epoch pretraining through fairseq-hydra-train."""
import math
import re

import numpy as np
import pytest
import torch

from conftest import PRETRAIN_CONFIGS, hydra_train
from fairseq_goodviews.strategies import STRATEGY_REGISTRY
from strategies.helpers import load

LABEL_FREE = {
    "cmsc": {}, "cmlc": {}, "cmsmlc": {}, "simclr": {}, "demographics": {}, "attributes": {}, "patient": {},
}
EVERY = {**LABEL_FREE, "rhythm": {}}


def test_every_registered_strategy_is_covered():
    assert set(STRATEGY_REGISTRY) == set(EVERY)


@pytest.mark.parametrize("name", sorted(LABEL_FREE))
@pytest.mark.parametrize("split", ["valid", "test"])
def test_label_free_strategies_load_splits_without_label_columns(ramp_dataset, name, split):
    loaded = load(ramp_dataset, {"_name": name, **LABEL_FREE[name]}, split=split)
    assert not {"rhythm", "beat", "label"} & set(loaded.strategy.table.columns)
    assert loaded.strategy.describe()["uses_labels"] is False
    assert loaded.mask.shape == (len(loaded.views),) * 2


@pytest.mark.parametrize("name", sorted(EVERY))
def test_random_lead_masking_composes(ramp_dataset, name):
    loaded = load(ramp_dataset, {"_name": name, **EVERY[name]}, lead_mask_prob=0.5)
    source = loaded.source
    lead_mask = loaded.batch["lead_mask"].numpy()
    assert lead_mask.any(), "with p = 0.5 some leads are masked"
    assert (source[lead_mask] == 0).all(), "a masked lead is zero"
    carries_signal = (source != 0).any(axis=2)
    assert carries_signal.any(axis=1).all(), "masking keeps at least one lead of every view"
    unmasked = load(ramp_dataset, {"_name": name, **EVERY[name]}, lead_mask_prob=0.0)
    assert np.array_equal(loaded.mask.numpy(), unmasked.mask.numpy()), "masking does not change the relation"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(EVERY) - {"simclr"}))
def test_pretrains_one_epoch_with_fairseq_hydra_train(tiny_dataset, tmp_path, name):
    save_dir = tmp_path / "checkpoints"
    run = hydra_train(PRETRAIN_CONFIGS, name, [
        "preset=cpu_small", f"task.data={tiny_dataset}", f"checkpoint.save_dir={save_dir}", "optimization.max_epoch=1",
        "task.sample_size=1000", "dataset.batch_size=16", "dataset.num_workers=0",
    ], tmp_path)
    log = run.stdout + run.stderr
    assert (save_dir / "checkpoint_last.pt").is_file()
    losses = [float(v) for v in re.findall(r"\[train\]\[INFO\] - epoch 001 \| loss ([-+0-9.naife]+) \|", log)]
    assert losses and all(math.isfinite(v) for v in losses), log[-2000:]
    if name == "rhythm":
        assert "label-using" in log


@pytest.mark.parametrize("strategy", [{"_name": name, **EVERY[name]} for name in sorted(EVERY)]
                         + [{"_name": "attributes", "mode": "kmeans", "n_clusters": 3}])
def test_each_workers_local_rows_are_its_rows_of_the_global_relation(ramp_dataset, strategy):
    """A worker holding views [start, stop) of the global batch builds exactly those rows of P."""
    loaded = load(ramp_dataset, strategy)
    n_views = loaded.mask.shape[0]
    bounds = [0, 5, 6, n_views // 2, n_views]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        rows = loaded.task.positive_mask(loaded.batch["views_meta"], slice(start, stop))
        assert rows.shape == (stop - start, n_views)
        assert torch.equal(rows, loaded.mask[start:stop])
