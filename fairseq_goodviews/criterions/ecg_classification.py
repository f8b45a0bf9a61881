"""Criterion ``ecg_classification``: cross-entropy (single-label) or BCE with logits (multi-label),
with the split-level metrics of :mod:`fairseq_goodviews.evaluation.metrics`.

Per-batch AUROC would be meaningless, so during validation the record probabilities of every
batch are collected in a meter and the metrics are computed once over the split. A record
scored from several crops gets the mean of its crops' probabilities (and the loss of that mean).
For the ``cinc2021`` label set the challenge score is logged too: the per-class thresholds are
chosen on the ``valid`` split and applied, in the same validation round, to the splits scored
after it (0.5 for every class until a ``valid`` split has been scored); the score logged on
``valid`` itself is therefore in-sample, the one on ``test`` is not.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging.meters import Meter

from fairseq_goodviews.evaluation.cinc2021 import challenge_metrics, choose_thresholds
from fairseq_goodviews.evaluation.metrics import classification_metrics, multilabel_metrics

#: Split whose predictions choose the CinC 2021 thresholds.
THRESHOLD_SPLIT = "valid"
# Thresholds chosen on the threshold split, per (data folder, label set), for the splits scored after it.
_thresholds: dict[str, np.ndarray] = {}


@dataclass
class EcgClassificationCriterionConfig(FairseqDataclass):
    pass


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
    class_names: list[str],
    label_set: str | None,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """The task's metrics of record probabilities [n, K] against targets ([n] indices or [n, K] multi-hot)."""
    if targets.ndim == 1:
        return classification_metrics(probs, targets, class_names)
    result = multilabel_metrics(probs, targets, class_names)
    if label_set == "cinc2021":
        result.update(challenge_metrics(probs, targets, thresholds))
    return result


class ScoreMeter(Meter):
    """Concatenates record probabilities and targets of every batch of one split."""

    def __init__(self):
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.probs: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.class_names: list[str] = []
        self.split: str | None = None
        self.label_set: str | None = None
        self.key = ""
        self._metrics: dict[str, Any] | None = None

    def update(
        self,
        probs: np.ndarray,
        targets: np.ndarray,
        class_names: list[str],
        split: str | None = None,
        label_set: str | None = None,
        key: str = "",
    ) -> None:
        self.probs.append(probs)
        self.targets.append(targets)
        self.class_names = list(class_names)
        self.split, self.label_set, self.key = split, label_set, key
        self._metrics = None

    def state_dict(self) -> dict:
        """Scores belong to one pass over a split and are not carried into checkpoints.

        (fairseq saves meter states in checkpoints, and numpy arrays there would make them
        unloadable with torch's safe ``weights_only`` loading.)
        """
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.reset()

    def metrics(self) -> dict[str, Any]:
        if self._metrics is None:
            probs, targets = np.concatenate(self.probs), np.concatenate(self.targets)
            thresholds = None
            if self.label_set == "cinc2021":
                if self.split == THRESHOLD_SPLIT:
                    _thresholds[self.key] = choose_thresholds(probs, targets)
                thresholds = _thresholds.get(self.key)
            result = split_metrics(probs, targets, self.class_names, self.label_set, thresholds)
            for name, value in result.pop("per_class_auroc", {}).items():
                result[f"auroc_{name}"] = value
            self._metrics = result
        return self._metrics

    @property
    def smoothed_value(self) -> float:
        return self.metrics()["macro_auroc"]


def _derived(key: str):
    return lambda meters: meters["_scores"].metrics()[key]


@register_criterion("ecg_classification", dataclass=EcgClassificationCriterionConfig)
class EcgClassificationCriterion(FairseqCriterion):
    #: Training logs are plain numbers (summed across workers); validation logs carry every record.
    training_logs_summable = True

    def forward(self, model, sample: dict, reduce: bool = True):
        logits = model(**sample["net_input"])["logits"]
        target = sample["target"]
        n_records = len(target)
        multi_label = target.dim() == 2
        crop_record = sample.get("crop_record")
        one_crop_each = crop_record is None or len(crop_record) == n_records
        reduction = "sum" if reduce else "none"
        if one_crop_each:
            probs = None
            if multi_label:
                loss = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").mean(dim=1)
            else:
                loss = F.cross_entropy(logits.float(), target, reduction="none")
        else:
            probs = record_probabilities(logits, crop_record, n_records, multi_label)
            if multi_label:
                loss = F.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), target, reduction="none").mean(dim=1)
            else:
                loss = F.nll_loss(probs.clamp(min=1e-7).log(), target, reduction="none")
        loss = loss.sum() if reduction == "sum" else loss
        logging_output = {
            "loss": loss.item() if reduce else loss.detach(),
            "nsentences": n_records,
            "ntokens": sample["ntokens"],
            "sample_size": n_records,
        }
        if not multi_label:
            predicted = (logits if probs is None else probs).argmax(dim=1)
            logging_output["correct"] = int((predicted == target).sum())
        if not model.training:
            if probs is None:
                probs = record_probabilities(logits.detach(), None, n_records, multi_label)
            logging_output["probs"] = probs.detach().cpu().numpy()
            logging_output["targets"] = target.cpu().numpy()
            logging_output["class_names"] = list(self.task.class_names)
            logging_output["split"] = sample.get("split")
            logging_output["label_set"] = getattr(self.task, "label_set", None)
            logging_output["threshold_key"] = f"{self.task.cfg.data}|{logging_output['label_set']}"
        return loss, n_records, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        n = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", sum(log.get("loss", 0) for log in logging_outputs) / max(n, 1), n, round=4)
        if any("correct" in log for log in logging_outputs):
            correct = sum(log.get("correct", 0) for log in logging_outputs)
            metrics.log_scalar("accuracy", correct / max(n, 1), n, round=4)
        scored = [log for log in logging_outputs if "probs" in log]
        if not scored:
            return
        for log in scored:
            metrics.log_custom(
                ScoreMeter,
                "_scores",
                log["probs"],
                log["targets"],
                log["class_names"],
                log.get("split"),
                log.get("label_set"),
                log.get("threshold_key", ""),
            )
        class_names = scored[0]["class_names"]
        if scored[0]["targets"].ndim == 1:
            keys = ["macro_auroc", "macro_auprc", "macro_f1"]
            per_class = class_names
        else:
            keys = ["macro_auroc", "macro_auprc", "f_max", "n_scored_labels"]
            if scored[0].get("label_set") == "cinc2021":
                keys.append("challenge_score")
            # Per-label AUROC only for the labels with both classes in the split (the others are NaN).
            counts = sum(log["targets"].sum(axis=0) for log in scored)
            per_class = [c for c, count in zip(class_names, counts, strict=True) if 0 < count < n]
        for key in ("n", *keys, *(f"auroc_{c}" for c in per_class)):
            metrics.log_derived(key, _derived(key))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False
