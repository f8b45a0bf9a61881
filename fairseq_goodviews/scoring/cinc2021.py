"""The PhysioNet/CinC Challenge 2021 challenge score and the choice of its thresholds.

Facts carried over from the Challenge's published evaluation tables (repository
``physionetchallenges/evaluation-2021``, the final 26-class ``weights.csv``; Reyna et al., "Will
Two Do? Varying Dimensions in Electrocardiography: the PhysioNet/Computing in Cardiology
Challenge 2021", CinC 2021), over the classes of :mod:`fairseq_goodviews.labels.cinc2021`:

- the reward matrix ``W`` (1 on the diagonal, partial credit for confusions with a similar
  outcome or treatment off it), :data:`CINC2021_WEIGHTS`;
- the score of binary outputs ``O`` against labels ``L`` (both [n, 26]):
  ``A[j, k] = sum_i L[i, j] O[i, k] / max(1, |L_i or O_i|)``, observed ``= sum(W * A)``, and the
  normalised score ``(observed - inactive) / (correct - inactive)``, where *correct* outputs the
  labels and *inactive* outputs the normal class alone for every record (so a perfect classifier
  scores 1 and always-normal scores 0).
"""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import numpy as np

from fairseq_goodviews.labels.cinc2021 import NORMAL_CLASS

