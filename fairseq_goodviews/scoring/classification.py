"""Classification metrics of record probabilities.

Single-label (softmax) tasks: macro one-vs-rest AUROC (the paper's), per-class AUROC, macro
AUPRC, accuracy, macro F1. Multi-label (sigmoid) tasks: macro AUROC and AUPRC over the labels
with both classes present (the others are listed in ``left_out``), per-label AUROC and the
sample-wise F-max of the PTB-XL benchmark (Strodthoff et al. 2021, after CAFA), plus the CinC
2021 challenge score for the label sets it applies to. A record scored from several crops gets
the mean of its crops' probabilities (:func:`record_probabilities`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from fairseq_goodviews.scoring.cinc2021 import challenge_metrics, challenge_statistic

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


# Weighted forms of the metrics above, vectorised over bootstrap replicates: ``weights`` [b, n]
# says how often each record is in each replicate (see :mod:`fairseq_goodviews.scoring.bootstrap`).
# With every weight 1 they equal the metrics above.

Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]


class RankedScores:
    """The scores [n] of one class sorted once, with their ties grouped, for weighted AUROC and AUPRC."""

    def __init__(self, scores: np.ndarray, positive: np.ndarray):
        scores = np.asarray(scores, dtype=np.float64)
        self.order = np.argsort(scores, kind="stable")
        ordered = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.positive = np.asarray(positive, dtype=bool)[self.order]

    def tie_weights(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positive and negative weight of each distinct score, ascending: two [b, G]."""
        ordered = weights[:, self.order]
        positive = np.add.reduceat(ordered * self.positive, self.starts, axis=1)
        negative = np.add.reduceat(ordered * ~self.positive, self.starts, axis=1)
        return positive, negative

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        """Weighted AUROC [b] (ties count one half); NaN where a replicate lacks either class."""
        positive, negative = self.tie_weights(weights)
        below = np.cumsum(negative, axis=1) - negative
        pairs = positive.sum(axis=1) * negative.sum(axis=1)
        wins = (positive * (below + 0.5 * negative)).sum(axis=1)
        return np.divide(wins, pairs, out=np.full(len(weights), np.nan), where=pairs > 0)

    def average_precision(self, weights: np.ndarray) -> np.ndarray:
        """Weighted average precision [b] (sklearn's step sum over the distinct thresholds);
        NaN where a replicate has no positive record."""
        positive, negative = (w[:, ::-1] for w in self.tie_weights(weights))
        true_positives, false_positives = np.cumsum(positive, axis=1), np.cumsum(negative, axis=1)
        predicted = true_positives + false_positives
        precision = np.divide(true_positives, predicted, out=np.zeros_like(predicted), where=predicted > 0)
        total = positive.sum(axis=1)
        return np.divide((positive * precision).sum(axis=1), total, out=np.full(len(weights), np.nan), where=total > 0)


def finite_mean(values: np.ndarray, axis: int) -> np.ndarray:
    """The mean of the finite entries of ``values`` along ``axis``; NaN where there is none (a
    replicate that lost every scored class), without numpy's "Mean of empty slice" warning."""
    finite = np.isfinite(values)
    sums = np.where(finite, values, 0.0).sum(axis=axis)
    counts = finite.sum(axis=axis)
    return np.divide(sums, counts, out=np.full(np.shape(sums), np.nan), where=counts > 0)


def _defined_mean(columns: list[np.ndarray], size: int) -> np.ndarray:
    """Mean over the defined (finite) entries of each replicate of per-class values [b] (NaN if none)."""
    return finite_mean(np.stack(columns, axis=1), axis=1) if columns else np.full(size, np.nan)


