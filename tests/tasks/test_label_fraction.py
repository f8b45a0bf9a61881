"""Label-efficiency subsets: stratified, at least one record per class, seeded."""
import numpy as np

from fairseq_goodviews.tasks.ecg_classification import stratified_subset


def test_each_class_keeps_its_fraction_and_at_least_one_record():
    labels = np.array([0] * 100 + [1] * 40 + [2] * 3)
    keep = stratified_subset(labels, 0.1, seed=1)
    counts = np.bincount(labels[keep], minlength=3)
    assert counts.tolist() == [10, 4, 1]
    assert len(np.unique(keep)) == len(keep) and np.all(np.diff(keep) > 0)


def test_same_seed_same_subset_other_seed_other_subset():
    labels = np.arange(500) % 4
    assert np.array_equal(stratified_subset(labels, 0.2, 3), stratified_subset(labels, 0.2, 3))
    assert not np.array_equal(stratified_subset(labels, 0.2, 3), stratified_subset(labels, 0.2, 4))
