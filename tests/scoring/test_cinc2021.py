"""CinC 2021 challenge score: the published table's shape, hand-computed cases, threshold choice."""

import numpy as np
import pytest

from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES, NORMAL_CLASS
from fairseq_goodviews.scoring.cinc2021 import (
    CINC2021_WEIGHTS,
    ChallengeThresholds,
    challenge_score,
    choose_thresholds,
    modified_confusion,
)


def _hot(names):
    row = np.zeros(len(CINC2021_CLASS_NAMES), dtype=bool)
    for name in names:
        row[CINC2021_CLASS_NAMES.index(name)] = True
    return row


def test_weight_table_is_the_published_26_class_matrix():
    assert CINC2021_WEIGHTS.shape == (26, 26)
    assert np.array_equal(CINC2021_WEIGHTS, CINC2021_WEIGHTS.T)
    assert np.all(np.diag(CINC2021_WEIGHTS) == 1.0) and CINC2021_WEIGHTS.min() == 0.15
    assert CINC2021_CLASS_NAMES[NORMAL_CLASS] == "NSR"
    af, afl, nsr = (CINC2021_CLASS_NAMES.index(n) for n in ("AF", "AFL", "NSR"))
    assert CINC2021_WEIGHTS[af, afl] == 0.5 and CINC2021_WEIGHTS[af, nsr] == 0.25


def test_perfect_is_one_and_always_normal_is_zero():
    labels = np.stack([_hot(["AF"]), _hot(["NSR"]), _hot(["SB", "IAVB"]), _hot(["CRBBB|RBBB", "LAD"])])
    assert challenge_score(labels, labels) == pytest.approx(1.0)
    normal = np.zeros_like(labels)
    normal[:, NORMAL_CLASS] = True
    assert challenge_score(labels, normal) == pytest.approx(0.0)
    # Predicting nothing at all scores below the inactive classifier (it loses the normal record).
    assert challenge_score(labels, np.zeros_like(labels)) < 0


def test_small_example_worked_by_hand():
    # Three classes A, B, N (N normal) and weights W; three records:
    #   r1 labels {A}    outputs {A}  -> A[A,A] += 1
    #   r2 labels {A, B} outputs {B}  -> |union| = 2: A[A,B] += 1/2, A[B,B] += 1/2
    #   r3 labels {N}    outputs {A}  -> |union| = 2: A[N,A] += 1/2
    # observed = 1*1 + 0.5*0.5 + 1*0.5 + 0*0.5 = 1.75
    # correct  = r1 1 + r2 (1 + 0.5 + 0.5 + 1)/2 + r3 1 = 3.5
    # inactive (N everywhere) = r1 W[A,N]/2 + r2 (W[A,N] + W[B,N])/3 + r3 W[N,N] = 0 + 0.25/3 + 1 = 13/12
    # score = (1.75 - 13/12) / (3.5 - 13/12) = (8/12) / (29/12) = 8/29
    weights = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.25], [0.0, 0.25, 1.0]])
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    outputs = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=bool)
    confusion = modified_confusion(labels, outputs)
    assert confusion == pytest.approx(np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 0.0], [0.5, 0.0, 0.0]]))
    assert challenge_score(labels, outputs, weights, normal_class=2) == pytest.approx(8 / 29)


def test_partial_credit_follows_the_table():
    # One AF record called AFL: |union| = 2, so observed = W[AF, AFL]/2 = 0.25; correct = 1;
    # inactive = W[AF, NSR]/2 = 0.125; score = 0.125 / 0.875 = 1/7.
    labels = _hot(["AF"])[None]
    outputs = _hot(["AFL"])[None]
    inactive = CINC2021_WEIGHTS[CINC2021_CLASS_NAMES.index("AF"), NORMAL_CLASS] / 2
    assert inactive == 0.125
    assert challenge_score(labels, outputs) == pytest.approx(1 / 7)


def test_thresholds_chosen_on_valid_recover_a_shifted_decision_rule():
    rng = np.random.default_rng(0)
    labels = rng.random((300, 26)) < 0.15
    # Probabilities that separate the classes at 0.3, not 0.5.
    probs = np.where(labels, rng.uniform(0.3, 0.45, labels.shape), rng.uniform(0.0, 0.25, labels.shape))
    thresholds = choose_thresholds(probs, labels)
    assert challenge_score(labels, probs >= 0.5) < 0.1
    assert challenge_score(labels, probs >= thresholds) == pytest.approx(1.0)
    assert np.array_equal(thresholds, choose_thresholds(probs, labels))


def test_thresholds_chosen_on_valid_apply_to_the_splits_scored_after_it():
    rng = np.random.default_rng(1)
    labels = rng.random((40, 26)) < 0.2
    probs = np.where(labels, rng.uniform(0.3, 0.45, labels.shape), rng.uniform(0.0, 0.25, labels.shape))
    store = ChallengeThresholds()
    assert store.for_split("test", probs, labels) is None  # nothing chosen yet: 0.5 for every class
    chosen = store.for_split("valid", probs, labels)
    assert np.array_equal(chosen, choose_thresholds(probs, labels))
    assert store.for_split("test", probs[:5], labels[:5]) is chosen
