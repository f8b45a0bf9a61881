"""Model ``wav2vec2_ecg``: upstream fairseq's wav2vec 2.0 over multi-lead ECG (Oh et al., CHIL 2022).

Everything but the first convolution is fairseq's own: :class:`Wav2Vec2EcgModel` subclasses
``fairseq.models.wav2vec.wav2vec2.Wav2Vec2Model`` (so the transformer encoder, the Gumbel
quantiser, ``compute_mask_indices`` masking, negative sampling, logits, perplexities and
penalties are upstream code) and swaps its single-channel feature extractor for
:class:`MultiLeadFeatureExtractor`, fairseq's ``ConvFeatureExtractionModel`` whose first layer
takes every lead as an input channel (``in_leads``; absent leads arrive zero-filled in their
canonical slots, so the input is always ``[B, in_leads, T]``). With ``input_normalisation=
per_lead_standardise`` (checkpoints imported from fairseq-signals, whose preprocessing
standardises the leads) that extractor first standardises each lead of each input
(:func:`standardise_leads`), so every caller of the model feeds it millivolts alike.

Two representations come out of one forward:

* the local, masked wav2vec 2.0 prediction problem (``x``: logits over the true quantised latent
  and its negatives, ``features_pen``, ``prob_perplexity``, ...), as upstream returns it;
* ``embedding`` [B, encoder_embed_dim]: the time-pooled transformer output the CMSC term is
  computed on. By default (``cmsc_pass=masked``) it pools the transformer output of that same
  masked pass over every (non-padded) step, as fairseq-signals does, so a training step runs the
  model once. ``cmsc_pass=unmasked`` instead pools a second, unmasked pass (exactly
  :meth:`Wav2Vec2EcgModel.encode`, the representation the downstream classifier uses): it re-runs
  the convolutions and the whole transformer, roughly doubling the forward and backward cost.
"""

import ast
import copy
import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from fairseq.data.data_utils import compute_mask_indices
from fairseq.dataclass import ChoiceEnum
from fairseq.models import register_model
from fairseq.models.wav2vec.wav2vec2 import ConvFeatureExtractionModel, Wav2Vec2Config, Wav2Vec2Model
from omegaconf import DictConfig, open_dict

from fairseq_goodviews.models.compile import HELP as COMPILE_HELP
from fairseq_goodviews.models.compile import compile_modules
from fairseq_goodviews.models.resnet1d import allow_tf32

#: Upper bound on the number of convolution layers a ``conv_feature_layers`` string may describe.
MAX_CONV_LAYERS = 64

ConvLayer = Tuple[int, int, int]
CMSC_PASS_CHOICES = ChoiceEnum(["masked", "unmasked"])
INPUT_NORMALISATION_CHOICES = ChoiceEnum(["none", "per_lead_standardise"])
#: A lead whose std over the input is at most this fraction of its mean's magnitude (float
#: rounding of a constant lead) has no variation: it is zeroed, as an all-zero lead.
CONSTANT_LEAD_STD = 1e-6