# The official weights.csv (final 2021 release), rows and columns in the order of CINC2021_CLASSES.
_WEIGHTS_CSV = """\
1.0,0.5,0.475,0.3,0.475,0.4,0.3,0.3,0.35,0.35,0.3,0.425,0.45,0.35,0.25,0.3375,0.375,0.425,0.375,0.4,0.35,0.3,0.3,0.375,0.5,0.5
0.5,1.0,0.475,0.3,0.475,0.4,0.3,0.3,0.35,0.35,0.3,0.425,0.45,0.35,0.25,0.3375,0.375,0.425,0.375,0.4,0.35,0.3,0.3,0.375,0.5,0.5
0.475,0.475,1.0,0.325,0.475,0.425,0.325,0.325,0.375,0.375,0.325,0.45,0.475,0.375,0.275,0.3625,0.4,0.45,0.4,0.375,0.375,0.325,0.325,0.4,0.475,0.475
0.3,0.3,0.325,1.0,0.325,0.4,0.5,0.5,0.45,0.45,0.5,0.375,0.35,0.45,0.45,0.4625,0.425,0.375,0.425,0.2,0.45,0.5,0.5,0.425,0.3,0.3
0.475,0.475,0.475,0.325,1.0,0.425,0.325,0.325,0.375,0.375,0.325,0.45,0.475,0.375,0.275,0.3625,0.4,0.45,0.4,0.375,0.375,0.325,0.325,0.4,0.475,0.475
0.4,0.4,0.425,0.4,0.425,1.0,0.4,0.4,0.45,0.45,0.4,0.475,0.45,0.45,0.35,0.4375,0.475,0.475,0.475,0.3,0.45,0.4,0.4,0.475,0.4,0.4
0.3,0.3,0.325,0.5,0.325,0.4,1.0,0.5,0.45,0.45,0.5,0.375,0.35,0.45,0.45,0.4625,0.425,0.375,0.425,0.2,0.45,0.5,0.5,0.425,0.3,0.3
0.3,0.3,0.325,0.5,0.325,0.4,0.5,1.0,0.45,0.45,0.5,0.375,0.35,0.45,0.45,0.4625,0.425,0.375,0.425,0.2,0.45,0.5,0.5,0.425,0.3,0.3
0.35,0.35,0.375,0.45,0.375,0.45,0.45,0.45,1.0,0.5,0.45,0.425,0.4,0.5,0.4,0.4875,0.475,0.425,0.475,0.25,0.5,0.45,0.45,0.475,0.35,0.35
0.35,0.35,0.375,0.45,0.375,0.45,0.45,0.45,0.5,1.0,0.45,0.425,0.4,0.5,0.4,0.4875,0.475,0.425,0.475,0.25,0.5,0.45,0.45,0.475,0.35,0.35
0.3,0.3,0.325,0.5,0.325,0.4,0.5,0.5,0.45,0.45,1.0,0.375,0.35,0.45,0.45,0.4625,0.425,0.375,0.425,0.2,0.45,0.5,0.5,0.425,0.3,0.3
0.425,0.425,0.45,0.375,0.45,0.475,0.375,0.375,0.425,0.425,0.375,1.0,0.475,0.425,0.325,0.4125,0.45,0.475,0.45,0.325,0.425,0.375,0.375,0.45,0.425,0.425
0.45,0.45,0.475,0.35,0.475,0.45,0.35,0.35,0.4,0.4,0.35,0.475,1.0,0.4,0.3,0.3875,0.425,0.475,0.425,0.35,0.4,0.35,0.35,0.425,0.45,0.45
0.35,0.35,0.375,0.45,0.375,0.45,0.45,0.45,0.5,0.5,0.45,0.425,0.4,1.0,0.4,0.4875,0.475,0.425,0.475,0.25,0.5,0.45,0.45,0.475,0.35,0.35
0.25,0.25,0.275,0.45,0.275,0.35,0.45,0.45,0.4,0.4,0.45,0.325,0.3,0.4,1.0,0.4125,0.375,0.325,0.375,0.15,0.4,0.45,0.45,0.375,0.25,0.25
0.3375,0.3375,0.3625,0.4625,0.3625,0.4375,0.4625,0.4625,0.4875,0.4875,0.4625,0.4125,0.3875,0.4875,0.4125,1.0,0.4625,0.4125,0.4625,0.2375,0.4875,0.4625,0.4625,0.4625,0.3375,0.3375
0.375,0.375,0.4,0.425,0.4,0.475,0.425,0.425,0.475,0.475,0.425,0.45,0.425,0.475,0.375,0.4625,1.0,0.45,0.5,0.275,0.475,0.425,0.425,0.5,0.375,0.375
0.425,0.425,0.45,0.375,0.45,0.475,0.375,0.375,0.425,0.425,0.375,0.475,0.475,0.425,0.325,0.4125,0.45,1.0,0.45,0.325,0.425,0.375,0.375,0.45,0.425,0.425
0.375,0.375,0.4,0.425,0.4,0.475,0.425,0.425,0.475,0.475,0.425,0.45,0.425,0.475,0.375,0.4625,0.5,0.45,1.0,0.275,0.475,0.425,0.425,0.5,0.375,0.375
0.4,0.4,0.375,0.2,0.375,0.3,0.2,0.2,0.25,0.25,0.2,0.325,0.35,0.25,0.15,0.2375,0.275,0.325,0.275,1.0,0.25,0.2,0.2,0.275,0.4,0.4
0.35,0.35,0.375,0.45,0.375,0.45,0.45,0.45,0.5,0.5,0.45,0.425,0.4,0.5,0.4,0.4875,0.475,0.425,0.475,0.25,1.0,0.45,0.45,0.475,0.35,0.35
0.3,0.3,0.325,0.5,0.325,0.4,0.5,0.5,0.45,0.45,0.5,0.375,0.35,0.45,0.45,0.4625,0.425,0.375,0.425,0.2,0.45,1.0,0.5,0.425,0.3,0.3
0.3,0.3,0.325,0.5,0.325,0.4,0.5,0.5,0.45,0.45,0.5,0.375,0.35,0.45,0.45,0.4625,0.425,0.375,0.425,0.2,0.45,0.5,1.0,0.425,0.3,0.3
0.375,0.375,0.4,0.425,0.4,0.475,0.425,0.425,0.475,0.475,0.425,0.45,0.425,0.475,0.375,0.4625,0.5,0.45,0.5,0.275,0.475,0.425,0.425,1.0,0.375,0.375
0.5,0.5,0.475,0.3,0.475,0.4,0.3,0.3,0.35,0.35,0.3,0.425,0.45,0.35,0.25,0.3375,0.375,0.425,0.375,0.4,0.35,0.3,0.3,0.375,1.0,0.5
0.5,0.5,0.475,0.3,0.475,0.4,0.3,0.3,0.35,0.35,0.3,0.425,0.45,0.35,0.25,0.3375,0.375,0.425,0.375,0.4,0.35,0.3,0.3,0.375,0.5,1.0
"""
CINC2021_WEIGHTS: np.ndarray = np.loadtxt(StringIO(_WEIGHTS_CSV), delimiter=",")
CINC2021_WEIGHTS.flags.writeable = False


