"""Percentile bootstrap intervals: coverage, width, determinism, patients as units, and the
weighted metrics behind them (weights = records drawn that many times)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES
from fairseq_goodviews.scoring.bootstrap import bootstrap_intervals, resampling_weights, unit_codes
from fairseq_goodviews.scoring.cinc2021 import challenge_score
from fairseq_goodviews.scoring.classification import (
    classification_metrics,
    multilabel_metrics,
    split_statistic,
)
from fairseq_goodviews.scoring.retrieval import equal_error_rate, retrieval_metrics, retrieval_statistic, similarities


def accuracy_statistic(correct):
    return lambda weights: {"accuracy": (weights @ correct) / weights.sum(axis=1)}


def test_the_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(60):
        correct = (rng.random(150) < 0.7).astype(float)
        interval = bootstrap_intervals(accuracy_statistic(correct), 150, replicates=300, seed=2)["accuracy"]
        covered += interval.low <= 0.7 <= interval.high
    assert 50 <= covered <= 60  # 95 % nominal; 60 trials


def test_the_interval_narrows_as_the_sample_grows():
    rng = np.random.default_rng(3)
    widths = {}
    for n in (100, 1600):
        correct = (rng.random(n) < 0.7).astype(float)
        interval = bootstrap_intervals(accuracy_statistic(correct), n, replicates=500)["accuracy"]
        widths[n] = interval.high - interval.low
    # A 16-fold sample: about a quarter of the width (1 / sqrt(16)).
    assert 0.15 < widths[1600] / widths[100] < 0.4


def test_the_same_seed_gives_the_same_intervals_and_another_seed_others():
    correct = (np.random.default_rng(4).random(80) < 0.6).astype(float)
    first = bootstrap_intervals(accuracy_statistic(correct), 80, replicates=200, seed=7)
    assert first == bootstrap_intervals(accuracy_statistic(correct), 80, replicates=200, seed=7)
    assert first != bootstrap_intervals(accuracy_statistic(correct), 80, replicates=200, seed=8)


def test_patients_are_resampled_as_units():
    patients = np.repeat([f"p{i}" for i in range(20)], 10)
    units = unit_codes(patients, len(patients))
    weights = resampling_weights(units, 50, np.random.default_rng(0))
    for unit in range(20):
        block = weights[:, units == unit]
        assert (block == block[:, :1]).all()  # a patient's records are drawn together
    assert (weights.reshape(50, 20, 10)[:, :, 0].sum(axis=1) == 20).all()  # 20 patients per replicate
    # Records of a patient agree (all right or all wrong): 20 independent units, not 200.
    correct = np.repeat(np.random.default_rng(5).random(20) < 0.5, 10).astype(float)
    by_patient = bootstrap_intervals(accuracy_statistic(correct), 200, patients, replicates=500)["accuracy"]
    by_record = bootstrap_intervals(accuracy_statistic(correct), 200, None, replicates=500)["accuracy"]
    assert (by_patient.method, by_patient.n) == ("bootstrap_patients", 20)
    assert (by_record.method, by_record.n) == ("bootstrap_records", 200)
    assert by_patient.high - by_patient.low > 2 * (by_record.high - by_record.low)


def test_records_without_a_patient_are_units_of_their_own():
    assert unit_codes(["a", None, "a", "", "b"], 5).tolist() == [0, 2, 0, 3, 1]


def test_undefined_replicates_are_counted_and_left_out():
    rng = np.random.default_rng(6)
    targets = np.zeros(40, dtype=np.int64)
    targets[:20] = 1
    targets[0] = 2  # one record of class 2: many replicates draw none
    probs = rng.dirichlet(np.ones(3), size=40)
    intervals = bootstrap_intervals(split_statistic(probs, targets, ["a", "b", "c"]), 40, replicates=300)
    assert intervals["auroc_c"].undefined > 50
    assert intervals["auroc_a"].undefined == 0
    assert np.isfinite(intervals["auroc_c"].low)


def _duplicated(weights_row, *arrays):
    counts = weights_row.astype(int)
    return [np.repeat(a, counts, axis=0) for a in arrays]


def test_weighted_single_label_metrics_equal_the_metrics_of_the_drawn_records():
    rng = np.random.default_rng(7)
    targets = rng.integers(4, size=120)
    probs = np.round(rng.dirichlet(np.ones(4), size=120) + np.eye(4)[targets] * 0.3, 1)  # rounding makes ties
    names = ["AFIB", "GSVT", "SB", "SR"]
    weights = np.vstack([np.ones(120), rng.integers(0, 3, size=120)])
    replicates = split_statistic(probs, targets, names)(weights)
    for row, w in enumerate(weights):
        expected = classification_metrics(*_duplicated(w, probs, targets), names)
        for key in ("accuracy", "macro_f1", "macro_auroc", "macro_auprc", "auroc_SB"):
            assert replicates[key][row] == pytest.approx(expected[key], abs=1e-12), key


def test_weighted_multilabel_metrics_and_challenge_score_equal_those_of_the_drawn_records():
    rng = np.random.default_rng(8)
    labels = rng.random((150, 26)) < 0.15
    probs = np.clip(labels * 0.35 + rng.random((150, 26)) * 0.65, 0, 1)
    thresholds = rng.choice([0.3, 0.5, 0.6], size=26)
    weights = np.vstack([np.ones(150), rng.integers(0, 3, size=150)])
    replicates = split_statistic(probs, labels.astype(float), CINC2021_CLASS_NAMES, True, thresholds)(weights)
    for row, w in enumerate(weights):
        p, t = _duplicated(w, probs, labels)
        expected = multilabel_metrics(p, t, CINC2021_CLASS_NAMES)
        for key in ("macro_auroc", "macro_auprc", "f_max"):
            assert replicates[key][row] == pytest.approx(expected[key], abs=1e-12), key
        af = list(CINC2021_CLASS_NAMES).index("AF")
        assert replicates["per_class_auroc/AF"][row] == pytest.approx(roc_auc_score(t[:, af], p[:, af]))
        assert replicates["challenge_score"][row] == pytest.approx(challenge_score(t, p >= thresholds), abs=1e-12)


def test_weighted_retrieval_metrics_equal_those_of_the_drawn_probes():
    rng = np.random.default_rng(9)
    gallery = rng.normal(size=(15, 8))
    probe_patients = rng.integers(15, size=40)
    probes = gallery[probe_patients] + rng.normal(size=(40, 8))
    scores = similarities(gallery, np.arange(15), probes, probe_patients)
    weights = np.vstack([np.ones(40), rng.integers(0, 3, size=40)])
    replicates = retrieval_statistic(scores)(weights)
    for row, w in enumerate(weights):
        (kept_probes, kept_patients) = _duplicated(w, probes, probe_patients)
        expected = retrieval_metrics(gallery, np.arange(15), kept_probes, kept_patients)
        for key in ("top1", "top5", "eer"):
            assert replicates[key][row] == pytest.approx(expected[key], abs=1e-12), key


def test_the_bootstrap_eer_on_quantile_thresholds_stays_close_to_the_exact_one(monkeypatch):
    import fairseq_goodviews.scoring.retrieval as retrieval

    rng = np.random.default_rng(10)
    gallery = rng.normal(size=(60, 8))
    probe_patients = rng.integers(60, size=120)
    probes = gallery[probe_patients] + rng.normal(size=(120, 8)) * 1.2
    scores = similarities(gallery, np.arange(60), probes, probe_patients)
    exact = equal_error_rate(scores.genuine, scores.similarity[scores.impostor_mask()])
    monkeypatch.setattr(retrieval, "EER_THRESHOLDS", 256)  # fewer thresholds than the 7200 scores
    coarse = retrieval_statistic(scores)(np.ones((1, 120)))["eer"][0]
    assert coarse == pytest.approx(exact, abs=0.01)


def test_a_thousand_replicates_on_a_few_thousand_records_take_seconds():
    import time

    rng = np.random.default_rng(11)
    targets = rng.integers(4, size=3000)
    probs = rng.dirichlet(np.ones(4), size=3000)
    start = time.perf_counter()
    intervals = bootstrap_intervals(split_statistic(probs, targets, list("abcd")), 3000, replicates=1000)
    assert time.perf_counter() - start < 30  # seconds on a shared 2-core machine
    assert intervals["macro_auroc"].low < 0.5 < intervals["macro_auroc"].high  # random scores
