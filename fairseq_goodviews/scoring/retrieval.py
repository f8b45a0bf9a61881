"""Patient retrieval metrics: the gallery/probe protocol, top-k accuracy and the equal error rate.

Protocol (Oh et al., CHIL 2022, second downstream task). Within one split, the patients with at
least two records take part: each one's first record in order is its gallery entry and its other
records are probes (:func:`gallery_probe_split`). Every probe is compared with every gallery
entry by the cosine similarity of their embeddings (:func:`retrieval_metrics`):

- ``top1`` / ``top5``: fraction of probes whose own patient's gallery entry is among the 1 / 5
  most similar gallery entries. Ties count against the probe (a gallery entry scoring exactly
  as high as the true one ranks before it), so a constant encoder scores 0, not 1.
- ``eer``: equal error rate of the verification scores, genuine pairs (probe, its patient's
  gallery entry) against impostor pairs (probe, any other gallery entry): the point where the
  false-accept and false-reject rates of a similarity threshold are equal, linearly
  interpolated between the two neighbouring thresholds of the ROC curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_curve

from fairseq_goodviews.errors import GoodviewsError


class IdentificationError(GoodviewsError, ValueError):
    """Data or a checkpoint that the identification protocol cannot use; the message names it."""


@dataclass
class GalleryProbe:
    """Indices into a split's records: gallery entries, probes, and the patient of each."""

    gallery: np.ndarray
    probe: np.ndarray
    gallery_patients: np.ndarray
    probe_patients: np.ndarray


