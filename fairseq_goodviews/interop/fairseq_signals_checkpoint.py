"""Import a fairseq-signals wav2vec 2.0 checkpoint (W2V, W2V+CMSC, W2V+CMSC+RLM; ECG-FM's) as ours.

    goodviews-import-fairseq-signals-checkpoint IN OUT
    python -m fairseq_goodviews.interop.fairseq_signals_checkpoint IN OUT   (a source checkout)

`fairseq-signals <https://github.com/Jwoo5/fairseq-signals>`_ saves what its ``Trainer.state_dict``
returns: ``{"args": None, "cfg": {"model": {"_name": "wav2vec2" | "wav2vec2_cmsc", ...}, "task":
{...}, ...}, "model": <state dict>, "optimizer_history": [...], "extra_state": {...},
"last_optimizer_state": {...}}``. OUT is a ``wav2vec2_ecg`` pretraining checkpoint of this plugin:
:func:`fairseq_goodviews.evaluation.embed.load_encoder`, fine-tuning and linear probes
(``model.model_path=OUT``) and, through those, ``goodviews-lead-subsets`` read it like one of ours.

What is mapped:

* **Config.** ``in_d`` (must be 12: this plugin's encoders take the 12 leads in the canonical order
  I, II, III, aVR, aVL, aVF, V1-V6, which is fairseq-signals' order too) becomes ``in_leads``; every
  other architecture and training option (``extractor_mode``, ``conv_feature_layers``,
  ``conv_bias``, ``encoder_*``, ``layer_norm_first``, ``conv_pos``, ``conv_pos_groups``,
  ``final_dim``, the quantiser, masking, negatives, dropouts) has the same name and meaning in
  upstream fairseq's ``Wav2Vec2Config``, which ``Wav2Vec2EcgConfig`` extends. Options the
  checkpoint's config lacks take fairseq-signals' defaults, not ours. The task part keeps the
  sample rate; the crop is ``--sample-size``, else the task's ``max_sample_size``, else 2,500
  samples for ``wav2vec2_cmsc`` (CMSC pairs 5 s segments) and 5,000 for ``wav2vec2``.
* **Weights.** Every tensor keeps its name and value except the convolutional positional
  embedding, which fairseq-signals keeps beside the transformer (``conv_pos.pos_conv.0.*``) and
  upstream fairseq inside it (``encoder.pos_conv.0.*``); its weight-norm factors saved as
  ``parametrizations.weight.original0/1`` (newer PyTorch) are the ``weight_g``/``weight_v`` tensors
  of the older form. Half-precision weights are widened to float32. The pretraining heads
  (``quantizer``, ``project_q``, ``final_proj``, ``mask_emb``) exist in our model too and are carried
  over; a checkpoint trained without masking has no ``mask_emb``, which is then initialised as
  upstream does (reported).
* **Dropped** (reported in one line): the optimiser state, the learning-rate scheduler state and
  the training progress and meters; the number of updates is kept as provenance.

Both frameworks compute the unmasked forward the same way: multi-lead convolutions -> layer norm
-> ``post_extract_proj`` -> + GELU(weight-normed grouped positional convolution) -> transformer
(post- or pre-layer-norm, GELU feed-forward). (With padded batches fairseq-signals zeroes padded
steps after adding the positional convolution, upstream before; ``encode`` pads nothing.)

* **Input normalisation.** A checkpoint does not record how its training data were
  preprocessed, so ``input_normalisation`` says it: ``per_lead_standardise`` (each lead of each
  input at mean 0, std 1; fairseq-signals' preprocessing scripts, ``scripts/preprocess/ecg``,
  standardise each lead of each recording so, and ECG-FM's data preparation is that pipeline) or
  ``none`` (signals in mV, the default). It lands in the model config, where ``wav2vec2_ecg``
  applies it to every input (:func:`~fairseq_goodviews.models.wav2vec2_ecg.standardise_leads`).

Anything that cannot be mapped (another model, ``extractor_mode``, lead count, activation,
input quantisation, filtered input, fairseq-signals' ``normalize`` (each lead z-normalised with
a dataset mean and std read from files the checkpoint does not hold), a parameter or shape our
model does not have) is one error line naming the file and the problem; nothing is written then.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.io.checkpoints import CheckpointError, read_torch_file
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.models.wav2vec2_ecg import Wav2Vec2EcgConfig, Wav2Vec2EcgModel, parse_conv_layers

#: fairseq-signals model names this importer reads (its ``@register_model`` names).
SUPPORTED_MODELS = ("wav2vec2", "wav2vec2_cmsc")
#: What the imported model does to its input first (``Wav2Vec2EcgConfig.input_normalisation``).
INPUT_NORMALISATIONS = ("none", "per_lead_standardise")

#: fairseq-signals' defaults (its ``ECGTransformerConfig``/``ConvTransformerConfig``,
#: ``TransformerConfig`` and ``Wav2Vec2Config``) of every model option the import reads, for a
#: checkpoint whose config lacks one. All but ``in_d`` keep their name in ``Wav2Vec2EcgConfig``.
FAIRSEQ_SIGNALS_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default",
    "conv_feature_layers": "[(256, 2, 2)] * 4",
    "in_d": 12,
    "conv_bias": False,
    "feature_grad_mult": 1.0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "layer_norm_first": False,
    "final_dim": 0,
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "dropout_features": 0.0,
    "mask_length": 10,
    "mask_prob": 0.65,
    "mask_selection": "static",
    "mask_other": 0.0,
    "no_mask_overlap": False,
    "mask_min_space": 1,
    "mask_channel_length": 10,
    "mask_channel_prob": 0.0,
    "mask_channel_selection": "static",
    "mask_channel_other": 0.0,
    "no_mask_channel_overlap": False,
    "mask_channel_min_space": 1,
    "logit_temp": 0.1,
    "quantize_targets": False,
    "target_glu": False,
    "latent_vars": 320,
    "latent_groups": 2,
    "latent_dim": 0,
    "num_negatives": 100,
    "negatives_from_everywhere": False,
    "cross_sample_negatives": 0,
    "codebook_negatives": 0,
    "latent_temp": (2.0, 0.5, 0.999995),
}
_INT_FIELDS = {
    "in_d",
    "conv_pos",
    "conv_pos_groups",
    "encoder_layers",
    "encoder_embed_dim",
    "encoder_ffn_embed_dim",
    "encoder_attention_heads",
    "final_dim",
    "mask_length",
    "mask_min_space",
    "mask_channel_length",
    "mask_channel_min_space",
    "latent_vars",
    "latent_groups",
    "latent_dim",
    "num_negatives",
    "cross_sample_negatives",
    "codebook_negatives",
}
_BOOL_FIELDS = {
    "conv_bias",
    "layer_norm_first",
    "no_mask_overlap",
    "no_mask_channel_overlap",
    "quantize_targets",
    "target_glu",
    "negatives_from_everywhere",
}
_CHOICES = {
    "extractor_mode": ("default", "layer_norm"),
    "mask_selection": ("static", "uniform", "normal", "poisson"),
    "mask_channel_selection": ("static", "uniform", "normal", "poisson"),
}
#: The convolutional positional embedding: beside the transformer (fairseq-signals) or inside it
#: (an encoder that holds it, as upstream), weight-normed in the old or the parametrization form.
_POS_CONV_KEY = re.compile(
    r"^(?:conv_pos|encoder)\.pos_conv\.0\."
    r"(bias|weight_g|weight_v|parametrizations\.weight\.original0|parametrizations\.weight\.original1)$"
)
_POS_CONV_PARAM = {
    "bias": "bias",
    "weight_g": "weight_g",
    "weight_v": "weight_v",
    "parametrizations.weight.original0": "weight_g",
    "parametrizations.weight.original1": "weight_v",
}
#: Our parameters a fairseq-signals checkpoint may lack, and why (then initialised as upstream does).
OPTIONAL_PARAMETERS = {"mask_emb": "trained without masking (apply_mask=false)"}
DROPPED = "optimiser state, learning-rate scheduler state, training progress and meters (extra_state)"


class ImportCheckpointError(GoodviewsError, ValueError):
    """A file that cannot be imported; the message is one line naming the file and the problem."""


@dataclass
class ImportReport:
    """What :func:`import_checkpoint` read, wrote, renamed, dropped and initialised."""

    source: Path
    out: Path
    model_name: str
    method: str
    model_cfg: dict[str, Any]
    task_cfg: dict[str, Any]
    #: source state-dict key -> our key, for every tensor carried over
    mapping: dict[str, str]
    dropped: list[str] = field(default_factory=list)
    initialised: dict[str, str] = field(default_factory=dict)
    widened: list[str] = field(default_factory=list)
    num_updates: int | None = None

    def lines(self) -> list[str]:
        cfg = self.model_cfg
        renamed = {src: dst for src, dst in self.mapping.items() if src != dst}
        arch = (
            f"{cfg['in_leads']} leads, conv {cfg['conv_feature_layers']} (extractor_mode={cfg['extractor_mode']}), "
            f"{cfg['encoder_layers']} layers x {cfg['encoder_embed_dim']}-d, {cfg['encoder_attention_heads']} heads"
            f"{', layer norm first' if cfg['layer_norm_first'] else ''}"
        )
        updates = f", {self.num_updates} updates" if self.num_updates is not None else ""
        lines = [
            f"{self.source}: fairseq-signals {self.model_name} ({self.method}), {arch}{updates}",
            f"{self.out}: wav2vec2_ecg checkpoint, {len(self.mapping)} tensors carried over with their values"
            + (f" ({len(renamed)} renamed: {_summarise_renames(renamed)})" if renamed else "")
            + (f", {len(self.widened)} widened to float32" if self.widened else "")
            + f"; task: {self.task_cfg['sample_rate']:g} Hz, {self.task_cfg['sample_size']}-sample crops",
            f"input normalisation: {cfg['input_normalisation']}"
            + (
                " (each lead of each input standardised by the model)"
                if cfg["input_normalisation"] == "per_lead_standardise"
                else " (signals in mV; ECG-FM and other checkpoints trained on fairseq-signals' preprocessed "
                "folders expect --input-normalisation per_lead_standardise)"
            ),
        ]
        if self.initialised:
            lines.append(
                "initialised (not in the checkpoint): "
                + "; ".join(f"{key} ({why})" for key, why in self.initialised.items())
            )
        lines.append("dropped: " + ("; ".join(self.dropped) if self.dropped else "nothing"))
        return lines


def _summarise_renames(renamed: Mapping[str, str]) -> str:
    """``a.* -> b.*`` for renamed prefixes, ``a.x -> b.y`` where the last name changes too."""
    parts = []
    for src, dst in renamed.items():
        (src_prefix, src_leaf), (dst_prefix, dst_leaf) = src.rsplit(".", 1), dst.rsplit(".", 1)
        parts.append(f"{src_prefix}.* -> {dst_prefix}.*" if src_leaf == dst_leaf else f"{src} -> {dst}")
    return ", ".join(dict.fromkeys(parts))


def read_checkpoint(path: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The dict a checkpoint file holds, loaded with torch's safe ``weights_only`` unpickler
    (plus numpy scalars) unless ``trust_pickle``."""
    try:
        return read_torch_file(
            path,
            "fairseq-signals checkpoint",
            trust_pickle=trust_pickle,
            refusal_hint="if you trust the file, run again with --trust-pickle",
        )
    except CheckpointError as exc:
        raise ImportCheckpointError(str(exc)) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _as_dict(node: Any) -> dict[str, Any] | None:
    if node is None:
        return None
    if isinstance(node, Mapping):
        return dict(node)
    if OmegaConf.is_config(node):  # a checkpoint loaded by fairseq's or fairseq-signals' own loader
        try:
            return OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation that does not resolve: keep it as text
            return OmegaConf.to_container(node, resolve=False)
    return None


