"""GroupIndex: the partner draws every group strategy (demographics, rhythm, patient, kmeans attributes) relies on."""
import numpy as np

from fairseq_goodviews.strategies.base import GroupIndex, combined_group


def test_partners_come_uniformly_from_the_same_group_and_never_the_record_itself():
    group = np.array([0, 1, 0, 2, 0, 1, -1, 3])
    index = GroupIndex(group)
    assert index.n_groups == 4
    assert index.group_size().tolist() == [3, 2, 3, 1, 3, 2, 0, 1]
    rng = np.random.default_rng(0)
    draws = [index.sample(0, rng) for _ in range(3000)]
    assert set(draws) == {2, 4}
    assert abs(draws.count(2) / len(draws) - 0.5) < 0.05
    assert {index.sample(1, rng) for _ in range(50)} == {5}


def test_records_alone_or_without_group_get_no_partner():
    index = GroupIndex(np.array([5, -1, 7, 5]))
    rng = np.random.default_rng(1)
    assert index.sample(1, rng) is None  # unknown group
    assert index.sample(2, rng) is None  # alone in its group
    assert index.sample(0, rng) == 3 and index.sample(3, rng) == 0


def test_same_seed_same_partners():
    index = GroupIndex(np.arange(1000) % 17)
    first = [index.sample(i, np.random.default_rng(42)) for i in range(1000)]
    again = [index.sample(i, np.random.default_rng(42)) for i in range(1000)]
    assert first == again


def test_combined_group_is_one_id_per_key_combination_and_unknown_if_any_key_is():
    group = combined_group({"sex": np.array([0, 0, 1, 1, 0, -1]), "age": np.array([3, 4, 3, 3, 3, 3])})
    assert group[0] == group[4] and group[2] == group[3]
    assert len({group[0], group[1], group[2]}) == 3
    assert group[5] == -1