def gallery_probe_split(
    patient_ids: Sequence[Any], distractors: bool = False, where: str = "split", advice: str = ""
) -> GalleryProbe:
    """First record of each patient with >= 2 records = gallery, the others = probes.

    ``patient_ids`` lists the patient of each record in manifest order (None/NaN: no patient,
    left out). With ``distractors`` the single-record patients join the gallery. Raises
    :class:`IdentificationError` (naming ``where``, saying how many patients have two or more
    records, and ending with the caller's ``advice``) when fewer than two patients are in the
    gallery, or no patient has a probe.
    """
    ids = pd.Series(list(patient_ids), dtype=object)
    known = ids.notna() & (ids.astype(str).str.strip() != "")
    keys = ids.where(known).astype(str)
    counts = keys[known].value_counts()
    repeated = set(counts.index[counts >= 2])
    found = f"({int(known.sum())} records, {len(counts)} patients)"
    advice = f"; {advice}" if advice else ""
    if not repeated:
        raise IdentificationError(
            f"{where}: no patient has two or more records {found}; identification needs a gallery and a probe "
            f"record per patient{advice}"
        )
    gallery, probe, seen = [], [], set()
    for index, (is_known, key) in enumerate(zip(known, keys, strict=True)):
        if not is_known or (key not in repeated and not distractors):
            continue
        (probe if key in seen else gallery).append(index)
        seen.add(key)
    if len(gallery) < 2:
        singles = len(counts) - len(repeated)
        distractor_advice = (
            f"; --distractors would add its {singles} single-record patient(s) to the gallery"
            if singles and not distractors
            else ""
        )
        raise IdentificationError(
            f"{where}: only one patient ({next(iter(repeated))}) has two or more records {found}; retrieval needs "
            f"at least two in the gallery{distractor_advice}{advice}"
        )
    gallery_idx, probe_idx = np.array(gallery, dtype=np.int64), np.array(probe, dtype=np.int64)
    return GalleryProbe(gallery_idx, probe_idx, keys.to_numpy()[gallery_idx], keys.to_numpy()[probe_idx])


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """EER of similarity scores: genuine pairs should score higher than impostor pairs.

    The false-reject rate (1 - TPR) and false-accept rate (FPR) of :func:`sklearn.metrics.roc_curve`
    are followed over the decreasing thresholds until they cross; the EER is their common value
    at the crossing, linearly interpolated between the two thresholds around it.
    """
    genuine, impostor = np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError("the EER needs at least one genuine and one impostor score")
    labels = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    fpr, tpr, _ = roc_curve(labels, np.r_[genuine, impostor], drop_intermediate=False)
    frr = 1.0 - tpr
    gap = frr - fpr  # starts at 1 (threshold above every score), ends at -1, never increases
    i = int(np.argmax(gap <= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


@dataclass
class Similarities:
    """Cosine similarities of probes to gallery entries, with each probe's true entry."""

    #: [P, G] cosine similarity of every probe to every gallery entry.
    similarity: np.ndarray
    #: [P] gallery position of each probe's own patient.
    truth: np.ndarray

    @property
    def genuine(self) -> np.ndarray:
        """[P] similarity of each probe to its own patient's gallery entry."""
        return self.similarity[np.arange(len(self.truth)), self.truth]

    def rank(self) -> np.ndarray:
        """[P] rank of the true entry: the number of other gallery entries scoring at least as high."""
        return (self.similarity >= self.genuine[:, None]).sum(axis=1) - 1

    def impostor_mask(self) -> np.ndarray:
        """[P, G] the (probe, other patient's entry) pairs."""
        mask = np.ones_like(self.similarity, dtype=bool)
        mask[np.arange(len(self.truth)), self.truth] = False
        return mask


def similarities(
    gallery: np.ndarray, gallery_patients: Sequence[Any], probes: np.ndarray, probe_patients: Sequence[Any]
) -> Similarities:
    """Cosines of ``probes`` [P, D] to ``gallery`` [G, D]; ``gallery_patients`` [G] holds distinct
    patient ids and every id of ``probe_patients`` [P] must be among them."""
    gallery_patients, probe_patients = np.asarray(gallery_patients), np.asarray(probe_patients)
    if len(set(gallery_patients.tolist())) != len(gallery_patients):
        raise ValueError("gallery patients must be distinct")
    position = {p: i for i, p in enumerate(gallery_patients.tolist())}
    missing = [p for p in probe_patients.tolist() if p not in position]
    if missing:
        raise ValueError(f"probe patient {missing[0]!r} has no gallery entry")
    g = torch.nn.functional.normalize(torch.as_tensor(np.asarray(gallery, dtype=np.float64)), dim=1)
    p = torch.nn.functional.normalize(torch.as_tensor(np.asarray(probes, dtype=np.float64)), dim=1)
    truth = np.array([position[q] for q in probe_patients.tolist()], dtype=np.int64)
    return Similarities((p @ g.T).numpy(), truth)


def retrieval_metrics(
    gallery: np.ndarray,
    gallery_patients: Sequence[Any],
    probes: np.ndarray,
    probe_patients: Sequence[Any],
) -> dict[str, float]:
    """Top-1/top-5 accuracy and EER of cosine retrieval.

    ``gallery`` [G, D] and ``probes`` [P, D] are embeddings; ``gallery_patients`` [G] holds
    distinct patient ids and every id of ``probe_patients`` [P] must be among them. Top-k with
    k >= G is 1 by construction.
    """
    scores = similarities(gallery, gallery_patients, probes, probe_patients)
    rank = scores.rank()
    return {
        "top1": float(np.mean(rank < 1)),
        "top5": float(np.mean(rank < 5)),
        "eer": equal_error_rate(scores.genuine, scores.similarity[scores.impostor_mask()]),
        "n_gallery": len(gallery_patients),
        "n_probe": len(probe_patients),
        "chance_top1": 1.0 / len(gallery_patients),
    }


#: At most this many similarity thresholds for the EER of bootstrap replicates.
EER_THRESHOLDS = 2048


def retrieval_statistic(scores: Similarities) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``top1``, ``top5`` and ``eer`` as functions of probe weights [b, P] -> [b] (bootstrap
    replicates; a probe's impostor pairs carry its weight).

    The EER of a replicate follows the false-accept and false-reject rates over the distinct
    similarities, or over :data:`EER_THRESHOLDS` quantiles of them when there are more, and
    interpolates linearly at the crossing, as :func:`equal_error_rate` does over every score.
    """
    rank = scores.rank()
    genuine, similarity, impostor = scores.genuine, scores.similarity, scores.impostor_mask()
    grid = np.unique(similarity)
    if len(grid) > EER_THRESHOLDS:
        grid = np.unique(np.quantile(similarity, np.linspace(0.0, 1.0, EER_THRESHOLDS)))
    n_probes, n_levels = similarity.shape[0], len(grid) + 1

    def accepted(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """[P, T + 1] per probe, how many of its ``values`` are >= each threshold, highest first
        (column 0: a threshold above every score)."""
        levels = np.searchsorted(grid, values, side="right")  # thresholds grid[:level] accept the value
        counts = np.bincount(rows * n_levels + levels, minlength=n_probes * n_levels).reshape(n_probes, n_levels)
        at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, :-1]  # thresholds grid[-1], grid[-2], ...
        return np.concatenate([np.zeros((n_probes, 1)), at_or_above], axis=1)

    rows = np.broadcast_to(np.arange(n_probes)[:, None], similarity.shape)
    impostors_accepted = accepted(similarity[impostor], rows[impostor])
    genuine_accepted = accepted(genuine, np.arange(n_probes))
    impostors_per_probe = impostor.sum(axis=1).astype(np.float64)

    def eer(weights: np.ndarray) -> np.ndarray:
        false_accept = (weights @ impostors_accepted) / (weights @ impostors_per_probe)[:, None]
        false_reject = 1.0 - (weights @ genuine_accepted) / weights.sum(axis=1)[:, None]
        gap = false_reject - false_accept  # 1 above every score, then never increasing
        i = np.argmax(gap <= 0, axis=1)
        rows_b = np.arange(len(weights))
        before = np.maximum(i - 1, 0)
        g0, g1 = gap[rows_b, before], gap[rows_b, i]
        f0, f1 = false_accept[rows_b, before], false_accept[rows_b, i]
        step = np.divide(g0, g0 - g1, out=np.ones_like(g0), where=(g0 - g1) > 0)
        return np.where((g1 == 0) | (i == 0), f1, f0 + step * (f1 - f0))

    def statistic(weights: np.ndarray) -> dict[str, np.ndarray]:
        total = weights.sum(axis=1)
        return {
            "top1": (weights @ (rank < 1)) / total,
            "top5": (weights @ (rank < 5)) / total,
            "eer": eer(weights),
        }

    return statistic


def standardizer(fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of embeddings ``fit`` [N, D] (constant dimensions: 1)."""
    mean, std = fit.mean(axis=0), fit.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)
