"""Criterion ``ecg_classification``: cross-entropy, with AUROC/AUPRC/accuracy/F1 over a whole split.

Per-batch AUROC would be meaningless, so during validation the class probabilities of every
batch are collected in a meter and the metrics are computed once over the split.
"""

from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging.meters import Meter

from fairseq_goodviews.evaluation.metrics import classification_metrics


@dataclass
class EcgClassificationCriterionConfig(FairseqDataclass):
    pass


class ScoreMeter(Meter):
    """Concatenates class probabilities and targets of every batch of one split."""

    def __init__(self):
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.probs: List[np.ndarray] = []
        self.targets: List[np.ndarray] = []
        self.class_names: List[str] = []

    def update(self, probs: np.ndarray, targets: np.ndarray, class_names: List[str]) -> None:
        self.probs.append(probs)
        self.targets.append(targets)
        self.class_names = list(class_names)

    def state_dict(self) -> Dict:
        """Scores belong to one pass over a split and are not carried into checkpoints.

        (fairseq saves meter states in checkpoints, and numpy arrays there would make them
        unloadable with torch's safe ``weights_only`` loading.)
        """
        return {}

    def load_state_dict(self, state_dict: Dict) -> None:
        self.reset()

    def metrics(self) -> Dict[str, float]:
        return classification_metrics(np.concatenate(self.probs), np.concatenate(self.targets), self.class_names)

    @property
    def smoothed_value(self) -> float:
        return self.metrics()["macro_auroc"]


def _derived(key: str):
    return lambda meters: meters["_scores"].metrics()[key]


@register_criterion("ecg_classification", dataclass=EcgClassificationCriterionConfig)
class EcgClassificationCriterion(FairseqCriterion):
    def forward(self, model, sample: Dict, reduce: bool = True):
        logits = model(**sample["net_input"])["logits"]
        target = sample["target"]
        loss = F.cross_entropy(logits.float(), target, reduction="sum" if reduce else "none")
        logging_output = {
            "loss": loss.item() if reduce else loss.detach(),
            "correct": int((logits.argmax(dim=1) == target).sum()),
            "nsentences": target.numel(),
            "ntokens": sample["ntokens"],
            "sample_size": target.numel(),
        }
        if not model.training:
            logging_output["probs"] = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
            logging_output["targets"] = target.cpu().numpy()
            logging_output["class_names"] = list(self.task.class_names)
        return loss, target.numel(), logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        n = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", sum(log.get("loss", 0) for log in logging_outputs) / max(n, 1), n, round=4)
        metrics.log_scalar("accuracy", sum(log.get("correct", 0) for log in logging_outputs) / max(n, 1), n, round=4)
        scored = [log for log in logging_outputs if "probs" in log]
        if not scored:
            return
        for log in scored:
            metrics.log_custom(ScoreMeter, "_scores", log["probs"], log["targets"], log["class_names"])
        class_names = scored[0]["class_names"]
        for key in ("macro_auroc", "macro_auprc", "macro_f1", *(f"auroc_{c}" for c in class_names)):
            metrics.log_derived(key, _derived(key))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False