def modified_confusion(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """The Challenge's [K, K] confusion ``A[j, k]`` of binary ``labels`` and ``outputs`` [n, K].

    Each record contributes ``1 / max(1, |labels or outputs|)`` to every (label j, output k) pair.
    """
    labels = np.asarray(labels, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64)
    normalisation = np.maximum(np.logical_or(labels, outputs).sum(axis=1), 1.0)
    return (labels / normalisation[:, None]).T @ outputs


def challenge_score(
    labels: np.ndarray,
    outputs: np.ndarray,
    weights: np.ndarray = CINC2021_WEIGHTS,
    normal_class: int = NORMAL_CLASS,
) -> float:
    """Normalised Challenge score of binary ``outputs`` against ``labels``, both [n, K] in class order.

    0 when the inactive and the correct outputs score the same (e.g. every record is normal only).
    """
    labels = np.asarray(labels, dtype=bool)
    outputs = np.asarray(outputs, dtype=bool)
    if labels.shape != outputs.shape or labels.shape[1] != weights.shape[0]:
        raise ValueError(f"labels {labels.shape} and outputs {outputs.shape} must both be [n, {weights.shape[0]}]")
    inactive = np.zeros_like(labels)
    inactive[:, normal_class] = True
    observed = float(np.sum(weights * modified_confusion(labels, outputs)))
    correct = float(np.sum(weights * modified_confusion(labels, labels)))
    baseline = float(np.sum(weights * modified_confusion(labels, inactive)))
    if correct == baseline:
        return 0.0
    return (observed - baseline) / (correct - baseline)


def challenge_statistic(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray | None = None,
    weights: np.ndarray = CINC2021_WEIGHTS,
    normal_class: int = NORMAL_CLASS,
) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``challenge_score`` of ``probs >= thresholds`` (both fixed; 0.5 for every class if None)
    against ``labels`` [n, 26] as a function of record weights [b, n] -> [b] (bootstrap replicates).

    Every sum of the score is over records: record i adds ``(L_i W) . O_i / max(1, |L_i or O_i|)``
    to the observed, correct and inactive totals, so a replicate's totals are weighted sums.
    """
    labels = np.asarray(labels, dtype=bool)
    thresholds = np.full(labels.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    outputs = np.asarray(probs) >= thresholds
    inactive = np.zeros_like(labels)
    inactive[:, normal_class] = True
    rewards = labels.astype(np.float64) @ weights  # [n, K]: reward of each output class for each record

    def per_record(chosen: np.ndarray) -> np.ndarray:
        return (rewards * chosen).sum(axis=1) / np.maximum(np.logical_or(labels, chosen).sum(axis=1), 1.0)

    observed, correct, baseline = per_record(outputs), per_record(labels), per_record(inactive)

    def statistic(record_weights: np.ndarray) -> dict[str, np.ndarray]:
        o, c, b = record_weights @ observed, record_weights @ correct, record_weights @ baseline
        span = c - b
        measurable = np.abs(span) > 1e-12 * np.maximum(np.abs(c), 1.0)
        return {"challenge_score": np.divide(o - b, span, out=np.zeros_like(span), where=measurable)}

    return statistic


#: Candidate thresholds searched per class.
THRESHOLD_GRID: np.ndarray = np.round(np.arange(0.05, 0.96, 0.05), 2)


def choose_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    sweeps: int = 2,
    grid: np.ndarray = THRESHOLD_GRID,
) -> np.ndarray:
    """Per-class thresholds [K] that maximise the challenge score of ``probs >= t`` on (validation) data.

    Coordinate ascent from 0.5 for every class: each sweep visits the classes in order and keeps,
    for each, the grid value with the highest score given the others (the lowest on ties), so the
    result is deterministic.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    thresholds = np.full(probs.shape[1], 0.5)
    best = challenge_score(labels, probs >= thresholds)
    for _ in range(sweeps):
        for k in range(probs.shape[1]):
            for candidate in grid:
                trial = thresholds.copy()
                trial[k] = candidate
                score = challenge_score(labels, probs >= trial)
                if score > best + 1e-12:
                    best, thresholds = score, trial
    return thresholds


def challenge_metrics(
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> dict[str, float | list[float]]:
    """``challenge_score`` of ``probs`` [n, 26] at ``thresholds`` [26] (0.5 for every class if None)."""
    thresholds = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return {
        "challenge_score": challenge_score(labels, np.asarray(probs) >= thresholds),
        "challenge_thresholds": [float(t) for t in thresholds],
    }


#: Split whose predictions choose the thresholds during training.
THRESHOLD_SPLIT = "valid"


class ChallengeThresholds:
    """Per-class thresholds chosen on one split and applied to the splits scored after it.

    ``thresholds`` [K] is None until the split ``choose_on`` has been scored (the challenge score
    then applies 0.5 to every class); each scoring of that split chooses them again.
    """

    def __init__(self, choose_on: str = THRESHOLD_SPLIT) -> None:
        self.choose_on = choose_on
        self.thresholds: np.ndarray | None = None

    def for_split(self, split: str | None, probs: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """The thresholds [K] to score ``split`` with, chosen first on ``probs`` and ``labels``
        (both [n, K]) when ``split`` is the split they are chosen on."""
        if split == self.choose_on:
            self.thresholds = choose_thresholds(probs, labels)
        return self.thresholds
