"""Criterion ``arcface``: additive angular margin softmax (Deng et al., ArcFace, CVPR 2019).

Training: with ``cos θ_j`` the cosine between a record's embedding and patient ``j``'s
prototype, the logits are ``s * cos(θ_y + m)`` for the record's own patient ``y`` and
``s * cos θ_j`` for the others, then cross-entropy. Where ``θ_y + m`` would pass π, the target
logit is ``s * (cos θ_y - m sin m)`` instead (ArcFace's published fallback, which keeps it
decreasing in ``θ_y``). Validation: the embeddings of a whole split are collected in a meter and
scored once with the gallery/probe protocol (top-1, top-5, EER), since validation patients are
not training patients.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging.meters import Meter

from fairseq_goodviews.scoring.retrieval import gallery_probe_split, retrieval_metrics


@dataclass
class ArcFaceCriterionConfig(FairseqDataclass):
    scale: float = field(default=30.0, metadata={"help": "s: scale of the cosine logits"})
    margin: float = field(default=0.5, metadata={"help": "m: additive angular margin, radians (ArcFace: 0.5)"})


def additive_angular_margin(cosine: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """``cosine`` [B, C] with column ``target[b]`` of row ``b`` replaced by ``cos(θ + margin)``.

    ``target`` [B] holds class indices. Beyond ``θ > π - margin`` the replacement is
    ``cos θ - margin * sin(margin)``.
    """
    cos_t = cosine.gather(1, target[:, None]).clamp(-1.0, 1.0)
    sin_t = (1.0 - cos_t * cos_t).clamp(min=1e-12).sqrt()
    shifted = cos_t * math.cos(margin) - sin_t * math.sin(margin)
    fallback = cos_t - margin * math.sin(margin)
    target_logit = torch.where(cos_t > math.cos(math.pi - margin), shifted, fallback)
    return cosine.scatter(1, target[:, None], target_logit)


class EmbeddingMeter(Meter):
    """Embeddings, patient labels and record ids of every batch of one validation split."""

    def __init__(self):
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.embeddings: list[np.ndarray] = []
        self.patients: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []
        self.distractors = False

    def update(self, embeddings: np.ndarray, patients: np.ndarray, ids: np.ndarray, distractors: bool) -> None:
        self.embeddings.append(embeddings)
        self.patients.append(patients)
        self.ids.append(ids)
        self.distractors = distractors

    def state_dict(self) -> dict:
        """Embeddings belong to one pass over a split and are not carried into checkpoints."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.reset()

    def metrics(self) -> dict[str, float]:
        order = np.argsort(np.concatenate(self.ids), kind="stable")
        embeddings, patients = np.concatenate(self.embeddings)[order], np.concatenate(self.patients)[order]
        protocol = gallery_probe_split(patients, self.distractors, "validation split")
        return retrieval_metrics(
            embeddings[protocol.gallery], protocol.gallery_patients, embeddings[protocol.probe], protocol.probe_patients
        )

    @property
    def smoothed_value(self) -> float:
        return self.metrics()["top1"]


def _derived(key: str):
    return lambda meters: meters["_retrieval"].metrics()[key]


@register_criterion("arcface", dataclass=ArcFaceCriterionConfig)
class ArcFaceCriterion(FairseqCriterion):
    #: Training logs are plain numbers (summed across workers); validation logs carry every record.
    training_logs_summable = True

    def __init__(self, task, scale: float, margin: float):
        super().__init__(task)
        self.scale = scale
        self.margin = margin

    def forward(self, model, sample: dict, reduce: bool = True):
        output = model(**sample["net_input"])
        target = sample["target"]
        n = target.numel()
        logging_output = {"nsentences": n, "ntokens": sample["ntokens"], "sample_size": n}
        if not model.training:
            logging_output["embeddings"] = output["embedding"].detach().float().cpu().numpy()
            logging_output["patients"] = target.cpu().numpy()
            logging_output["ids"] = sample["id"].cpu().numpy()
            logging_output["distractors"] = bool(getattr(self.task.cfg, "distractors", False))
            return output["embedding"].new_zeros(()), n, logging_output
        cosine = output["cosine"]
        logits = self.scale * additive_angular_margin(cosine, target, self.margin)
        loss = F.cross_entropy(logits, target, reduction="sum" if reduce else "none")
        logging_output["loss"] = loss.item() if reduce else loss.detach()
        logging_output["correct"] = int((cosine.argmax(dim=1) == target).sum())
        return loss, n, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        trained = [log for log in logging_outputs if "loss" in log]
        if trained:
            n = sum(log["sample_size"] for log in trained)
            metrics.log_scalar("loss", sum(log["loss"] for log in trained) / max(n, 1), n, round=4)
            metrics.log_scalar("accuracy", sum(log["correct"] for log in trained) / max(n, 1), n, round=4)
        scored = [log for log in logging_outputs if "embeddings" in log]
        if not scored:
            return
        for log in scored:
            metrics.log_custom(
                EmbeddingMeter, "_retrieval", log["embeddings"], log["patients"], log["ids"], log["distractors"]
            )
        for key in ("top1", "top5", "eer"):
            metrics.log_derived(key, _derived(key))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False