def _weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weighted mean [b, ...] of per-record ``values`` [n, ...] under ``weights`` [b, n]."""
    total = weights.sum(axis=1)
    return (weights @ values) / total.reshape(-1, *([1] * (values.ndim - 1)))


def classification_statistic(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> Statistic:
    """The metrics of :func:`classification_metrics` (``accuracy``, ``macro_f1``, ``macro_auroc``,
    ``macro_auprc``, ``auroc_<class>``) as functions of record weights [b, n] -> [b]."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    n_classes = probs.shape[1]
    predictions = probs.argmax(axis=1)
    correct = (predictions == targets).astype(np.float64)
    true = np.eye(n_classes, dtype=np.float64)[targets]
    predicted = np.eye(n_classes, dtype=np.float64)[predictions]
    hits = true * predicted
    ranked = {
        name: RankedScores(probs[:, k], targets == k)
        for k, name in enumerate(class_names)
        if 0 < (targets == k).sum() < len(targets)
    }

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        tp, n_true, n_predicted = weights @ hits, weights @ true, weights @ predicted
        denominator = n_true + n_predicted
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
        aurocs = {name: r.auroc(weights) for name, r in ranked.items()}
        auprcs = [r.average_precision(weights) for r in ranked.values()]
        return {
            "accuracy": _weighted_mean(weights, correct),
            "macro_f1": f1.mean(axis=1),
            **{f"auroc_{name}": value for name, value in aurocs.items()},
            "macro_auroc": _defined_mean(list(aurocs.values()), len(weights)),
            "macro_auprc": _defined_mean(auprcs, len(weights)),
        }

    return statistic


def multilabel_statistic(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> Statistic:
    """The metrics of :func:`multilabel_metrics` (``macro_auroc``, ``macro_auprc``, ``f_max``,
    ``per_class_auroc/<label>``) as functions of record weights [b, n] -> [b]."""
    probs = np.asarray(probs, dtype=np.float64)
    truth = np.asarray(targets) > 0.5
    ranked = {
        name: RankedScores(probs[:, k], truth[:, k])
        for k, name in enumerate(class_names)
        if 0 < truth[:, k].sum() < len(truth)
    }
    # Per record and F-max threshold [n, T]: its precision (where it predicts a label) and recall.
    labelled = truth.any(axis=1)
    n_true = np.maximum(truth.sum(axis=1), 1)
    precision_cols, recall_cols, covered_cols = [], [], []
    for t in FMAX_THRESHOLDS:
        predicted = probs >= t
        n_predicted = predicted.sum(axis=1)
        hits = (predicted & truth).sum(axis=1)
        covered_cols.append(n_predicted > 0)
        precision_cols.append(hits / np.maximum(n_predicted, 1))
        recall_cols.append(np.where(labelled, hits / n_true, 0.0))
    precision_per_record = np.stack(precision_cols, axis=1)
    recall_per_record = np.stack(recall_cols, axis=1)
    covered = np.stack(covered_cols, axis=1).astype(np.float64)

    def f_max_of(weights: np.ndarray) -> np.ndarray:
        covered_weight = weights @ covered
        labelled_weight = (weights @ labelled.astype(np.float64))[:, None]
        precision = np.divide(
            weights @ precision_per_record, covered_weight, out=np.zeros_like(covered_weight), where=covered_weight > 0
        )
        recall = np.divide(
            weights @ recall_per_record, labelled_weight, out=np.zeros_like(covered_weight), where=labelled_weight > 0
        )
        both = precision + recall
        f = np.divide(2 * precision * recall, both, out=np.zeros_like(both), where=both > 0)
        return f.max(axis=1)

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        aurocs = {name: r.auroc(weights) for name, r in ranked.items()}
        auprcs = [r.average_precision(weights) for r in ranked.values()]
        return {
            "macro_auroc": _defined_mean(list(aurocs.values()), len(weights)),
            "macro_auprc": _defined_mean(auprcs, len(weights)),
            "f_max": f_max_of(weights),
            **{f"per_class_auroc/{name}": value for name, value in aurocs.items()},
        }

    return statistic


def split_statistic(
    probs: np.ndarray,
    targets: np.ndarray,
    class_names: Sequence[str],
    challenge_scored: bool = False,
    thresholds: np.ndarray | None = None,
) -> Statistic:
    """The metrics of :func:`split_metrics` as functions of record weights [b, n] -> [b]; the
    challenge score keeps ``thresholds`` [K] fixed (they are not chosen again per replicate)."""
    if targets.ndim == 1:
        return classification_statistic(probs, targets, class_names)
    metrics = multilabel_statistic(probs, targets, class_names)
    if not challenge_scored:
        return metrics
    challenge = challenge_statistic(probs, targets, thresholds)
    return lambda weights: {**metrics(weights), **challenge(weights)}
