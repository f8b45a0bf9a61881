"""CMLC: leads (or lead groups) of one record at the same time are the positives."""

import numpy as np
import pytest

from strategies.helpers import CROP, load, off_diagonal, pairwise

LIMB = np.arange(12) < 6


def nonzero_leads(source: np.ndarray) -> np.ndarray:
    """[views, 12] which leads of each view carry signal (ramp samples are never zero)."""
    return (source != 0).any(axis=2)


def test_positive_mask_is_same_record_other_lead_group(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "cmlc"})
    views = loaded.views
    expected = pairwise(views["rec_record_id"]) & ~pairwise(views["lead_group"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))
    assert loaded.source.shape[1:] == (12, CROP), "a lead view keeps the 12-slot layout"


def test_limb_precordial_views_zero_exactly_the_other_group(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "cmlc", "lead_groups": "limb_precordial"})
    leads = nonzero_leads(loaded.source)
    groups = loaded.views["lead_group"].to_numpy()
    assert sorted(set(groups)) == [0, 1]
    assert np.array_equal(leads[groups == 0], np.broadcast_to(LIMB, leads[groups == 0].shape))
    assert np.array_equal(leads[groups == 1], np.broadcast_to(~LIMB, leads[groups == 1].shape))
    # the group's leads are untouched samples of the record
    for view in np.flatnonzero(groups == 1):
        start = loaded.source[view, 6, 0] - 60001
        assert np.array_equal(loaded.source[view, 11], 110001 + start + np.arange(CROP))


@pytest.mark.parametrize("n_views,expected", [(3, 3), (0, 12)])
def test_each_lead_its_own_view(ramp_dataset, n_views, expected):
    loaded = load(ramp_dataset, {"_name": "cmlc", "lead_groups": "each", "n_views": n_views})
    leads = nonzero_leads(loaded.source)
    views = loaded.views
    assert (leads.sum(axis=1) == 1).all()
    assert np.array_equal(leads.argmax(axis=1), views["lead_group"].to_numpy())
    per_record = views.groupby("record")["lead_group"]
    assert (per_record.size() == expected).all() and (per_record.nunique() == expected).all()
    if n_views:
        assert views.groupby("record")["lead_group"].apply(tuple).nunique() > 1, "leads are sampled per record"


def test_only_present_leads_make_views(ramp_dataset_missing_leads):
    each = load(ramp_dataset_missing_leads, {"_name": "cmlc", "lead_groups": "each", "n_views": 0})
    odd = each.views["record"].to_numpy() % 2 == 1
    assert not np.isin(each.views["lead_group"][odd], [6, 7, 8]).any()
    assert (each.views[odd].groupby("record").size() == 9).all()
    groups = load(ramp_dataset_missing_leads, {"_name": "cmlc"})
    leads = nonzero_leads(groups.source)
    precordial_of_odd = (groups.views["lead_group"].to_numpy() == 1) & (groups.views["record"].to_numpy() % 2 == 1)
    assert np.array_equal(leads[precordial_of_odd][0], np.isin(np.arange(12), [9, 10, 11]))
