"""Uncertainty of Table 1: bootstrap intervals of a run's test AUROC and paired-bootstrap differences.

A run's predictions (``test_predictions.csv``: one row per test record, its target(s) and every
class's probability) are resampled with replacement; the macro one-vs-rest AUROC of each
replicate gives a percentile interval. Two methods trained and tested on the same split (the
same seed) are compared on the same resampled records (paired), so the interval of their
difference excludes the test set's own sampling noise that both share. Over several seeds the
difference of each replicate is averaged over seeds (each seed resampled independently).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

#: Bootstrap replicates per interval, and the seed that makes every report reproducible.
N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0


class Predictions:
    """A run's test predictions: record ids [n], probabilities [n, K], multi-hot targets [n, K]."""

    def __init__(self, records: np.ndarray, probs: np.ndarray, targets: np.ndarray):
        self.records, self.probs, self.targets = records, probs, targets

    @classmethod
    def read(cls, path: str | Path) -> "Predictions":
        frame = pd.read_csv(path)
        prob_columns = [c for c in frame.columns if c.startswith("prob_")]
        classes = [c[len("prob_"):] for c in prob_columns]
        if "target" in frame.columns:  # single-label: one class name per record
            targets = (frame["target"].astype(str).to_numpy()[:, None] == np.array(classes)[None, :]).astype(np.int8)
        else:
            targets = frame[[f"target_{name}" for name in classes]].to_numpy(dtype=np.int8)
        return cls(frame["record"].astype(str).to_numpy(), frame[prob_columns].to_numpy(np.float64), targets)

    def aligned_with(self, other: "Predictions") -> Tuple["Predictions", "Predictions"]:
        """Both restricted to their common records, in one order (a paired comparison)."""
        common, mine, theirs = np.intersect1d(self.records, other.records, return_indices=True)
        return (Predictions(common, self.probs[mine], self.targets[mine]),
                Predictions(common, other.probs[theirs], other.targets[theirs]))


def macro_auroc(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes that have both positives and negatives (NaN if none)."""
    scores = [roc_auc_score(targets[:, k], probs[:, k]) for k in range(targets.shape[1])
              if 0 < targets[:, k].sum() < len(targets)]
    return float(np.mean(scores)) if scores else float("nan")


def _replicate_indices(n: int, rng: np.random.Generator, n_bootstrap: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_bootstrap, n))


def bootstrap_auroc(pred: Predictions, n_bootstrap: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Macro AUROC of ``n_bootstrap`` resamples of the test records [n_bootstrap]."""
    rng = np.random.default_rng(seed)
    return np.array([macro_auroc(pred.probs[i], pred.targets[i])
                     for i in _replicate_indices(len(pred.records), rng, n_bootstrap)])


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> Optional[List[float]]:
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return None
    tail = 100 * (1 - level) / 2
    return [float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))]


def mean_interval(values: Sequence[float], level: float = 0.95) -> Optional[List[float]]:
    """Student-t interval of the mean of values over seeds (None for fewer than two)."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(values) < 2:
        return None
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return [float(values.mean() - half), float(values.mean() + half)]


def paired_difference(pairs: Mapping[int, Tuple[Predictions, Predictions]], n_bootstrap: int = N_BOOTSTRAP,
                      seed: int = BOOTSTRAP_SEED) -> Dict[str, object]:
    """Macro AUROC of A minus B, averaged over seeds, with its paired-bootstrap 95 % interval.

    ``pairs`` maps each seed to the (A, B) predictions of that seed's split; each seed's test
    records are resampled once per replicate and both methods scored on the same resample.
    """
    rng = np.random.default_rng(seed)
    observed, replicates = [], []
    for _, (a, b) in sorted(pairs.items()):
        a, b = a.aligned_with(b)
        observed.append(macro_auroc(a.probs, a.targets) - macro_auroc(b.probs, b.targets))
        replicates.append([macro_auroc(a.probs[i], a.targets[i]) - macro_auroc(b.probs[i], b.targets[i])
                           for i in _replicate_indices(len(a.records), rng, n_bootstrap)])
    mean_replicates = np.nanmean(np.asarray(replicates), axis=0)
    interval = percentile_interval(mean_replicates)
    return {"difference": float(np.mean(observed)), "ci95": interval, "seeds": sorted(pairs),
            "excludes_zero": bool(interval is not None and (interval[0] > 0 or interval[1] < 0))}
