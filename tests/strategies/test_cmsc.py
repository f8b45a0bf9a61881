"""CMSC: non-overlapping segments of one record are the positives."""

import numpy as np
import pytest

from strategies.helpers import CROP, load, make_task, off_diagonal, pairwise


def segment_starts(source: np.ndarray) -> np.ndarray:
    """First sample index of each view (lead I of the ramp records holds 1 + t)."""
    return source[:, 0, 0].astype(np.int64) - 1


def test_positive_mask_is_same_record_other_segment(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "cmsc"})
    views = loaded.views
    expected = pairwise(views["rec_record_id"]) & ~pairwise(views["segment"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))
    assert sorted(views.groupby("record")["segment"].apply(tuple).unique()) == [(0, 1)]
    assert loaded.batch["net_input"]["source"].shape[-1] == CROP // 2


@pytest.mark.parametrize("placement", ["contiguous", "random"])
@pytest.mark.parametrize("n_segments,segment_length", [(2, 0), (3, 250)])
def test_segments_never_overlap_and_are_contiguous_samples(ramp_dataset, placement, n_segments, segment_length):
    strategy = {"_name": "cmsc", "n_segments": n_segments, "segment_length": segment_length, "placement": placement}
    for epoch in (1, 2):
        loaded = load(ramp_dataset, strategy, epoch=epoch)
        source, views = loaded.source, loaded.views
        length = source.shape[-1]
        assert length == (segment_length or CROP // n_segments)
        starts = segment_starts(source)
        # every view is a run of consecutive samples of the record, on every lead
        ramp = 1 + starts[:, None] + np.arange(length)[None, :]
        assert np.array_equal(source[:, 0, :], ramp)
        assert np.array_equal(source[:, 5, :], ramp + 50000)
        for _, group in views.groupby("record"):
            ordered = starts[group.sort_values("segment").index]
            assert len(ordered) == n_segments
            assert np.all(np.diff(ordered) >= length), f"overlapping segments: starts {ordered}, length {length}"
            assert ordered[-1] + length - ordered[0] <= CROP, "segments must come from one crop"


def test_random_placement_leaves_random_gaps(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "cmsc", "n_segments": 2, "segment_length": 300, "placement": "random"})
    starts = segment_starts(loaded.source)
    gaps = [np.diff(starts[g.sort_values("segment").index])[0] - 300 for _, g in loaded.views.groupby("record")]
    assert len(set(gaps)) > 3
    contiguous = load(ramp_dataset, {"_name": "cmsc", "n_segments": 2, "segment_length": 300})
    starts = segment_starts(contiguous.source)
    assert {np.diff(starts[g.sort_values("segment").index])[0] for _, g in contiguous.views.groupby("record")} == {300}


def test_segments_that_do_not_fit_the_crop_are_a_clear_error(ramp_dataset):
    task = make_task(ramp_dataset, {"_name": "cmsc", "n_segments": 3, "segment_length": 400})
    with pytest.raises(ValueError, match="do not fit in a crop of 1000 samples"):
        task.load_dataset("train")
    with pytest.raises(ValueError, match="placement"):
        make_task(ramp_dataset, {"_name": "cmsc", "placement": "overlapping"}).load_dataset("train")
