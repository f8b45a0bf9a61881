"""Uncertainty of Table 1: bootstrap intervals of a run's test AUROC and paired differences.

A run's predictions (``test_predictions.csv``: one row per test record, its target(s) and every
class's probability) are resampled with replacement; the macro one-vs-rest AUROC of each
replicate gives a percentile interval.

Two methods trained and tested on the same split (the same seed) are compared pairwise. With two
or more seeds the difference is the mean of the per-seed differences with a Student-t interval
over seeds (``t_over_seeds``): every seed trains new models (and, with split seeds, draws a new
split), so the spread of the per-seed differences holds the training randomness, the split and
the test records' sampling alike. With one seed there is nothing to measure the training
randomness with: the interval is the paired bootstrap of that seed's test records
(``records_one_seed``), conditional on the two trained models, and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.scoring.bootstrap import resampling_weights
from fairseq_goodviews.scoring.classification import RankedScores, finite_mean

#: Bootstrap replicates per interval, and the seed that makes every report reproducible.
N_BOOTSTRAP = 1000
BOOTSTRAP_SEED = 0
#: How a paired difference's interval was made (``interval`` in ``results.json``).
T_OVER_SEEDS = "t_over_seeds"
RECORDS_ONE_SEED = "records_one_seed"


class DifferentTestRecordsError(GoodviewsError, ValueError):
    """Two runs compared pairwise scored different test records."""


class Predictions:
    """A run's test predictions: record ids [n], probabilities [n, K], multi-hot targets [n, K]."""

    def __init__(self, records: np.ndarray, probs: np.ndarray, targets: np.ndarray):
        self.records, self.probs, self.targets = records, probs, targets

    @classmethod
    def read(cls, path: str | Path) -> Predictions:
        frame = pd.read_csv(path)
        prob_columns = [c for c in frame.columns if c.startswith("prob_")]
        classes = [c[len("prob_") :] for c in prob_columns]
        if "target" in frame.columns:  # single-label: one class name per record
            targets = (frame["target"].astype(str).to_numpy()[:, None] == np.array(classes)[None, :]).astype(np.int8)
        else:
            targets = frame[[f"target_{name}" for name in classes]].to_numpy(dtype=np.int8)
        return cls(frame["record"].astype(str).to_numpy(), frame[prob_columns].to_numpy(np.float64), targets)

    def aligned_with(self, other: Predictions) -> Tuple[Predictions, Predictions]:
        """Both in one record order (a paired comparison); :class:`DifferentTestRecordsError` unless
        both scored the same records."""
        common, mine, theirs = np.intersect1d(self.records, other.records, return_indices=True)
        if len(common) != len(self.records) or len(common) != len(other.records):
            raise DifferentTestRecordsError(
                f"a paired comparison needs the same test records: {len(self.records)} and {len(other.records)} "
                f"records, {len(common)} in common"
            )
        return (
            Predictions(common, self.probs[mine], self.targets[mine]),
            Predictions(common, other.probs[theirs], other.targets[theirs]),
        )


def macro_auroc(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean one-vs-rest AUROC over the classes that have both positives and negatives (NaN if none).

    Each class's AUROC is the Mann-Whitney statistic from average ranks (ties count one half),
    which is what ``sklearn.metrics.roc_auc_score`` computes, without its per-call validation
    (the seed simulations call this thousands of times).
    """
    scores = []
    for k in range(targets.shape[1]):
        positive = targets[:, k].astype(bool)
        n_pos = int(positive.sum())
        n_neg = len(positive) - n_pos
        if n_pos and n_neg:
            ranks = stats.rankdata(probs[:, k])
            scores.append((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(scores)) if scores else float("nan")


def bootstrap_macro_auroc(pred: Predictions, counts: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest AUROC of each resample [B] (classes without both kinds left out, as in
    :func:`macro_auroc`; a class present on the full set can vanish from a resample)."""
    columns = [k for k in range(pred.targets.shape[1]) if 0 < pred.targets[:, k].sum() < len(pred.targets)]
    if not columns:
        return np.full(len(counts), np.nan)
    per_class = np.stack([RankedScores(pred.probs[:, k], pred.targets[:, k]).auroc(counts) for k in columns], axis=1)
    return finite_mean(per_class, axis=1)


def bootstrap_auroc(pred: Predictions, n_bootstrap: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """Macro AUROC of ``n_bootstrap`` resamples of the test records [n_bootstrap]."""
    counts = resampling_weights(np.arange(len(pred.records)), n_bootstrap, np.random.default_rng(seed))
    return bootstrap_macro_auroc(pred, counts)


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


def paired_difference(
    pairs: Mapping[int, Tuple[Predictions, Predictions]], n_bootstrap: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> Dict[str, object]:
    """Macro AUROC of A minus B, averaged over seeds, with its 95 % interval.

    ``pairs`` maps each seed to the (A, B) predictions of that seed's split, which must cover the
    same records. A seed whose test records give either method no macro AUROC is left out. Two or
    more scored seeds: the Student-t interval of the per-seed differences (``t_over_seeds``). One:
    the percentile interval of the paired bootstrap of its test records, both methods scored on the
    same resamples (``records_one_seed``). None: no difference (``difference`` None).
    """
    observed, aligned = [], []
    for _, (a, b) in sorted(pairs.items()):
        a, b = a.aligned_with(b)
        difference = macro_auroc(a.probs, a.targets) - macro_auroc(b.probs, b.targets)
        if np.isfinite(difference):
            observed.append(difference)
            aligned.append((a, b))
    interval, method = None, None
    if len(aligned) >= 2:
        interval, method = mean_interval(observed), T_OVER_SEEDS
    elif aligned:
        a, b = aligned[0]
        counts = resampling_weights(np.arange(len(a.records)), n_bootstrap, np.random.default_rng(seed))
        replicates = bootstrap_macro_auroc(a, counts) - bootstrap_macro_auroc(b, counts)
        interval, method = percentile_interval(replicates), RECORDS_ONE_SEED
    return {
        "difference": float(np.mean(observed)) if observed else None,
        "ci95": interval,
        "interval": method,
        "n_seeds": len(observed),
        "per_seed": [float(x) for x in observed],
        "seeds": sorted(pairs),
        "excludes_zero": bool(interval is not None and (interval[0] > 0 or interval[1] < 0)),
    }
