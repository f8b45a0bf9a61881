"""Bootstrap intervals and paired differences of Table 1, against sklearn and hand-made cases."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from fairseq_goodviews.table1.stats import (
    DifferentTestRecordsError,
    Predictions,
    bootstrap_auroc,
    macro_auroc,
    mean_interval,
    paired_difference,
)


def predictions(seed: int, n: int = 120, signal: float = 1.0) -> Predictions:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    probs = rng.random((n, 3)) + signal * np.eye(3)[labels]
    return Predictions(np.array([f"r{i}" for i in range(n)]), probs / probs.sum(1, keepdims=True), np.eye(3)[labels])


def test_macro_auroc_is_sklearns_ties_included():
    rng = np.random.default_rng(2)
    probs = np.round(rng.random((80, 3)), 1)
    targets = (rng.random((80, 3)) < 0.4).astype(int)
    targets[:, 2] = 0  # a class without positives is left out
    expected = np.mean([roc_auc_score(targets[:, k], probs[:, k]) for k in (0, 1)])
    assert macro_auroc(probs, targets) == pytest.approx(expected, abs=1e-12)


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


def test_paired_difference_over_seeds_is_the_t_interval_of_the_per_seed_differences():
    better = {seed: (predictions(seed, signal=1.0), predictions(seed + 10, signal=0.2)) for seed in (1, 2, 3)}
    result = paired_difference(better)
    per_seed = [macro_auroc(a.probs, a.targets) - macro_auroc(b.probs, b.targets) for a, b in better.values()]
    assert result["per_seed"] == pytest.approx(per_seed) and result["difference"] == pytest.approx(np.mean(per_seed))
    assert result["ci95"] == pytest.approx(mean_interval(per_seed))
    assert (result["interval"], result["n_seeds"], result["seeds"]) == ("t_over_seeds", 3, [1, 2, 3])
    assert result["excludes_zero"]


def test_one_seed_is_the_paired_record_bootstrap_and_says_so():
    one = paired_difference({1: (predictions(1, signal=1.0), predictions(11, signal=0.2))})
    assert (one["interval"], one["n_seeds"]) == ("records_one_seed", 1) and one["excludes_zero"]
    # two equal models, one of them with its records shuffled: the difference is 0 on every resample
    a = predictions(3, signal=0.5)
    order = np.random.default_rng(0).permutation(len(a.records))
    shuffled = Predictions(a.records[order], a.probs[order], a.targets[order])
    null = paired_difference({1: (a, shuffled)})
    assert null["difference"] == 0.0 and null["ci95"] == [0.0, 0.0] and not null["excludes_zero"]


def test_a_paired_comparison_of_different_test_records_stops():
    a, b = predictions(1), predictions(2, n=100)
    with pytest.raises(DifferentTestRecordsError, match="120 and 100 records, 100 in common"):
        paired_difference({1: (a, b)})


def simulated_seeds(rng: np.random.Generator, gap: float, spread: float, seeds: int = 5, n: int = 1000) -> dict:
    """Per seed, a new test split and two trained models whose expected AUROC is 0.80 + gap and 0.80,
    each drawn with a between-seed standard deviation ``spread`` (training randomness).

    Scores are binormal with unit noise (AUROC = Phi(d / sqrt 2)); 90 % of the noise is the record's
    own and shared by both models (they are scored on the same records), so the pairing matters.
    """
    pairs = {}
    for seed in range(seeds):
        labels = (rng.random(n) < 0.3).astype(np.int8)
        shared = rng.normal(size=n)
        runs = []
        for expected in (0.80 + gap, 0.80):
            auroc = np.clip(expected + spread * rng.normal(), 0.55, 0.99)
            separation = np.sqrt(2) * stats.norm.ppf(auroc)
            score = separation * labels + np.sqrt(0.9) * shared + np.sqrt(0.1) * rng.normal(size=n)
            runs.append(Predictions(np.arange(n).astype(str), score[:, None], labels[:, None]))
        pairs[seed] = tuple(runs)
    return pairs


def test_seed_to_seed_variation_does_not_make_equal_methods_differ():
    rng = np.random.default_rng(0)
    marked = [paired_difference(simulated_seeds(rng, gap=0.0, spread=0.02))["excludes_zero"] for _ in range(200)]
    assert np.mean(marked) <= 0.10


def test_a_true_three_point_difference_is_found_over_five_seeds():
    rng = np.random.default_rng(1)
    marked = [paired_difference(simulated_seeds(rng, gap=0.03, spread=0.01))["excludes_zero"] for _ in range(200)]
    assert np.mean(marked) >= 0.80


def test_student_t_interval_over_seeds():
    low, high = mean_interval([0.80, 0.82, 0.84])
    assert (low + high) / 2 == pytest.approx(0.82)
    assert high - low == pytest.approx(2 * 4.302652729911275 * 0.02 / np.sqrt(3))
    assert mean_interval([0.8]) is None
