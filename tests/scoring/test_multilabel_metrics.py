"""Multi-label metrics: macro AUROC over labels with both classes, the ones left out, F-max by hand."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fairseq_goodviews.scoring.classification import f_max, multilabel_metrics


def test_macro_auroc_leaves_out_labels_without_both_classes():
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 1, 1]])
    probs = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.5], [0.6, 0.2, 0.5], [0.7, 0.8, 0.5]])
    result = multilabel_metrics(probs, targets, ["a", "b", "c"])
    assert result["left_out"] == ["c"] and math.isnan(result["per_class_auroc"]["c"])
    assert result["per_class_auroc"]["a"] == pytest.approx(roc_auc_score(targets[:, 0], probs[:, 0]))
    assert result["per_class_auroc"]["b"] == 1.0
    assert result["macro_auroc"] == pytest.approx((0.75 + 1.0) / 2)
    assert result["n"] == 4 and result["n_scored_labels"] == 2


def test_f_max_worked_by_hand():
    targets = np.array([[1, 0], [0, 1]])
    probs = np.array([[0.8, 0.6], [0.3, 0.4]])
    # t <= 0.3: every label predicted: precision 1/2 per record, recall 1 -> F = 2/3.
    # 0.3 < t <= 0.4: r1 {0, 1} (precision 1/2), r2 {1} (1) -> P = 3/4, R = 1 -> F = 6/7.
    # 0.4 < t <= 0.6: r1 {0, 1} -> P = 1/2 (r2 predicts nothing), R = (1 + 0)/2 -> F = 1/2.
    # 0.6 < t <= 0.8: r1 {0} -> P = 1, R = 1/2 -> F = 2/3.
    assert f_max(probs, targets) == pytest.approx(6 / 7)
    assert f_max(targets.astype(float), targets) == 1.0
