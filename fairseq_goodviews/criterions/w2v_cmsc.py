"""Criterion ``wav2vec2_cmsc``: wav2vec 2.0 (local) + CMSC (global) loss of Oh et al. (CHIL 2022).

The wav2vec 2.0 part is upstream fairseq's ``Wav2vecCriterion``, unchanged: InfoNCE over the true
quantised latent and its negatives at every masked step, plus the diversity penalty and the
feature penalty weighted by ``loss_weights`` (fairseq-signals: ``[0.1, 10]``) and scaled by the
number of masked steps (``sample_size``). The global part is computed on the model's time-pooled
``embedding`` (pooled from the same masked pass, as fairseq-signals does), in float32 even under
bf16 autocast, in one of two forms (``cmsc_form``):

* ``segment_pairs`` (the default; the published method, as fairseq-signals'
  ``wav2vec2_with_cmsc`` criterion computes it): each embedding is divided by its (detached) norm;
  the similarities of the segment-0 views (rows) with the segment-1 views (columns), over the
  temperature, go through a softmax along the rows and, separately, along the columns; the loss
  is half the mean of ``-log p`` over the positive pairs of the rows plus half that of the columns.
  The positive pairs are those the task's strategy relates (``cmsc``: the two segments of one
  record). Each worker scores its own views only (``cmsc_gather=true``: its own views against every
  worker's). Views of other segments take no part, so the strategy must make segments 0 and 1.
* ``all_views``: the project's one contrastive loss, :func:`multi_positive_info_nce`, of every view
  against the 2N-1 others (same-segment views of other records are negatives too), gathered
  across workers.

The CMSC term is added as ``cmsc_weight * cmsc * sample_size`` so that after fairseq divides by
``sample_size`` its weight relative to the per-step wav2vec 2.0 loss is ``cmsc_weight``
(fairseq-signals' ``cmsc_weights``, and the convention upstream uses for the penalties).

Logged separately: ``loss_w2v``, ``loss_diversity``, ``loss_features`` and ``loss_cmsc`` (each
weighted, in bits per masked step like upstream's ``loss``, and summing to it) and ``cmsc``, the
unweighted CMSC loss in nats (per anchor for ``all_views``; per positive pair and direction for
``segment_pairs``).
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import torch
import torch.nn.functional as F
from fairseq.criterions import register_criterion
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion, Wav2VecCriterionConfig
from fairseq.logging import metrics

from fairseq_goodviews.criterions.distributed import gather_views
from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce
from fairseq_goodviews.errors import GoodviewsError

#: Upstream ``get_extra_losses`` order: (name we log, the net-output key that makes it present).
PENALTIES = (("diversity", "prob_perplexity"), ("features", "features_pen"))
#: Logging keys this criterion adds that upstream's ``reduce_metrics`` must not see.
CMSC_KEYS = ("cmsc", "cmsc_anchors", "cmsc_anchors_without_positive", "cmsc_positives", "items_without_partner")


@dataclass
class Wav2Vec2CmscCriterionConfig(Wav2VecCriterionConfig):
    infonce: bool = field(default=True, metadata={"help": "cross entropy over the candidates (wav2vec 2.0's InfoNCE)"})
    loss_weights: Optional[List[float]] = field(
        default_factory=lambda: [0.1, 10.0],
        metadata={"help": "weights of the diversity and feature penalties (fairseq-signals: 0.1, 10)"},
    )
    log_keys: List[str] = field(
        default_factory=lambda: ["prob_perplexity", "code_perplexity", "temp"],
        metadata={"help": "model outputs to log"},
    )
    cmsc_weight: float = field(default=1.0, metadata={"help": "weight of the CMSC term; 0 = wav2vec 2.0 alone"})
    cmsc_temperature: float = field(default=0.1, metadata={"help": "CMSC softmax temperature (CLOCS: 0.1)"})
    cmsc_form: str = field(
        default="segment_pairs",
        metadata={
            "help": "segment_pairs: fairseq-signals' CMSC (segment 0 x segment 1, both directions, per worker); "
            "all_views: multi-positive InfoNCE of every view against all others, gathered across workers"
        },
    )
    cmsc_gather: bool = field(
        default=False,
        metadata={
            "help": "segment_pairs: contrast with every worker's views, not only this worker's (fairseq-signals: no)"
        },
    )


CMSC_FORMS = ("segment_pairs", "all_views")


class CmscFormError(GoodviewsError, ValueError):
    """A CMSC form that cannot be computed on the views the strategy makes."""


def segment_pair_cmsc(
    anchors: torch.Tensor,
    anchor_segment: torch.Tensor,
    candidates: torch.Tensor,
    candidate_segment: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, int, int]:
    """fairseq-signals' CMSC term of the ``anchors`` [n, d] against the ``candidates`` [N, d].

    ``anchor_segment`` [n] and ``candidate_segment`` [N] are the views' segment indices and
    ``positive`` [n, N] the strategy's relation. A segment-0 anchor is scored by a softmax over the
    segment-1 candidates and a segment-1 anchor over the segment-0 ones (when anchors and candidates
    are the same views this is the published row and column softmax of one similarity matrix).
    Returns the float32 loss (half the mean ``-log p`` over each direction's positive pairs; a
    direction without any contributes 0), the number of positive pairs and of anchors with one.
    """
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        a, c = anchors.float(), candidates.float()
        a = a / torch.clamp(a.detach().norm(dim=-1, keepdim=True), min=eps)
        c = c / torch.clamp(c.detach().norm(dim=-1, keepdim=True), min=eps)
        logits = a @ c.t() / temperature
    loss = logits.new_zeros(())
    pairs, anchors_with_positive = 0, 0
    for own, other in ((0, 1), (1, 0)):
        block = (anchor_segment == own)[:, None] & (candidate_segment == other)[None, :]
        target = positive & block
        rows = target.any(dim=1)
        if not bool(rows.any()):
            continue
        log_p = F.log_softmax(logits[rows].masked_fill(~block[rows], float("-inf")), dim=1)
        loss = loss + 0.5 * -log_p[target[rows]].mean()
        pairs += int(target.sum())
        anchors_with_positive += int(rows.sum())
    return loss, pairs, anchors_with_positive


class _PrecomputedOutput:
    """The model, except that calling it returns an output already computed.

    Upstream ``Wav2vecCriterion.forward`` runs the model itself; handing it this wrapper lets it
    score the output this criterion also needs for CMSC, without a second forward.
    """

    def __init__(self, model: Any, net_output: Dict[str, Any]):
        self._model = model
        self._net_output = net_output

    def __call__(self, **net_input) -> Dict[str, Any]:
        return self._net_output

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


@register_criterion("wav2vec2_cmsc", dataclass=Wav2Vec2CmscCriterionConfig)
class Wav2Vec2CmscCriterion(Wav2vecCriterion):
    def __init__(
        self,
        task,
        infonce: bool = True,
        loss_weights: Optional[List[float]] = None,
        log_keys: Optional[List[str]] = None,
        cmsc_weight: float = 1.0,
        cmsc_temperature: float = 0.1,
        cmsc_form: str = "segment_pairs",
        cmsc_gather: bool = False,
    ):
        super().__init__(task, infonce, list(loss_weights) if loss_weights is not None else None, log_keys)
        if cmsc_form not in CMSC_FORMS:
            raise CmscFormError(f"criterion.cmsc_form={cmsc_form!r}: expected one of {', '.join(CMSC_FORMS)}")
        self.cmsc_weight = cmsc_weight
        self.cmsc_temperature = cmsc_temperature
        self.cmsc_form = cmsc_form
        self.cmsc_gather = cmsc_gather

    def _term_names(self, net_output: Mapping[str, Any]) -> List[str]:
        """Names of the terms upstream logs as ``loss_0, loss_1, ...`` (it skips zero-weight penalties)."""
        names = ["w2v"]
        if self.loss_weights:
            present = [name for name, key in PENALTIES if key in net_output]
            weights = self.loss_weights * len(present) if len(self.loss_weights) == 1 else self.loss_weights
            names += [name for name, weight in zip(present, weights, strict=False) if weight != 0]
        return names

    def forward(self, model, sample: Mapping[str, Any], reduce: bool = True):
        if not reduce:
            raise ValueError("wav2vec2_cmsc only computes reduced (summed) losses")
        net_output = model(**sample["net_input"])
        with warnings.catch_warnings():
            # upstream logs its penalty terms with float() of tensors that require grad: harmless, said once a run
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
            loss, sample_size, logging_output = super().forward(_PrecomputedOutput(model, net_output), sample, reduce)
        # Upstream counts masked steps as a tensor when the batch brings its own mask_indices.
        sample_size = int(sample_size)
        logging_output.update(sample_size=sample_size, ntokens=sample_size)

        names = self._term_names(net_output)
        if len(names) == 1:
            logging_output["loss_w2v"] = logging_output["loss"]
        else:
            for index, name in enumerate(names):
                logging_output[f"loss_{name}"] = logging_output.pop(f"loss_{index}")

        embeddings = net_output["embedding"]
        if self.cmsc_form == "all_views":
            cmsc, cmsc_sum, anchors, positives = self._all_views_cmsc(embeddings, sample["views_meta"])
        else:
            cmsc, cmsc_sum, anchors, positives = self._segment_pairs_cmsc(embeddings, sample["views_meta"])
        weighted = self.cmsc_weight * cmsc * sample_size
        if self.cmsc_weight != 0:
            loss = loss + weighted

        logging_output.update(
            {
                "loss": loss.item(),
                "loss_cmsc": weighted.item(),
                "cmsc": cmsc_sum,
                "cmsc_anchors": anchors,
                "cmsc_anchors_without_positive": embeddings.shape[0] - anchors,
                "cmsc_positives": positives,
                "items_without_partner": int(sample.get("items_without_partner", 0)),
            }
        )
        return loss, sample_size, logging_output

    def _all_views_cmsc(
        self, embeddings: torch.Tensor, views_meta: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, float, int, int]:
        """Multi-positive InfoNCE over every worker's views: (loss per anchor, its sum, anchors, positives)."""
        candidates, meta, offset = gather_views(embeddings, views_meta)
        relation = self.task.positive_mask(meta, slice(offset, offset + embeddings.shape[0]))
        per_anchor, n_positive = multi_positive_info_nce(
            embeddings, candidates, relation, offset, self.cmsc_temperature
        )
        anchors = int((n_positive > 0).sum())
        return per_anchor.sum() / max(anchors, 1), per_anchor.sum().item(), anchors, int(n_positive.sum())

    def _segment_pairs_cmsc(
        self, embeddings: torch.Tensor, views_meta: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, float, int, int]:
        """fairseq-signals' CMSC of this worker's views (optionally against every worker's)."""
        if self.cmsc_gather:
            candidates, meta, offset = gather_views(embeddings, views_meta)
        else:
            candidates, meta, offset = embeddings, views_meta, 0
        segment = meta["segment"]
        if not bool((segment == 1).any()):
            raise CmscFormError(
                "criterion.cmsc_form=segment_pairs contrasts time segments 0 and 1, but the strategy's views are all "
                "segment 0: use the cmsc strategy, or criterion.cmsc_form=all_views"
            )
        rows = slice(offset, offset + embeddings.shape[0])
        relation = self.task.positive_mask(meta, rows)
        cmsc, pairs, anchors = segment_pair_cmsc(
            embeddings, segment[rows], candidates, segment, relation, self.cmsc_temperature
        )
        # Logged as a sum over anchors so that reduce_metrics' division by anchors averages over workers.
        return cmsc, cmsc.item() * anchors, anchors, pairs

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict[str, Any]]) -> None:
        Wav2vecCriterion.reduce_metrics(
            [{key: value for key, value in log.items() if key not in CMSC_KEYS} for log in logging_outputs]
        )
        total = lambda key: sum(log.get(key, 0) for log in logging_outputs)  # noqa: E731
        anchors = total("cmsc_anchors")
        metrics.log_scalar("cmsc", total("cmsc") / max(anchors, 1), anchors, round=3)
        metrics.log_scalar("cmsc_positives_per_anchor", total("cmsc_positives") / max(anchors, 1), round=2)
        metrics.log_scalar("cmsc_anchors_without_positive", total("cmsc_anchors_without_positive"), round=0)
        metrics.log_scalar("items_without_partner", total("items_without_partner"), round=0)