@dataclass
class Wav2Vec2EcgConfig(Wav2Vec2Config):
    """Upstream's wav2vec 2.0 options with fairseq-signals' ECG defaults (the paper preset)."""

    in_leads: int = field(
        default=12, metadata={"help": "input channels of the first convolution (leads; absent leads zero-filled)"}
    )
    conv_feature_layers: str = field(
        default="[(256, 2, 2)] * 4",
        metadata={
            "help": "convolutional feature extractor as [(dim, kernel, stride), ...]; list and tuple "
            "literals of integers combined with + and * (read without eval)"
        },
    )
    final_dim: int = field(default=256, metadata={"help": "dimension of the projected predictions and targets"})
    quantize_targets: bool = field(default=True, metadata={"help": "targets are Gumbel-quantised latents"})
    feature_grad_mult: float = field(
        default=0.1, metadata={"help": "gradient scale of the convolutional feature extractor"}
    )
    mask_prob: float = field(default=0.65, metadata={"help": "probability of a time step starting a masked span"})
    encoder_layerdrop: float = field(default=0.05, metadata={"help": "probability of dropping a transformer layer"})
    dropout_input: float = field(default=0.1, metadata={"help": "dropout on the features fed to the transformer"})
    dropout_features: float = field(default=0.1, metadata={"help": "dropout on the features the targets come from"})
    cmsc_pass: CMSC_PASS_CHOICES = field(
        default="masked",
        metadata={
            "help": "which pass the CMSC embedding pools: 'masked' = the transformer output of the one "
            "wav2vec 2.0 pass (fairseq-signals); 'unmasked' = a second, unmasked pass (about 2x the cost)"
        },
    )
    compile_encoder: bool = field(
        default=False,
        metadata={"help": COMPILE_HELP + "; compiled: the feature extractor and each transformer layer"},
    )
    input_normalisation: INPUT_NORMALISATION_CHOICES = field(
        default="none",
        metadata={
            "help": "what the model does to its input first: 'none' = signals in mV as they come (this "
            "plugin's models); 'per_lead_standardise' = each lead of each input at mean 0, std 1 over its "
            "present samples, absent (all-zero) leads and trailing zero padding left out and kept at zero "
            "(the inputs of fairseq-signals' preprocessing, which ECG-FM's checkpoints expect)"
        },
    )


def parse_conv_layers(spec: str) -> List[ConvLayer]:
    """Read a ``conv_feature_layers`` string such as ``"[(256, 2, 2)] * 4"`` without ``eval``.

    Upstream configs describe the stack as a Python expression; this accepts the subset they use:
    list and tuple literals of integers, ``+`` (concatenation) and ``*`` (repetition).
    """

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(element) for element in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Mult):
                count, sequence = (left, right) if isinstance(left, int) else (right, left)
                if (
                    isinstance(sequence, (list, tuple))
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_CONV_LAYERS
                ):
                    raise ValueError(f"more than {MAX_CONV_LAYERS} elements")
            try:
                return left + right if isinstance(node.op, ast.Add) else left * right
            except TypeError as exc:
                raise ValueError(str(exc)) from None
        raise ValueError(f"unsupported element {ast.dump(node)}")

    try:
        layers = value(ast.parse(spec.strip(), mode="eval").body)
    except (SyntaxError, ValueError) as exc:
        raise ValueError(f"invalid conv_feature_layers {spec!r}: {exc}") from None
    if not isinstance(layers, list) or not 0 < len(layers) <= MAX_CONV_LAYERS:
        raise ValueError(f"invalid conv_feature_layers {spec!r}: expected a non-empty list of (dim, kernel, stride)")
    for layer in layers:
        if not (isinstance(layer, tuple) and len(layer) == 3 and all(isinstance(v, int) and v > 0 for v in layer)):
            raise ValueError(f"invalid conv_feature_layers {spec!r}: {layer!r} is not (dim, kernel, stride) > 0")
    return layers


def _with_literal_conv_layers(cfg: Any, layers: List[ConvLayer]) -> Any:
    """A copy of ``cfg`` whose ``conv_feature_layers`` is the plain literal of ``layers``.

    Upstream ``Wav2Vec2Model.__init__`` evaluates that string; handing it the canonical literal
    of the already-validated layers means user text never reaches ``eval``.
    """
    literal = repr(layers)
    if isinstance(cfg, DictConfig):
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.conv_feature_layers = literal
        return cfg
    return dataclasses.replace(cfg, conv_feature_layers=literal)


