"""Demographics: other records of the same age group and sex are the positives."""

import numpy as np
import pandas as pd
import pytest

from fairseq_goodviews.strategies.demographics import age_groups
from strategies.helpers import load, off_diagonal, pairwise

PAPER_BINS = [18, 30, 40, 50, 60, 70, 80]


def demographic_group(table: pd.DataFrame, edges=PAPER_BINS) -> pd.Series:
    """Age group and sex as one label, computed with pandas; None when either is unknown."""
    age = pd.cut(table["age"], bins=[*edges, np.inf], right=False, labels=False)
    sex = table["sex"].where(table["sex"].isin(["M", "F"]))
    known = age.notna() & sex.notna()
    return (age.astype("Int64").astype(str) + sex.astype(str)).where(known, None)


def test_positive_mask_matches_age_group_and_sex(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "demographics"})
    group = demographic_group(loaded.table).to_numpy()[loaded.views["record"]]
    expected = (pairwise(group) & pd.notna(group)[:, None]) | pairwise(loaded.views["record"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))


def test_every_anchor_of_a_group_with_two_members_has_a_positive(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "demographics"})
    group = demographic_group(loaded.table)
    size = group.map(group.value_counts()).fillna(0).to_numpy()
    views = loaded.views
    has_positive = off_diagonal(loaded.mask).any(axis=1)
    anchors = views["record"] == views["item"]
    assert has_positive[anchors & (size[views["item"]] >= 2)].all()
    assert not has_positive[anchors & (size[views["item"]] < 2)].any()
    assert loaded.batch["items_without_partner"] == int((size < 2).sum())
    assert loaded.strategy.describe()["records_without_partner"] == int((size < 2).sum())
    assert loaded.strategy.describe()["records_without_group"] == int(group.isna().sum())


def test_partner_is_uniform_over_the_group_and_deterministic(ramp_dataset):
    loaded = load(ramp_dataset, {"_name": "demographics"})
    group = demographic_group(loaded.table)
    anchor = int(np.flatnonzero(group.map(group.value_counts()) >= 3)[0])
    members = set(np.flatnonzero(group == group[anchor])) - {anchor}
    strategy = loaded.strategy
    draws = [strategy.sample_partner(anchor, np.random.default_rng([7, i])) for i in range(600)]
    assert set(draws) == members
    counts = np.bincount(draws)[sorted(members)]
    assert counts.min() > 0.6 * 600 / len(members)
    assert draws == [strategy.sample_partner(anchor, np.random.default_rng([7, i])) for i in range(600)]
    unknown = int(np.flatnonzero(group.isna())[0])
    assert strategy.sample_partner(unknown, np.random.default_rng(0)) is None


def test_age_bins_are_lower_edges_so_five_year_bins_are_expressible():
    ages = pd.Series([17, 18, 25, 28, 79.5, 80, 101, np.nan])
    assert age_groups(ages, PAPER_BINS).tolist() == [-1, 0, 0, 0, 5, 6, 6, -1]
    five_year = list(range(18, 95, 5))
    assert age_groups(ages, five_year).tolist() == [-1, 0, 1, 2, 12, 12, 15, -1]
    with pytest.raises(ValueError, match="ascending"):
        age_groups(ages, [30, 18])
