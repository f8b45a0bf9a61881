"""The PhysioNet/CinC Challenge 2021 label set and challenge score.

Facts carried over from the Challenge's published evaluation tables (repository
``physionetchallenges/evaluation-2021``: ``dx_mapping_scored.csv`` and the final 26-class
``weights.csv``; Reyna et al., "Will Two Do? Varying Dimensions in Electrocardiography: the
PhysioNet/Computing in Cardiology Challenge 2021", CinC 2021):

- 30 scored SNOMED CT codes, four pairs of which are scored as one diagnosis
  (CLBBB|LBBB, CRBBB|RBBB, PAC|SVPB, PVC|VPB), so 26 classes;
- the reward matrix ``W`` (1 on the diagonal, partial credit for confusions with a similar
  outcome or treatment off it), :data:`CINC2021_WEIGHTS`;
- the normal class, sinus rhythm 426783006;
- the score of binary outputs ``O`` against labels ``L`` (both [n, 26]):
  ``A[j, k] = sum_i L[i, j] O[i, k] / max(1, |L_i or O_i|)``, observed ``= sum(W * A)``, and the
  normalised score ``(observed - inactive) / (correct - inactive)``, where *correct* outputs the
  labels and *inactive* outputs the normal class alone for every record (so a perfect classifier
  scores 1 and always-normal scores 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO

import numpy as np

#: (abbreviation, SNOMED CT codes scored as that class) in the order of the official weights.csv.
CINC2021_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AF", ("164889003",)),
    ("AFL", ("164890007",)),
    ("BBB", ("6374002",)),
    ("Brady", ("426627000",)),
    ("CLBBB|LBBB", ("733534002", "164909002")),
    ("CRBBB|RBBB", ("713427006", "59118001")),
    ("IAVB", ("270492004",)),
    ("IRBBB", ("713426002",)),
    ("LAD", ("39732003",)),
    ("LAnFB", ("445118002",)),
    ("LPR", ("164947007",)),
    ("LQRSV", ("251146004",)),
    ("LQT", ("111975006",)),
    ("NSIVCB", ("698252002",)),
    ("NSR", ("426783006",)),
    ("PAC|SVPB", ("284470004", "63593006")),
    ("PR", ("10370003",)),
    ("PRWP", ("365413008",)),
    ("PVC|VPB", ("427172004", "17338001")),
    ("QAb", ("164917005",)),
    ("RAD", ("47665007",)),
    ("SA", ("427393009",)),
    ("SB", ("426177001",)),
    ("STach", ("427084000",)),
    ("TAb", ("164934002",)),
    ("TInv", ("59931005",)),
)
CINC2021_CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in CINC2021_CLASSES)
#: SNOMED CT code -> class index (both codes of an equivalent pair map to the same class).
CINC2021_CODE_TO_CLASS: dict[str, int] = {
    code: index for index, (_, codes) in enumerate(CINC2021_CLASSES) for code in codes
}
NORMAL_CODE = "426783006"
NORMAL_CLASS = CINC2021_CODE_TO_CLASS[NORMAL_CODE]

# The official weights.csv (final 2021 release), rows and columns in CINC2021_CLASSES order.
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


def cinc2021_multi_hot(codes: Sequence[str]) -> np.ndarray:
    """Multi-hot [26] float32 target of a record's SNOMED CT codes (unscored codes are ignored)."""
    target = np.zeros(len(CINC2021_CLASSES), dtype=np.float32)
    for code in codes:
        index = CINC2021_CODE_TO_CLASS.get(str(code).strip())
        if index is not None:
            target[index] = 1.0
    return target


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
