"""CMSMLC: different leads across different segments of one record are the positives."""

import numpy as np
import pytest

from strategies.helpers import CROP, load, off_diagonal, pairwise

LIMB = np.arange(12) < 6


def test_views_are_every_segment_and_lead_group_combination(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "cmsmlc"})
    views, source = loaded.views, loaded.source
    combos = views.groupby("record").apply(
        lambda g: sorted(zip(g["segment"], g["lead_group"], strict=True)), include_groups=False
    )
    assert all(c == [(0, 0), (0, 1), (1, 0), (1, 1)] for c in combos)
    assert source.shape[-1] == CROP // 2
    leads = (source != 0).any(axis=2)
    groups = views["lead_group"].to_numpy()
    assert np.array_equal(leads[groups == 0], np.broadcast_to(LIMB, leads[groups == 0].shape))
    assert np.array_equal(leads[groups == 1], np.broadcast_to(~LIMB, leads[groups == 1].shape))
    # time: lead I (limb views) / V1 (precordial views) hold 1 + t (+ 60000): segments never overlap
    starts = np.where(groups == 0, source[:, 0, 0] - 1, source[:, 6, 0] - 60001).astype(int)
    for _, group in views.groupby("record"):
        by_segment = group.groupby("segment").apply(lambda g: set(starts[g.index]), include_groups=False)
        assert all(len(s) == 1 for s in by_segment), "both lead groups of a segment cover the same samples"
        first, second = (min(s) for s in by_segment)
        assert second - first >= CROP // 2


@pytest.mark.parametrize("positives", ["cross", "any"])
def test_positive_mask(ramp_dataset, positives):
    loaded = load(ramp_dataset, {"_name": "cmsmlc", "positives": positives})
    views = loaded.views
    expected = pairwise(views["rec_record_id"])
    if positives == "cross":
        expected &= ~pairwise(views["segment"]) & ~pairwise(views["lead_group"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))
    assert off_diagonal(loaded.mask).sum(axis=1).min() == (1 if positives == "cross" else 3)


def test_each_lead_across_segments(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "cmsmlc", "lead_groups": "each", "n_views": 2, "n_segments": 2})
    views = loaded.views
    per_record = views.groupby("record")
    assert (per_record.size() == 4).all() and (per_record["lead_group"].nunique() == 2).all()
    assert off_diagonal(loaded.mask).sum(axis=1).tolist() == [1] * len(views)