def checkpoint_parts(state: Mapping[str, Any], where: Path) -> tuple[dict, dict, Mapping[str, torch.Tensor]]:
    """(model config, task config, state dict) of a fairseq-signals checkpoint dict."""
    cfg = _as_dict(state.get("cfg"))
    if cfg is None:
        if state.get("args") is not None:
            raise ImportCheckpointError(
                f"{where}: an argparse-era checkpoint (cfg is None, args set); only hydra-config checkpoints are read"
            )
        raise ImportCheckpointError(f"{where}: not a fairseq-signals checkpoint (no 'cfg' with the model config)")
    model_cfg = _as_dict(cfg.get("model"))
    weights = state.get("model")
    if model_cfg is None or not isinstance(weights, Mapping):
        raise ImportCheckpointError(f"{where}: not a fairseq-signals checkpoint (no model config or no model weights)")
    bad = [key for key, value in weights.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise ImportCheckpointError(f"{where}: the model weights hold a non-tensor entry {bad[0]!r}")
    return model_cfg, _as_dict(cfg.get("task")) or {}, weights


def _option(model_cfg: Mapping[str, Any], name: str, where: Path) -> Any:
    value = model_cfg.get(name, FAIRSEQ_SIGNALS_DEFAULTS[name])
    if value is None:
        value = FAIRSEQ_SIGNALS_DEFAULTS[name]
    problem = None
    if name in _INT_FIELDS:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problem = "a non-negative integer"
    elif name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            problem = "true or false"
    elif name in _CHOICES:
        if value not in _CHOICES[name]:
            problem = "one of " + ", ".join(_CHOICES[name])
    elif name == "conv_feature_layers":
        if not isinstance(value, str):
            problem = "a string such as '[(256, 2, 2)] * 4'"
    elif name == "latent_temp":
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                value = None
        if not (isinstance(value, (list, tuple)) and len(value) == 3):
            problem = "three numbers (start, end, decay)"
        else:
            value = [float(v) for v in value]
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problem = "a number"
        else:
            value = float(value)
    if problem:
        raise ImportCheckpointError(
            f"{where}: model option {name}={value!r} is not supported here (expected {problem})"
        )
    return value


def convert_model_config(
    model_cfg: Mapping[str, Any], task_cfg: Mapping[str, Any], where: Path, input_normalisation: str = "none"
) -> dict[str, Any]:
    """Our ``wav2vec2_ecg`` options (``_name`` included) for a fairseq-signals model config whose
    inputs were normalised as ``input_normalisation`` says (one of :data:`INPUT_NORMALISATIONS`)."""
    if input_normalisation not in INPUT_NORMALISATIONS:
        raise ImportCheckpointError(
            f"{where}: input normalisation {input_normalisation!r} is not one of {', '.join(INPUT_NORMALISATIONS)}"
        )
    name = model_cfg.get("_name")
    if name == "wav2vec2_ecg":
        raise ImportCheckpointError(f"{where}: already a checkpoint of this plugin (model wav2vec2_ecg)")
    if name not in SUPPORTED_MODELS:
        raise ImportCheckpointError(
            f"{where}: model {name!r} is not a fairseq-signals wav2vec 2.0 pretraining model "
            f"(supported: {', '.join(SUPPORTED_MODELS)}; for a fine-tuned model, import the checkpoint it was "
            "fine-tuned from)"
        )
    options = {key: _option(model_cfg, key, where) for key in FAIRSEQ_SIGNALS_DEFAULTS}
    if options["in_d"] != len(CANONICAL_LEADS):
        raise ImportCheckpointError(
            f"{where}: in_d={options['in_d']} input leads; this plugin's encoders take the "
            f"{len(CANONICAL_LEADS)} leads ({', '.join(CANONICAL_LEADS)})"
        )
    activation = model_cfg.get("activation_fn")
    if activation not in (None, "gelu"):
        raise ImportCheckpointError(
            f"{where}: activation_fn={activation!r}; fairseq-signals' wav2vec 2.0 and ours use gelu"
        )
    if model_cfg.get("quantize_input"):
        raise ImportCheckpointError(f"{where}: quantize_input=true (quantised transformer inputs) is not supported")
    if task_cfg.get("normalize") or model_cfg.get("normalize"):
        raise ImportCheckpointError(
            f"{where}: normalize=true (each lead z-normalised with a dataset mean and std read from the files "
            "task.mean_path and task.std_path, which the checkpoint does not hold); --input-normalisation "
            "standardises each input's own leads, which is not the same"
        )
    if task_cfg.get("filter") or model_cfg.get("filter"):
        raise ImportCheckpointError(
            f"{where}: filter=true (inputs band-pass filtered); this plugin feeds unfiltered signals"
        )
    try:
        parse_conv_layers(options["conv_feature_layers"])
    except ValueError as exc:
        raise ImportCheckpointError(f"{where}: {exc}") from None
    leads_to_load = task_cfg.get("leads_to_load")
    if leads_to_load is not None and [str(lead) for lead in _leads_list(leads_to_load)] not in (
        [str(i) for i in range(len(CANONICAL_LEADS))],
        list(CANONICAL_LEADS),
    ):
        raise ImportCheckpointError(
            f"{where}: trained on leads_to_load={leads_to_load!r}; only checkpoints of all 12 leads in canonical order are read"
        )
    ours = {key: value for key, value in options.items() if key != "in_d"}
    return {
        "_name": "wav2vec2_ecg",
        "in_leads": options["in_d"],
        "quantize_input": False,
        "input_normalisation": input_normalisation,
        **ours,
    }


def _leads_list(value: Any) -> list:
    if isinstance(value, str):
        return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
    return list(value)


def convert_task_config(
    model_name: str, task_cfg: Mapping[str, Any], sample_size: int | None, where: Path
) -> dict[str, Any]:
    """Our ``ecg_pretraining`` task part: what ``load_encoder`` reads (rate, crop) and the method's name."""
    rate = task_cfg.get("sample_rate") or 500
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
        raise ImportCheckpointError(f"{where}: task sample_rate={rate!r} is not a rate in Hz")
    crop = sample_size or task_cfg.get("max_sample_size") or (2500 if model_name == "wav2vec2_cmsc" else 5000)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop <= 0:
        raise ImportCheckpointError(f"{where}: sample size {crop!r} is not a positive number of samples")
    modes = task_cfg.get("perturbation_mode") or []
    rlm = "random_leads_masking" in (modes if isinstance(modes, (list, tuple)) else [modes])
    lead_mask_prob = float(task_cfg.get("mask_leads_prob", 0.5)) if rlm else 0.0
    method = {"wav2vec2": "W2V", "wav2vec2_cmsc": "W2V+CMSC"}[model_name] + ("+RLM" if rlm else "")
    return {
        "_name": "ecg_pretraining",
        "sample_rate": float(rate),
        "sample_size": int(crop),
        "lead_mask_prob": lead_mask_prob,
        "method_name": f"{method} (fairseq-signals)",
    }


def our_key(key: str) -> str:
    """Our state-dict name of a fairseq-signals wav2vec 2.0 parameter."""
    match = _POS_CONV_KEY.match(key)
    if match:
        return f"encoder.pos_conv.0.{_POS_CONV_PARAM[match.group(1)]}"
    return key


def build_model(model_cfg: Mapping[str, Any], where: Path):
    """Our ``Wav2Vec2EcgModel`` for ``model_cfg`` (deterministic initialisation) and its full config."""
    try:
        cfg = merge_with_parent(Wav2Vec2EcgConfig(), OmegaConf.create(dict(model_cfg)))
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = Wav2Vec2EcgModel(cfg)
    except Exception as exc:  # a config our model cannot take (e.g. heads that do not divide the width)
        raise ImportCheckpointError(f"{where}: the model config does not build here ({_first_line(exc)})") from None
    return model, OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def convert_weights(
    weights: Mapping[str, torch.Tensor], model: torch.nn.Module, where: Path
) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, str], list[str]]:
    """(our state dict, source -> our key, initialised key -> why, widened source keys)."""
    expected = model.state_dict()
    mapping: dict[str, str] = {}
    for key in weights:
        target = our_key(key)
        if target in mapping.values():
            other = next(src for src, dst in mapping.items() if dst == target)
            raise ImportCheckpointError(f"{where}: parameters {other} and {key} are the same one ({target})")
        if target not in expected:
            raise ImportCheckpointError(
                f"{where}: parameter {key} {tuple(weights[key].shape)} has no counterpart in wav2vec2_ecg "
                "(an architecture this importer does not know)"
            )
        if tuple(weights[key].shape) != tuple(expected[target].shape):
            raise ImportCheckpointError(
                f"{where}: parameter {key} has shape {tuple(weights[key].shape)}, the model config gives "
                f"{tuple(expected[target].shape)}"
            )
        mapping[key] = target
    initialised = {}
    for target in expected:
        if target not in mapping.values():
            if target not in OPTIONAL_PARAMETERS:
                raise ImportCheckpointError(f"{where}: the checkpoint lacks parameter {target}")
            initialised[target] = OPTIONAL_PARAMETERS[target]
    converted, widened = {}, []
    for key, target in mapping.items():
        tensor = weights[key].detach()
        if tensor.is_floating_point() and tensor.dtype != expected[target].dtype:
            widened.append(key)
            tensor = tensor.to(expected[target].dtype)
        converted[target] = tensor.clone()
    for target in initialised:
        converted[target] = expected[target].clone()
    return converted, mapping, initialised, widened


