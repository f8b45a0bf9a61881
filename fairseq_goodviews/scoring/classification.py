"""Classification metrics of record probabilities.

Single-label (softmax) tasks: macro one-vs-rest AUROC (the paper's), per-class AUROC, macro
AUPRC, accuracy, macro F1. Multi-label (sigmoid) tasks: macro AUROC and AUPRC over the labels
with both classes present (the others are listed in ``left_out``), per-label AUROC and the
sample-wise F-max of the PTB-XL benchmark (Strodthoff et al. 2021, after CAFA), plus the CinC
2021 challenge score for the label sets it applies to. A record scored from several crops gets
the mean of its crops' probabilities (:func:`record_probabilities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from fairseq_goodviews.scoring.cinc2021 import challenge_metrics

#: Decision thresholds over which F-max is taken (0.00, 0.01, ..., 1.00).
FMAX_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 101)


def classification_metrics(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """Metrics of class probabilities ``probs`` [n, k] against integer ``targets`` [n].

    One-vs-rest scores are undefined for a class absent from ``targets`` (or present in every
    row): such a class gets NaN and is left out of the macro averages, which average the rest.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    n_classes = probs.shape[1]
    predictions = probs.argmax(axis=1)
    result: dict[str, float] = {
        "accuracy": float(accuracy_score(targets, predictions)),
        "macro_f1": float(
            f1_score(targets, predictions, labels=list(range(n_classes)), average="macro", zero_division=0)
        ),
        "n": len(targets),
    }
    aurocs, auprcs = [], []
    for k, name in enumerate(class_names):
        positive = targets == k
        if positive.all() or not positive.any():
            result[f"auroc_{name}"] = float("nan")
            continue
        aurocs.append(roc_auc_score(positive, probs[:, k]))
        auprcs.append(average_precision_score(positive, probs[:, k]))
        result[f"auroc_{name}"] = float(aurocs[-1])
    result["macro_auroc"] = float(np.mean(aurocs)) if aurocs else float("nan")
    result["macro_auprc"] = float(np.mean(auprcs)) if auprcs else float("nan")
    return result


def f_max(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray = FMAX_THRESHOLDS) -> float:
    """Sample-wise F-max of label probabilities ``probs`` [n, k] against multi-hot ``targets`` [n, k].

    At each threshold t, precision is averaged over the records with at least one label predicted
    (``probs >= t``) and recall over the records with at least one true label; F-max is the best
    harmonic mean over the thresholds (0 where no threshold predicts anything).
    """
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(targets) > 0.5
    labelled = truth.any(axis=1)
    best = 0.0
    for t in thresholds:
        predicted = probs >= t
        n_predicted = predicted.sum(axis=1)
        hits = (predicted & truth).sum(axis=1)
        covered = n_predicted > 0
        if not covered.any() or not labelled.any():
            continue
        precision = float(np.mean(hits[covered] / n_predicted[covered]))
        recall = float(np.mean(hits[labelled] / truth[labelled].sum(axis=1)))
        if precision + recall > 0:
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def multilabel_metrics(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of label probabilities ``probs`` [n, k] against multi-hot ``targets`` [n, k].

    Returns ``macro_auroc`` and ``macro_auprc`` (over the labels with both classes present),
    ``per_class_auroc`` (NaN for the others), ``left_out`` (their names), ``f_max``, ``n``
    and ``n_scored_labels``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(targets) > 0.5
    per_class: dict[str, float] = {}
    aurocs, auprcs, left_out = [], [], []
    for k, name in enumerate(class_names):
        positive = truth[:, k]
        if positive.all() or not positive.any():
            per_class[name] = float("nan")
            left_out.append(name)
            continue
        aurocs.append(roc_auc_score(positive, probs[:, k]))
        auprcs.append(average_precision_score(positive, probs[:, k]))
        per_class[name] = float(aurocs[-1])
    return {
        "macro_auroc": float(np.mean(aurocs)) if aurocs else float("nan"),
        "macro_auprc": float(np.mean(auprcs)) if auprcs else float("nan"),
        "f_max": f_max(probs, truth),
        "per_class_auroc": per_class,
        "left_out": left_out,
        "n": len(truth),
        "n_scored_labels": len(aurocs),
    }


def record_probabilities(
    logits: torch.Tensor,
    crop_record: torch.Tensor | None,
    n_records: int,
    multi_label: bool,
) -> torch.Tensor:
    """Per-record probabilities [n_records, K] from crop logits [C, K]: the mean over each record's crops.

    ``crop_record`` [C] gives the record of each crop (None: one crop per record, in order).
    """
    probs = torch.sigmoid(logits.float()) if multi_label else torch.softmax(logits.float(), dim=1)
    if crop_record is None or len(crop_record) == n_records:
        return probs
    sums = torch.zeros(n_records, probs.shape[1], dtype=probs.dtype, device=probs.device)
    sums.index_add_(0, crop_record, probs)
    counts = torch.bincount(crop_record, minlength=n_records).clamp(min=1).to(probs.dtype)
    return sums / counts[:, None]


def split_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    challenge_scored: bool = False,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """The metrics of record probabilities ``probs`` [n, K] against ``targets`` ([n] class indices
    or [n, K] multi-hot); with ``challenge_scored`` (multi-hot targets over the CinC 2021 classes)
    also the challenge score at ``thresholds`` [K] (0.5 for every class if None)."""
    if targets.ndim == 1:
        return classification_metrics(probs, targets, class_names)
    result = multilabel_metrics(probs, targets, class_names)
    if challenge_scored:
        result.update(challenge_metrics(probs, targets, thresholds))
    return result
