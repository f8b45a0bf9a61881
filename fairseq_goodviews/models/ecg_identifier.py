"""Model ``ecg_identifier``: an encoder plus one unit-norm prototype per training patient (ArcFace).

The encoder is loaded from a pretraining checkpoint (``model_path``) or built from ``encoder``
(random initialisation). ``forward`` returns the embedding and its cosine similarity to every
patient prototype; the ``arcface`` criterion adds the angular margin. At evaluation only the
embedding is used (:mod:`fairseq_goodviews.evaluation.identification`), since test patients are
not training patients.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model

from fairseq_goodviews.models.ecg_classifier import build_encoder, load_pretrained_encoder


@dataclass
class EcgIdentifierConfig(FairseqDataclass):
    model_path: str | None = field(
        default=None, metadata={"help": "pretraining checkpoint whose encoder is fine-tuned; None = random init"}
    )
    encoder: Any = field(
        default_factory=lambda: {"_name": "resnet1d"},
        metadata={
            "help": "encoder config used without model_path ({_name: resnet1d, ...}); "
            "filled from the checkpoint when model_path is set"
        },
    )
    num_patients: int = field(
        default=0, metadata={"help": "number of patient prototypes; set from the task's training patients"}
    )


@register_model("ecg_identifier", dataclass=EcgIdentifierConfig)
class EcgIdentifier(BaseFairseqModel):
    def __init__(self, cfg: EcgIdentifierConfig, encoder: BaseFairseqModel, embedding_dim: int):
        super().__init__()
        if cfg.num_patients < 1:
            raise ValueError("ecg_identifier needs num_patients >= 1 (set by the ecg_identification task)")
        self.cfg = cfg
        self.encoder = encoder
        self.prototypes = nn.Parameter(torch.empty(cfg.num_patients, embedding_dim))
        nn.init.xavier_uniform_(self.prototypes)

    @classmethod
    def build_model(cls, cfg: EcgIdentifierConfig, task=None) -> "EcgIdentifier":
        if cfg.model_path:
            encoder, encoder_cfg = load_pretrained_encoder(cfg.model_path)
            cfg.encoder = encoder_cfg
        else:
            encoder = build_encoder(cfg.encoder)
        if task is not None and hasattr(task, "num_patients"):
            cfg.num_patients = task.num_patients
        with torch.no_grad():
            encoder.eval()
            embedding_dim = encoder.encode(torch.zeros(2, getattr(encoder.cfg, "in_leads", 12), 1000)).shape[-1]
        return cls(cfg, encoder, embedding_dim)

    @staticmethod
    def fields_from_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The config fields that ``weights`` (a state dict of this model) fix: ``num_patients``,
        the prototypes' rows."""
        prototypes = weights.get("prototypes")
        return {} if prototypes is None else {"num_patients": int(prototypes.shape[0])}

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """[B, 12, T] -> [B, D]: the encoder's embedding (what identification retrieves with)."""
        return self.encoder.encode(source)

    def forward(self, source: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        """``embedding`` [B, D] and ``cosine`` [B, num_patients] (to the unit-norm prototypes)."""
        embedding = self.encode(source)
        cosine = F.normalize(embedding.float(), dim=1) @ F.normalize(self.prototypes.float(), dim=1).T
        return {"embedding": embedding, "cosine": cosine}
