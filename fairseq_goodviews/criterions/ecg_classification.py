"""Criterion ``ecg_classification``: cross-entropy (single-label) or BCE with logits (multi-label).

A record scored from several crops gets the mean of its crops' probabilities (and the loss of
that mean). In validation every record's probabilities and target go into the logging output;
the task scores them over the whole split
(:meth:`~fairseq_goodviews.tasks.ecg_classification.EcgClassificationTask.reduce_metrics`).
"""

from dataclasses import dataclass

import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from fairseq_goodviews.scoring.classification import record_probabilities


@dataclass
class EcgClassificationCriterionConfig(FairseqDataclass):
    pass


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
            logging_output["split"] = sample.get("split")
        return loss, n_records, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        n = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", sum(log.get("loss", 0) for log in logging_outputs) / max(n, 1), n, round=4)
        if any("correct" in log for log in logging_outputs):
            correct = sum(log.get("correct", 0) for log in logging_outputs)
            metrics.log_scalar("accuracy", correct / max(n, 1), n, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False
