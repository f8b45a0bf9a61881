"""Model ``ecg_classifier``: an encoder (pretrained, or random) plus one linear layer.

A linear probe (``freeze_encoder``) standardises the frozen features before its linear layer
with a non-affine batch norm whose running statistics are the cumulative mean and variance over
the training batches (``momentum=None``), i.e. training-split statistics; evaluation uses them
as they are. Without it an untrained encoder's features, which differ between records by a tiny
fraction of their scale, would be out of reach of the probe's optimiser, and a random-init
baseline would be handicapped by feature scale rather than by what its features contain.

With ``model_path`` the encoder is rebuilt from that checkpoint's own model config and weights
(any registered model exposing ``encode(source) -> [B, D]``), or, for a downstream checkpoint (a
linear probe, fine-tune or identification fine-tune: a model with an ``encoder`` inside), from
the encoder it holds, without its head; without it, from ``encoder``
(random initialisation: the supervised baseline, or the random frozen-encoder baseline when
``freeze_encoder`` is set). A frozen encoder also keeps its batch-norm statistics fixed.

A frozen encoder's features of an evaluation batch depend on that batch alone, and validation
reads the same batches every epoch: on the CPU, where the encoder's forward pass costs far more
than reading its input, a linear probe computes them once (:class:`FrozenFeatureCache`).
"""

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY, BaseFairseqModel, register_model
from omegaconf import DictConfig, OmegaConf

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.checkpoints import read_checkpoint

logger = logging.getLogger(__name__)

#: Variance floor of the probe's feature standardisation. Batch norm's usual 1e-5 would exceed the
#: between-record variance of an untrained encoder's features and flatten them.
FEATURE_NORM_EPS = 1e-10


@dataclass
class EcgClassifierConfig(FairseqDataclass):
    model_path: Optional[str] = field(
        default=None, metadata={"help": "pretraining checkpoint whose encoder is loaded; None = random init"}
    )
    freeze_encoder: bool = field(default=False, metadata={"help": "train only the linear layer (linear probe)"})
    encoder: Any = field(
        default_factory=lambda: {"_name": "resnet1d"},
        metadata={
            "help": "encoder config used without model_path ({_name: resnet1d, ...}); "
            "filled from the checkpoint when model_path is set"
        },
    )
    num_classes: int = field(default=4, metadata={"help": "output classes"})
    dropout: float = field(default=0.0, metadata={"help": "dropout before the linear layer"})
    standardize_features: bool = field(
        default=True,
        metadata={
            "help": "linear probe: standardise the frozen features with training-split statistics "
            "(non-affine batch norm) before the linear layer"
        },
    )


#: Bytes of encoder features a linear probe keeps for the evaluation batches it has seen.
FEATURE_CACHE_BYTES = 256 * 2**20


class FrozenFeatureCache:
    """A frozen encoder's features [B, D] of the evaluation batches [B, 12, T] it has seen, keyed by
    a digest of each batch's bytes, shape, dtype and device: a batch met again (the same
    validation batch in every epoch) gets the features computed the first time, which are the
    ones the encoder would compute again, bit for bit. Once ``max_bytes`` of features are held,
    further batches are computed and not kept; :meth:`clear` when the encoder's weights change."""

    def __init__(self, max_bytes: int = FEATURE_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._features: dict[bytes, torch.Tensor] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._features)

    @staticmethod
    def key(source: torch.Tensor) -> bytes:
        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"{tuple(source.shape)} {source.dtype} {source.device}".encode())
        digest.update(source.detach().contiguous().view(torch.uint8).numpy())
        return digest.digest()

    def features(self, source: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``encode(source)``, or what it gave for a batch with the same bytes before."""
        key = self.key(source)
        cached = self._features.get(key)
        if cached is not None:
            return cached
        features = encode(source)
        size = features.numel() * features.element_size()
        if self._bytes + size <= self.max_bytes:
            self._features[key] = features
            self._bytes += size
        return features

    def clear(self) -> None:
        self._features.clear()
        self._bytes = 0


class EncoderError(GoodviewsError, ValueError):
    """An encoder config or checkpoint that gives no encoder; the message names where it came from."""


def build_encoder(encoder_cfg: Any, where: str = "model.encoder") -> BaseFairseqModel:
    """Build a registered model from a ``{_name: ..., ...}`` config node; ``where`` names its origin in errors."""
    raw = (
        OmegaConf.to_container(encoder_cfg, resolve=True) if isinstance(encoder_cfg, DictConfig) else dict(encoder_cfg)
    )
    name = raw.get("_name")
    if name not in MODEL_REGISTRY:
        raise EncoderError(f"{where}: unknown encoder model {name!r}; registered: {', '.join(sorted(MODEL_REGISTRY))}")
    cfg = merge_with_parent(MODEL_DATACLASS_REGISTRY[name](), OmegaConf.create(raw))
    model = MODEL_REGISTRY[name].build_model(cfg, task=None)
    if not hasattr(model, "encode"):
        raise EncoderError(
            f"{where}: model {name!r} has no encode(source) method and holds no encoder; give a pretraining "
            "checkpoint, or a probe or fine-tune of one"
        )
    return model


def config_matching_weights(model_cfg: Any, weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A checkpoint's model config as a plain dict, with the fields that size its weights read from them.

    A task fills some model fields in at build time (the class count of a classifier, the patient
    count of an identifier; each model class names its own in ``fields_from_weights``). A
    checkpoint written before its task recorded them keeps the default in its saved config; the
    shapes of its weights are the truth.
    """
    raw = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    fields_from_weights = getattr(MODEL_REGISTRY.get(raw.get("_name")), "fields_from_weights", None)
    if fields_from_weights is not None:
        raw.update(fields_from_weights(weights))
    return raw


def checkpoint_encoder(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor], str | None]:
    """The encoder config (a plain dict) and weights of a checkpoint's model, and the model it came out of.

    A pretraining checkpoint's model is the encoder (third item None). A downstream checkpoint
    (``ecg_classifier``, ``ecg_identifier``: a model whose config has an ``encoder`` node and whose
    weights hold ``encoder.*``) gives the encoder inside it, without its head; the third item then
    names that model.
    """
    model_cfg = config_matching_weights(state["cfg"]["model"], state["model"])
    inner = model_cfg.get("encoder")
    prefix = "encoder."
    if isinstance(inner, Mapping) and any(key.startswith(prefix) for key in state["model"]):
        weights = {key[len(prefix) :]: value for key, value in state["model"].items() if key.startswith(prefix)}
        return config_matching_weights(inner, weights), weights, model_cfg.get("_name")
    return model_cfg, dict(state["model"]), None


