"""Downstream metrics: macro one-vs-rest AUROC (the paper's), per-class AUROC, macro AUPRC, accuracy, macro F1."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score


def classification_metrics(probs: np.ndarray, targets: np.ndarray, class_names: Sequence[str]) -> Dict[str, float]:
    """Metrics of class probabilities ``probs`` [n, k] against integer ``targets`` [n].

    One-vs-rest scores are undefined for a class absent from ``targets`` (or present in every
    row): such a class gets NaN and is left out of the macro averages, which average the rest.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    n_classes = probs.shape[1]
    predictions = probs.argmax(axis=1)
    result: Dict[str, float] = {
        "accuracy": float(accuracy_score(targets, predictions)),
        "macro_f1": float(f1_score(targets, predictions, labels=list(range(n_classes)), average="macro", zero_division=0)),
        "n": int(len(targets)),
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