def standardise_leads(x: torch.Tensor) -> torch.Tensor:
    """[B, leads, T] -> [B, leads, T]: each lead of each input at mean 0 and std 1 over its samples
    up to the input's last non-zero time step; the all-zero steps after it are padding (this
    plugin zero-pads short records at their end) and stay zero. A lead without variation there
    (an absent, zero-filled lead; a constant one, see :data:`CONSTANT_LEAD_STD`) becomes zero."""
    steps = torch.arange(x.shape[-1], device=x.device)
    last = torch.where((x != 0).any(dim=1), steps, -1).amax(dim=1, keepdim=True)  # [B, 1]
    valid = (steps <= last).unsqueeze(1).to(x.dtype)  # [B, 1, T]
    count = valid.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (x * valid).sum(dim=-1, keepdim=True) / count
    centred = (x - mean) * valid
    std = (centred.pow(2).sum(dim=-1, keepdim=True) / count).sqrt()
    varies = std > CONSTANT_LEAD_STD * mean.abs()
    return torch.where(varies, centred / torch.where(varies, std, torch.ones_like(std)), torch.zeros_like(x))


class MultiLeadFeatureExtractor(ConvFeatureExtractionModel):
    """fairseq's wav2vec 2.0 convolutional stack with ``in_leads`` input channels: [B, leads, T] -> [B, C, T'].

    With ``input_normalisation="per_lead_standardise"`` its input first goes through
    :func:`standardise_leads`, so every pass of the model (pretraining, ``encode``) sees it.
    """

    def __init__(
        self,
        in_leads: int,
        conv_layers: List[ConvLayer],
        mode: str = "default",
        conv_bias: bool = False,
        input_normalisation: str = "none",
    ):
        super().__init__(conv_layers, dropout=0.0, mode=mode, conv_bias=conv_bias)
        dim, kernel, stride = conv_layers[0]
        first = nn.Conv1d(in_leads, dim, kernel, stride=stride, bias=conv_bias)
        nn.init.kaiming_normal_(first.weight)
        self.conv_layers[0][0] = first
        self.in_leads = in_leads
        self.standardise = str(input_normalisation) == "per_lead_standardise"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.in_leads:
            raise ValueError(f"expected input [batch, {self.in_leads} leads, time], got {tuple(x.shape)}")
        if self.standardise:
            x = standardise_leads(x)
        for conv in self.conv_layers:
            x = conv(x)
        return x