def load_pretrained_encoder(path: str, option: str = "model.model_path") -> tuple[BaseFairseqModel, dict[str, Any]]:
    """The encoder of the checkpoint at ``path`` (given as ``option``) and its model config (a plain dict):
    a pretraining checkpoint's model, or the encoder inside a probe or fine-tune (:func:`checkpoint_encoder`)."""
    where = f"{option}={path}"
    encoder_cfg, weights, taken_from = checkpoint_encoder(read_checkpoint(path, option))
    if taken_from is not None:
        logger.info(
            "%s: an %s checkpoint; its encoder (%s) is loaded, not its head",
            where,
            taken_from,
            encoder_cfg.get("_name"),
        )
    model = build_encoder(encoder_cfg, where)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise EncoderError(f"{where}: the weights do not match the model config ({first})") from None
    return model, encoder_cfg


@register_model("ecg_classifier", dataclass=EcgClassifierConfig)
class EcgClassifier(BaseFairseqModel):
    def __init__(self, cfg: EcgClassifierConfig, encoder: BaseFairseqModel, embedding_dim: int):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.freeze_encoder = cfg.freeze_encoder
        if self.freeze_encoder:
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(False)
        self.feature_norm = (
            nn.BatchNorm1d(embedding_dim, eps=FEATURE_NORM_EPS, affine=False, momentum=None)
            if self.freeze_encoder and cfg.standardize_features
            else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(embedding_dim, cfg.num_classes)
        self.evaluation_features = FrozenFeatureCache() if self.freeze_encoder else None

    @classmethod
    def build_model(cls, cfg: EcgClassifierConfig, task=None) -> "EcgClassifier":
        if cfg.model_path:
            encoder, encoder_cfg = load_pretrained_encoder(cfg.model_path)
            cfg.encoder = encoder_cfg
        else:
            encoder = build_encoder(cfg.encoder)
        if task is not None and hasattr(task, "class_names"):
            cfg.num_classes = len(task.class_names)
        with torch.no_grad():
            probe = torch.zeros(2, getattr(encoder.cfg, "in_leads", 12), 1000)
            encoder.eval()
            embedding_dim = encoder.encode(probe).shape[-1]
        return cls(cfg, encoder, embedding_dim)

    @staticmethod
    def fields_from_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        """The config fields that ``weights`` (a state dict of this model) fix: ``num_classes``,
        the head's rows."""
        head = weights.get("head.weight")
        return {} if head is None else {"num_classes": int(head.shape[0])}

    def train(self, mode: bool = True) -> "EcgClassifier":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def load_state_dict(self, state_dict, strict: bool = True, model_cfg=None, args=None):
        if self.evaluation_features is not None:
            self.evaluation_features.clear()
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def features(self, source: torch.Tensor) -> torch.Tensor:
        """Encoder features [B, D] of ``source`` [B, 12, T], standardised in a linear probe."""
        if not self.freeze_encoder:
            return self.encoder.encode(source)
        with torch.no_grad():
            if self.training or source.device.type != "cpu":
                features = self.encoder.encode(source)
            else:
                features = self.evaluation_features.features(source, self.encoder.encode)
        if self.feature_norm is None:
            return features
        if self.training and features.shape[0] == 1:
            # A batch of one has no variance: normalise it with the statistics gathered so far.
            norm = self.feature_norm
            return F.batch_norm(features, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
        return self.feature_norm(features)

    def forward(self, source: torch.Tensor, **kwargs) -> dict[str, torch.Tensor]:
        """``{"logits": [B, num_classes]}`` of ``source`` [B, 12, T]."""
        return {"logits": self.head(self.dropout(self.features(source)))}
