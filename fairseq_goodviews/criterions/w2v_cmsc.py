"""Criterion ``wav2vec2_cmsc``: wav2vec 2.0 (local) + CMSC (global) loss of Oh et al. (CHIL 2022).

The wav2vec 2.0 part is upstream fairseq's ``Wav2vecCriterion``, unchanged: InfoNCE over the true
quantised latent and its negatives at every masked step, plus the diversity penalty and the
feature penalty weighted by ``loss_weights`` (fairseq-signals: ``[0.1, 10]``) and scaled by the
number of masked steps (``sample_size``). The global part is the project's one contrastive loss,
:func:`multi_positive_info_nce` (float32 even under bf16 autocast), on the model's time-pooled
``embedding`` (by default pooled from the same masked pass, see ``cmsc_pass``) with the positives the
task's strategy defines (``cmsc``: other segments of the same record), gathered across workers.
It is a mean over anchors, added as ``cmsc_weight * cmsc * sample_size`` so that after fairseq
divides by ``sample_size`` its weight relative to the per-step wav2vec 2.0 loss is
``cmsc_weight`` (the same convention upstream uses for the penalties).

Logged separately: ``loss_w2v``, ``loss_diversity``, ``loss_features`` and ``loss_cmsc`` (each
weighted, in bits per masked step like upstream's ``loss``, and summing to it) and ``cmsc``, the
unweighted CMSC loss per anchor in nats (comparable with ``multi_positive_infonce``'s loss).
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from fairseq.criterions import register_criterion
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion, Wav2VecCriterionConfig
from fairseq.logging import metrics

from fairseq_goodviews.criterions.distributed import gather_views
from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce

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
    ):
        super().__init__(task, infonce, list(loss_weights) if loss_weights is not None else None, log_keys)
        self.cmsc_weight = cmsc_weight
        self.cmsc_temperature = cmsc_temperature

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
        candidates, meta, offset = gather_views(embeddings, sample["views_meta"])
        relation = self.task.positive_mask(meta, slice(offset, offset + embeddings.shape[0]))
        per_anchor, n_positive = multi_positive_info_nce(
            embeddings, candidates, relation, offset, self.cmsc_temperature
        )
        anchors = int((n_positive > 0).sum())
        cmsc = per_anchor.sum() / max(anchors, 1)
        weighted = self.cmsc_weight * cmsc * sample_size
        if self.cmsc_weight != 0:
            loss = loss + weighted

        logging_output.update(
            {
                "loss": loss.item(),
                "loss_cmsc": weighted.item(),
                "cmsc": per_anchor.sum().item(),
                "cmsc_anchors": anchors,
                "cmsc_anchors_without_positive": embeddings.shape[0] - anchors,
                "cmsc_positives": int(n_positive.sum()),
                "items_without_partner": int(sample.get("items_without_partner", 0)),
            }
        )
        return loss, sample_size, logging_output

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
