"""Rhythm: other records with the same rhythm (and set of conditions) are the positives; labels of
valid/test are never read."""

import numpy as np
import pytest

from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.strategies import build_strategy
from strategies.helpers import load, make_task, off_diagonal, pairwise


def condition_set(beat: str) -> frozenset:
    return frozenset(code for code in beat.split() if code != "NONE")


@pytest.mark.parametrize("match_beat", [True, False])
def test_positive_mask_matches_rhythm_and_conditions(ramp_dataset, match_beat):
    loaded = load(ramp_dataset, {"_name": "rhythm", "match_beat": match_beat})
    records = loaded.table.iloc[loaded.views["record"]]
    expected = pairwise(records["rhythm"])
    if match_beat:
        expected &= pairwise(records["beat"].map(condition_set))
    expected |= pairwise(loaded.views["record"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))
    has_positive = off_diagonal(loaded.mask).any(axis=1)
    assert has_positive.all(), "every group has several members, so every anchor has a partner"
    if match_beat:
        rbbb_lvh = loaded.table["beat"].isin(["RBBB LVH", "LVH RBBB"]) & (loaded.table["rhythm"] == "SR")
        assert rbbb_lvh.sum() >= 2 and len(set(loaded.strategy.keys["beat_set"][rbbb_lvh])) == 1


def test_flags_itself_as_label_using(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "rhythm"})
    assert loaded.strategy.uses_labels
    assert loaded.strategy.describe()["uses_labels"] is True
    assert loaded.strategy.describe()["label_columns"] == ["rhythm", "beat"]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_refuses_to_read_labels_of_other_splits(ramp_dataset, split):
    task = make_task(ramp_dataset, {"_name": "rhythm"})
    with pytest.raises(ValueError, match=r"dataset\.disable_validation=true"):
        task.load_dataset(split)
    # built directly with a table that lacks the label columns, as the task hands it over
    table = read_metadata(ramp_dataset, split).drop(columns=["rhythm", "beat", "label"])
    with pytest.raises(ValueError, match="train split only"):
        build_strategy({"_name": "rhythm", "match_beat": False}, table, read_metadata(ramp_dataset, "train"), 1)
