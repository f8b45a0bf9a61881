"""Bootstrap intervals and paired differences of Table 1, against sklearn and hand-made cases."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fairseq_goodviews.table1.stats import (
    Predictions,
    bootstrap_auroc,
    macro_auroc,
    mean_interval,
    paired_difference,
    resample_counts,
    weighted_auroc,
)


def predictions(seed: int, n: int = 120, signal: float = 1.0) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    probs = rng.random((n, 3)) + signal * np.eye(3)[labels]
    return Predictions(np.array([f"r{i}" for i in range(n)]), probs / probs.sum(1, keepdims=True), np.eye(3)[labels])


def test_weighted_auroc_is_the_auroc_of_the_resample_ties_included():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = (rng.random(60) < 0.4).astype(int)
    counts = resample_counts(60, rng, 20)
    fast = weighted_auroc(scores, labels, counts)
    for b in range(20):
        index = np.repeat(np.arange(60), counts[b].astype(int))
        assert fast[b] == pytest.approx(roc_auc_score(labels[index], scores[index]))
    assert weighted_auroc(scores, labels, np.ones((1, 60)))[0] == pytest.approx(roc_auc_score(labels, scores))


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_more_records():
    small, large = predictions(1, n=60, signal=0.3), predictions(1, n=600, signal=0.3)
    widths = []
    for pred in (small, large):
        replicates = bootstrap_auroc(pred)
        low, high = np.percentile(replicates, [2.5, 97.5])
        assert low < macro_auroc(pred.probs, pred.targets) < high
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0]
    assert np.array_equal(bootstrap_auroc(small), bootstrap_auroc(small))  # seeded


def test_paired_difference_detects_a_real_gap_and_not_a_null_one():
    better = {seed: (predictions(seed, signal=1.0), predictions(seed + 10, signal=0.2)) for seed in (1, 2)}
    result = paired_difference(better)
    assert result["difference"] > 0.1 and result["excludes_zero"] and result["seeds"] == [1, 2]
    same = {1: (predictions(3, signal=0.5), predictions(3, signal=0.5))}
    null = paired_difference(same)
    assert null["difference"] == 0.0 and null["ci95"] == [0.0, 0.0] and not null["excludes_zero"]


def test_student_t_interval_over_seeds():
    low, high = mean_interval([0.80, 0.82, 0.84])
    assert (low + high) / 2 == pytest.approx(0.82)
    assert high - low == pytest.approx(2 * 4.302652729911275 * 0.02 / np.sqrt(3))
    assert mean_interval([0.8]) is None
