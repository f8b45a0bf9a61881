"""Single-label downstream metrics (the paper's macro one-vs-rest AUROC and the rest), hand-computed, and the
record probabilities of crops."""

import math

import numpy as np
import pytest
import torch

from fairseq_goodviews.scoring.classification import classification_metrics, record_probabilities

CLASSES = ["AFIB", "GSVT", "SB", "SR"]


def test_perfect_scores_and_hand_computed_values():
    probs = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    metrics = classification_metrics(probs, np.array([0, 1, 2, 3, 0, 1]), CLASSES)
    assert metrics["macro_auroc"] == 1.0 and metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    # Class 0 scores 0.9, 0.4 on its two positives and 0.6, 0.1 on the negatives: 3 of 4 pairs ordered.
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.1, 0.9]])
    metrics = classification_metrics(probs, np.array([0, 0, 1, 1]), ["a", "b"])
    assert metrics["auroc_a"] == pytest.approx(0.75) and metrics["auroc_b"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.5) and metrics["n"] == 4


def test_a_class_absent_from_the_split_is_left_out_of_the_macro_average():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    metrics = classification_metrics(probs, np.array([0, 1, 0]), ["a", "b", "c"])
    assert math.isnan(metrics["auroc_c"])
    assert metrics["macro_auroc"] == pytest.approx(np.mean([metrics["auroc_a"], metrics["auroc_b"]]))


def test_record_probabilities_average_each_records_crops():
    logits = torch.tensor([[0.0, 0.0], [2.0, -2.0], [1.0, 1.0]])
    probs = record_probabilities(logits, torch.tensor([0, 0, 1]), 2, multi_label=True)
    sig = torch.sigmoid(logits)
    assert torch.allclose(probs, torch.stack([sig[:2].mean(0), sig[2]]))
    soft = record_probabilities(logits, torch.tensor([0, 1, 1]), 2, multi_label=False)
    assert torch.allclose(soft.sum(1), torch.ones(2))
