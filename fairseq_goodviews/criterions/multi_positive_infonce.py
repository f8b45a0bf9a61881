"""Criterion ``multi_positive_infonce``: the one contrastive loss shared by every strategy.

``L_i = -log( sum_{j in P(i)} exp(s_ij / tau) / sum_{j != i} exp(s_ij / tau) )`` with cosine
similarities ``s``, computed in log space and in float32 whatever the autocast precision of the
model (bf16 logits would round similarities at temperature 0.07). Self-similarity is excluded
from both sums (masked, not zeroed). Anchors without any positive contribute nothing (and no
NaN gradient) and are counted; where no anchor of the logged batches has one, the loss cannot be
measured and is logged as inf (with no weight), so that a validation split without pairs never
scores 0 and becomes fairseq's best checkpoint. With several workers the embeddings (with gradient) and the view
metadata are gathered, so every anchor is contrasted with the global batch; each worker builds
only its own anchors' rows of the relation.
"""

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from fairseq_goodviews.criterions.distributed import gather_views


@dataclass
class MultiPositiveInfoNceConfig(FairseqDataclass):
    temperature: float = field(default=0.07, metadata={"help": "softmax temperature tau (paper 0.07, CLOCS 0.1)"})


def multi_positive_info_nce(
    embeddings: torch.Tensor, candidates: torch.Tensor, positive: torch.Tensor, offset: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-anchor losses and positive counts.

    ``embeddings`` [n, d] are the anchors, rows ``offset .. offset+n`` of ``candidates`` [N, d];
    ``positive`` [n, N] is the relation P restricted to those anchors. Returns float32 ``loss``
    [n] (0 where an anchor has no positive) and ``n_positive`` [n].
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        anchors = F.normalize(embeddings.float(), dim=-1)
        others = F.normalize(candidates.float(), dim=-1)
        logits = anchors @ others.t() / temperature
    rows = torch.arange(anchors.shape[0], device=logits.device)
    not_self = torch.ones_like(positive, dtype=torch.bool)
    not_self[rows, rows + offset] = False
    positive = positive & not_self
    # A finite fill: a row with nothing left gives a finite logsumexp, hence no NaN gradient.
    excluded = torch.finfo(logits.dtype).min
    log_denominator = torch.logsumexp(logits.masked_fill(~not_self, excluded), dim=1)
    log_numerator = torch.logsumexp(logits.masked_fill(~positive, excluded), dim=1)
    n_positive = positive.sum(dim=1)
    loss = torch.where(n_positive > 0, log_denominator - log_numerator, 0.0)
    return loss, n_positive


@register_criterion("multi_positive_infonce", dataclass=MultiPositiveInfoNceConfig)
class MultiPositiveInfoNceCriterion(FairseqCriterion):
    def __init__(self, task, temperature: float = 0.07):
        super().__init__(task)
        self.temperature = temperature

    def forward(self, model, sample: Mapping, reduce: bool = True):
        embeddings = model(**sample["net_input"])["embedding"]
        candidates, meta, offset = gather_views(embeddings, sample["views_meta"])
        local = self.task.positive_mask(meta, slice(offset, offset + embeddings.shape[0]))
        loss, n_positive = multi_positive_info_nce(embeddings, candidates, local, offset, self.temperature)
        with_positive = int((n_positive > 0).sum())
        logging_output = {
            "loss": loss.sum().item() if reduce else loss.detach(),
            "views": embeddings.shape[0],
            "anchors_with_positive": with_positive,
            "anchors_without_positive": embeddings.shape[0] - with_positive,
            "positives": int(n_positive.sum()),
            "items_without_partner": int(sample.get("items_without_partner", 0)),
            "global_views": candidates.shape[0],
            "nsentences": sample["nsentences"],
            "ntokens": sample["ntokens"],
            "sample_size": with_positive,
        }
        return (loss.sum() if reduce else loss), with_positive, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = lambda key: sum(log.get(key, 0) for log in logging_outputs)  # noqa: E731
        with_positive = total("anchors_with_positive")
        loss = total("loss") / with_positive if with_positive else math.inf
        metrics.log_scalar("loss", loss, with_positive, round=3)
        metrics.log_scalar("positives_per_anchor", total("positives") / max(with_positive, 1), round=2)
        metrics.log_scalar("anchors_without_positive", total("anchors_without_positive"), round=0)
        metrics.log_scalar("items_without_partner", total("items_without_partner"), round=0)
        metrics.log_scalar("views", total("views"), round=0)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