@register_model("wav2vec2_ecg", dataclass=Wav2Vec2EcgConfig)
class Wav2Vec2EcgModel(Wav2Vec2Model):
    """Upstream wav2vec 2.0 with a multi-lead feature extractor and a time-pooled ``encode``."""

    def __init__(self, cfg: Wav2Vec2EcgConfig):
        conv_layers = parse_conv_layers(cfg.conv_feature_layers)
        with warnings.catch_warnings():
            # upstream's positional convolution uses torch's older weight_norm (deprecated, not wrong):
            # said once per model built, it would repeat in every evaluation of a checkpoint
            warnings.filterwarnings("ignore", message=r".*weight_norm.*deprecated", category=FutureWarning)
            super().__init__(_with_literal_conv_layers(cfg, conv_layers))
        self.conv_spec = conv_layers
        self.cmsc_pass = cfg.cmsc_pass
        self.feature_extractor = MultiLeadFeatureExtractor(
            cfg.in_leads,
            conv_layers,
            mode=cfg.extractor_mode,
            conv_bias=cfg.conv_bias,
            input_normalisation=cfg.input_normalisation,
        )

    @classmethod
    def build_model(cls, cfg: Wav2Vec2EcgConfig, task=None) -> "Wav2Vec2EcgModel":
        """The model; with ``cfg.compile_encoder`` its feature extractor and each transformer layer
        compiled (at their first call; the masking, quantiser and layer drop between them stay eager)."""
        allow_tf32()
        model = cls(cfg)
        if getattr(cfg, "compile_encoder", False):  # configs saved before the option lack it
            compile_modules([model.feature_extractor, *model.encoder.layers])
        return model

    def _get_feat_extract_output_lengths(self, input_lengths: torch.LongTensor) -> torch.LongTensor:
        for _, kernel, stride in self.conv_spec:
            input_lengths = torch.floor((input_lengths - kernel) / stride + 1)
        return input_lengths.to(torch.long)

    def apply_mask(
        self, x: torch.Tensor, padding_mask: Optional[torch.Tensor], mask_indices=None, mask_channel_indices=None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Upstream's masking of ``x`` [B, T', C], reproducible given the run's seed.

        Upstream draws its time (and channel) mask spans from ``np.random.default_rng()`` seeded
        by fresh OS entropy, so two runs with one seed would mask differently. Here the spans are
        drawn by the same ``compute_mask_indices`` with per-row seeds taken from torch's generator,
        which fairseq reseeds at every update. (Channel masking applied before the time masking,
        ``mask_channel_before``, stays upstream's.) Under bf16 autocast ``x`` arrives in bf16 and
        is masked in ``mask_emb``'s float32 (upstream's in-place put needs equal dtypes).
        """
        batch, steps, channels = x.shape
        if self.mask_prob > 0 and mask_indices is None:
            mask_indices = compute_mask_indices(
                (batch, steps),
                padding_mask,
                self.mask_prob,
                self.mask_length,
                self.mask_selection,
                self.mask_other,
                min_masks=2,
                no_overlap=self.no_mask_overlap,
                min_space=self.mask_min_space,
                require_same_masks=self.cfg.require_same_masks,
                mask_dropout=self.cfg.mask_dropout,
                **_row_seeds(batch),
            )
            mask_indices = torch.from_numpy(mask_indices).to(x.device)
        if self.mask_channel_prob > 0 and not self.mask_channel_before and mask_channel_indices is None:
            channel = compute_mask_indices(
                (batch, channels),
                None,
                self.mask_channel_prob,
                self.mask_channel_length,
                self.mask_channel_selection,
                self.mask_channel_other,
                no_overlap=self.no_mask_channel_overlap,
                min_space=self.mask_channel_min_space,
                **_row_seeds(batch),
            )
            mask_channel_indices = torch.from_numpy(channel).to(x.device).unsqueeze(1).expand(-1, steps, -1)
        return super().apply_mask(
            x.to(self.mask_emb.dtype),
            padding_mask,
            mask_indices=mask_indices,
            mask_channel_indices=mask_channel_indices,
        )

    def encode(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, leads, T] -> [B, encoder_embed_dim]: the unmasked transformer output averaged over time."""
        out = self.extract_features(source, padding_mask, mask=False)
        return time_mean(out["x"], out["padding_mask"])

    def forward(
        self,
        source: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        mask: bool = True,
        features_only: bool = False,
        **kwargs,
    ) -> Dict[str, Any]:
        """Upstream's wav2vec 2.0 outputs for ``source`` [B, leads, T], plus ``embedding`` [B, D] unless ``features_only``.

        ``embedding`` pools the transformer output of this very pass (``cmsc_pass=masked``) or of a
        second, unmasked pass (``cmsc_pass=unmasked``, = :meth:`encode`).
        """
        if features_only or self.cmsc_pass == "unmasked":
            result = super().forward(
                source, padding_mask=padding_mask, mask=mask, features_only=features_only, **kwargs
            )
            if not features_only:
                result["embedding"] = self.encode(source, padding_mask)
            return result
        # Upstream keeps only the masked steps of the transformer output; the hook keeps all of them.
        encoded: List[torch.Tensor] = []
        hook = self.encoder.register_forward_hook(lambda module, args, output: encoded.append(output[0]))
        try:
            result = super().forward(source, padding_mask=padding_mask, mask=mask, **kwargs)
        finally:
            hook.remove()
        result["embedding"] = time_mean(encoded[-1], result["padding_mask"])
        return result


def _row_seeds(batch: int) -> Dict[str, Any]:
    """``compute_mask_indices`` arguments that seed each of ``batch`` rows from torch's generator."""
    return {"seed": int(torch.randint(0, 2**31 - 1, (1,))), "epoch": 0, "indices": torch.arange(batch)}


def time_mean(x: torch.Tensor, padding: Optional[torch.Tensor]) -> torch.Tensor:
    """Mean of ``x`` [B, T', D] over its non-padded steps (``padding`` [B, T'] True = padded) -> [B, D]."""
    if padding is None:
        return x.mean(dim=1)
    keep = (~padding).unsqueeze(-1).type_as(x)
    return (x * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