def _num_updates(state: Mapping[str, Any]) -> int | None:
    history = state.get("optimizer_history")
    if isinstance(history, Sequence) and history and isinstance(history[-1], Mapping):
        value = history[-1].get("num_updates")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def import_checkpoint(
    source: str | Path,
    out: str | Path,
    sample_size: int | None = None,
    trust_pickle: bool = False,
    input_normalisation: str = "none",
) -> ImportReport:
    """Rewrite the fairseq-signals checkpoint ``source`` as our checkpoint ``out`` (written atomically),
    its model applying ``input_normalisation`` to every input (see the module's notes).

    Relative paths are relative to the current folder. Raises :class:`ImportCheckpointError` (a
    one-line message naming the file) for anything that cannot be mapped; nothing is written then.
    """
    source, out = Path(source), Path(out)
    if out.exists() and out.is_dir():
        raise ImportCheckpointError(f"{out}: is a folder; name the checkpoint file to write")
    if source.exists() and out.exists() and out.resolve() == source.resolve():
        raise ImportCheckpointError(f"{out}: is the checkpoint being imported; name another file")
    state = read_checkpoint(source, trust_pickle)
    model_cfg, task_cfg, weights = checkpoint_parts(state, source)
    ours = convert_model_config(model_cfg, task_cfg, source, input_normalisation)
    name = str(model_cfg["_name"])
    task = convert_task_config(name, task_cfg, sample_size, source)
    model, full_cfg = build_model(ours, source)
    converted, mapping, initialised, widened = convert_weights(weights, model, source)
    model.load_state_dict(converted, strict=True)
    dropped = [DROPPED] if any(k in state for k in ("last_optimizer_state", "optimizer_history", "extra_state")) else []
    num_updates = _num_updates(state)
    provenance = {
        "source": str(source.resolve()),
        "model": name,
        "num_updates": num_updates,
        "renamed": {src: dst for src, dst in mapping.items() if src != dst},
        "initialised": sorted(initialised),
        "dropped": dropped,
    }
    checkpoint = {
        "args": None,
        "cfg": {"_name": None, "model": full_cfg, "task": task},
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [
            {"criterion_name": None, "optimizer_name": None, "lr_scheduler_state": {}, "num_updates": 0}
        ],
        "task_state": {},
        "extra_state": {
            "train_iterator": {"epoch": 1, "iterations_in_epoch": 0},
            "fairseq_signals_import": provenance,
        },
    }
    with atomic_path(out) as tmp:
        torch.save(checkpoint, tmp)
    return ImportReport(
        source=source,
        out=out,
        model_name=name,
        method=task["method_name"].split(" ")[0],
        model_cfg=full_cfg,
        task_cfg=task,
        mapping=mapping,
        dropped=dropped,
        initialised=initialised,
        widened=widened,
        num_updates=num_updates,
    )
