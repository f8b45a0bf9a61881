"""Importing fairseq-signals wav2vec 2.0 / W2V+CMSC(+RLM) checkpoints (goodviews-import-fairseq-signals-checkpoint).

The checkpoints here are written in fairseq-signals' own layout, as read from its code
(github.com/Jwoo5/fairseq-signals): the dict of its ``Trainer.state_dict`` saved with
``torch.save`` (``args``, ``cfg`` as a plain container with the model config under its ``_name``,
``model``, ``criterion``, ``optimizer_history``, ``task_state``, ``extra_state``,
``last_optimizer_state``), and state-dict names and shapes of its modules:
``ConvFeatureExtraction`` (``feature_extractor.conv_layers.N.{0,2}``), ``layer_norm``,
``post_extract_proj``, ``ConvPositionalEncoding`` (``conv_pos.pos_conv.0``, weight-normed over
dim 2), ``TransformerEncoder`` (``encoder.layers.N.{self_attn.{q,k,v,out}_proj, self_attn_layer_norm,
fc1, fc2, final_layer_norm}``, ``encoder.layer_norm``), ``mask_emb``, ``GumbelVectorQuantizer``
(``quantizer.vars``, ``quantizer.weight_proj``), ``project_q``, ``final_proj``, ``target_glu``.

:func:`fs_forward` is the reference: fairseq-signals' eval-mode forward written from those modules
with ``torch.nn.functional`` only over the source state dict; it shares no code with upstream
fairseq or with our model.
"""

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fairseq_signals_layout import write_fs_folder

from conftest import FINETUNE_CONFIGS, hydra_train
from fairseq_goodviews.cli.import_fairseq_signals import main as fs_folder_main
from fairseq_goodviews.cli.import_fairseq_signals_checkpoint import main
from fairseq_goodviews.cli.lead_subsets import main as lead_subsets_main
from fairseq_goodviews.evaluation.embed import load_encoder
from fairseq_goodviews.evaluation.lead_subsets import LEAD_SUBSETS
from fairseq_goodviews.interop.fairseq_signals_checkpoint import ImportCheckpointError, import_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

T = 400  # samples: 25 latent steps at the 16-sample stride (an odd count)

#: A small W2V+CMSC: conv channels (24) differ from the transformer width (32), so post_extract_proj exists.
SMALL = {
    "conv_feature_layers": "[(24, 2, 2)] * 4",
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 48,
    "encoder_attention_heads": 4,
    "conv_pos": 8,
    "conv_pos_groups": 4,
    "final_dim": 16,
    "latent_vars": 8,
    "latent_groups": 2,
    "quantize_targets": True,
}
#: Layouts to import: the current one (ECG-FM's: the positional convolution beside the transformer,
#: torch's old weight_norm), the parametrization form without masking (no mask_emb) with a
#: layer-norm extractor and pre-layer-norm transformer, and an older encoder holding the
#: positional convolution, half-precision weights, no post_extract_proj and unquantised targets.
VARIANTS = {
    "ecg_fm": {"name": "wav2vec2_cmsc", "pos": "conv_pos", "wn": "old", "model": {}},
    "parametrized": {
        "name": "wav2vec2_cmsc",
        "pos": "conv_pos",
        "wn": "parametrizations",
        "model": {
            "apply_mask": False,
            "extractor_mode": "layer_norm",
            "conv_bias": True,
            "layer_norm_first": True,
            "conv_pos": 7,
        },
    },
    "legacy_fp16": {
        "name": "wav2vec2",
        "pos": "encoder",
        "wn": "old",
        "dtype": torch.float16,
        "model": {"conv_feature_layers": "[(32, 2, 2)] * 4", "quantize_targets": False, "target_glu": True},
    },
}


def conv_layers(spec: str) -> list[tuple[int, int, int]]:
    """The layers of this file's ``"[(dim, kernel, stride)] * n"`` literals."""
    dim, kernel, stride, n = map(int, re.fullmatch(r"\[\((\d+), (\d+), (\d+)\)\] \* (\d+)", spec).groups())
    return [(dim, kernel, stride)] * n


def fs_model_config(name: str = "wav2vec2_cmsc", **overrides) -> dict:
    """The model part of a fairseq-signals cfg as its trainer saves it: every option, resolved."""
    cfg = {
        "_name": name,
        "all_gather": False,
        "normalize": False,
        "filter": False,
        "data": "/data/manifest/cmsc",
        "args": None,
        "encoder_layers": 12,
        "encoder_embed_dim": 768,
        "encoder_ffn_embed_dim": 3072,
        "encoder_attention_heads": 12,
        "layer_norm_first": False,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0,
        "dropout_input": 0.1,
        "dropout_features": 0.1,
        "apply_mask": True,
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
        "extractor_mode": "default",
        "conv_feature_layers": "[(256, 2, 2)] * 4",
        "in_d": 12,
        "conv_bias": False,
        "feature_grad_mult": 0.1,
        "conv_pos": 128,
        "conv_pos_groups": 16,
        "logit_temp": 0.1,
        "quantize_targets": True,
        "quantize_input": False,
        "same_quantizer": False,
        "target_glu": False,
        "latent_vars": 320,
        "latent_groups": 2,
        "latent_dim": 0,
        "num_negatives": 100,
        "negatives_from_everywhere": False,
        "cross_sample_negatives": 0,
        "codebook_negatives": 0,
        "latent_temp": [2.0, 0.5, 0.999995],
        "final_dim": 256,
    }
    cfg.update(SMALL)
    cfg.update(overrides)
    return cfg


def fs_task_config(**overrides) -> dict:
    """fairseq-signals' ecg_pretraining task of its w2v_cmsc_rlm example config."""
    return {
        "_name": "ecg_pretraining",
        "data": "/data/manifest/cmsc",
        "label": False,
        "patient_dataset": False,
        "sample_rate": 500,
        "normalize": False,
        "enable_padding": True,
        "enable_padding_leads": False,
        "leads_to_load": None,
        "max_sample_size": None,
        "min_sample_size": None,
        "num_batch_buckets": 0,
        "precompute_mask_indices": False,
        "perturbation_mode": ["random_leads_masking"],
        "p": [1.0],
        "mask_leads_selection": "random",
        "mask_leads_prob": 0.5,
        "clocs_mode": None,
        "inferred_w2v_config": None,
        **overrides,
    }


def fs_state_dict(cfg: dict, pos: str = "conv_pos", wn: str = "old", seed: int = 0, dtype=torch.float32) -> dict:
    """Random weights under fairseq-signals' state-dict names and shapes for ``cfg``."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def linear(prefix, n_out, n_in):
        sd[f"{prefix}.weight"] = randn(n_out, n_in, scale=n_in**-0.5)
        sd[f"{prefix}.bias"] = randn(n_out, scale=0.1)

    def norm(prefix, n):
        sd[f"{prefix}.weight"] = 1.0 + randn(n, scale=0.1)
        sd[f"{prefix}.bias"] = randn(n, scale=0.1)

    sd = {}
    layers = conv_layers(cfg["conv_feature_layers"])
    in_d = cfg["in_d"]
    for i, (dim, k, _) in enumerate(layers):
        prefix = f"feature_extractor.conv_layers.{i}"
        sd[f"{prefix}.0.weight"] = randn(dim, in_d, k, scale=(in_d * k) ** -0.5)
        if cfg["conv_bias"]:
            sd[f"{prefix}.0.bias"] = randn(dim, scale=0.1)
        if cfg["extractor_mode"] == "layer_norm":
            norm(f"{prefix}.2.1", dim)  # Sequential(TransposeLast, Fp32LayerNorm, TransposeLast)
        elif i == 0:
            norm(f"{prefix}.2", dim)  # Fp32GroupNorm(dim, dim)
        in_d = dim
    embed, width = layers[-1][0], cfg["encoder_embed_dim"]
    norm("layer_norm", embed)
    if embed != width:
        linear("post_extract_proj", width, embed)
    if cfg["apply_mask"]:
        sd["mask_emb"] = torch.rand(width, generator=g)
    k, groups = cfg["conv_pos"], cfg["conv_pos_groups"]
    pos_prefix = "conv_pos.pos_conv.0" if pos == "conv_pos" else "encoder.pos_conv.0"
    magnitude, direction = 0.5 + torch.rand(1, 1, k, generator=g), randn(width, width // groups, k)
    if wn == "old":
        sd[f"{pos_prefix}.weight_g"], sd[f"{pos_prefix}.weight_v"] = magnitude, direction
    else:
        sd[f"{pos_prefix}.parametrizations.weight.original0"] = magnitude
        sd[f"{pos_prefix}.parametrizations.weight.original1"] = direction
    sd[f"{pos_prefix}.bias"] = randn(width, scale=0.1)
    ffn = cfg["encoder_ffn_embed_dim"]
    for n in range(cfg["encoder_layers"]):
        prefix = f"encoder.layers.{n}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            linear(f"{prefix}.self_attn.{proj}", width, width)
        norm(f"{prefix}.self_attn_layer_norm", width)
        linear(f"{prefix}.fc1", ffn, width)
        linear(f"{prefix}.fc2", width, ffn)
        norm(f"{prefix}.final_layer_norm", width)
    norm("encoder.layer_norm", width)
    final_dim = cfg["final_dim"] or width
    if cfg["quantize_targets"]:
        vq_dim = cfg["latent_dim"] or final_dim
        n_codes = cfg["latent_groups"] * cfg["latent_vars"]
        sd["quantizer.vars"] = torch.rand(1, n_codes, vq_dim // cfg["latent_groups"], generator=g)
        linear("quantizer.weight_proj", n_codes, embed)
        linear("project_q", final_dim, vq_dim)
    else:
        linear("project_q", final_dim, embed)
    if cfg["target_glu"]:
        linear("target_glu.0", 2 * final_dim, final_dim)
    linear("final_proj", final_dim, width)
    return {key: value.to(dtype) for key, value in sd.items()}


def fs_checkpoint(model_cfg: dict, weights: dict, task_cfg: dict | None = None) -> dict:
    """What fairseq-signals' ``Trainer.save_checkpoint`` writes (``Trainer.state_dict`` + extra state)."""
    params = list(weights)
    return {
        "args": None,
        "cfg": {
            "_name": None,
            "common": {"fp16": False, "log_format": "json", "log_interval": 10, "seed": 1},
            "checkpoint": {"save_dir": "checkpoints", "save_interval": 1, "keep_last_epochs": 1},
            "distributed_training": {"distributed_world_size": 4},
            "dataset": {"num_workers": 6, "batch_size": 64, "valid_subset": "", "disable_validation": True},
            "optimization": {"max_epoch": 200, "lr": [5e-05], "update_freq": [2]},
            "task": task_cfg if task_cfg is not None else fs_task_config(),
            "model": model_cfg,
            "criterion": {
                "_name": "wav2vec2_with_cmsc",
                "infonce": True,
                "loss_weights": [0.1, 10.0],
                "log_keys": ["prob_perplexity", "code_perplexity", "temp"],
            },
            "optimizer": {"_name": "adam", "adam_betas": "(0.9, 0.98)", "adam_eps": 1e-06, "weight_decay": 0.01},
            "lr_scheduler": {"_name": "fixed", "warmup_updates": 0},
        },
        "model": weights,
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "Wav2Vec2WithCMSCCriterion",
                "optimizer_name": "Adam",
                "lr_scheduler_state": {"best": None},
                "num_updates": 316,
            }
        ],
        "task_state": {},
        "extra_state": {
            "metrics": {"train": [["loss", 0, "AverageMeter", {"val": 2.5, "sum": 790.0, "count": 316, "round": 3}]]},
            "previous_training_time": 1234.5,
            "train_iterator": {"epoch": 2, "iterations_in_epoch": 0, "shuffle": True},
            "val_loss": None,
        },
        "last_optimizer_state": {
            "state": {i: {"step": torch.tensor(316.0), "exp_avg": torch.zeros(1)} for i in range(len(params))},
            "param_groups": [{"lr": 5e-05, "betas": (0.9, 0.98), "eps": 1e-06, "params": list(range(len(params)))}],
        },
    }


def write_fs_checkpoint(path: Path, variant: str = "ecg_fm", seed: int = 0, task_cfg=None, **model_overrides):
    spec = VARIANTS[variant]
    model_cfg = fs_model_config(spec["name"], **{**spec["model"], **model_overrides})
    weights = fs_state_dict(model_cfg, spec["pos"], spec["wn"], seed, spec.get("dtype", torch.float32))
    torch.save(fs_checkpoint(model_cfg, weights, task_cfg), path)
    return model_cfg, weights


# -- the reference: fairseq-signals' eval-mode forward, torch.nn.functional over its state dict --


def _layer_norm(x, sd, prefix):
    return F.layer_norm(x, (x.shape[-1],), sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps=1e-5)


def _attention(x, sd, prefix, heads):
    """MultiHeadAttention (self-attention, no mask): softmax(q k^T / sqrt(d_head)) v, then out_proj."""
    batch, steps, width = x.shape
    d_head = width // heads

    def project(name):
        return F.linear(x, sd[f"{prefix}.{name}.weight"], sd[f"{prefix}.{name}.bias"])

    q, k, v = (
        project(name).view(batch, steps, heads, d_head).transpose(1, 2) for name in ("q_proj", "k_proj", "v_proj")
    )
    weights = torch.softmax((q * d_head**-0.5) @ k.transpose(-1, -2), dim=-1)
    context = (weights @ v).transpose(1, 2).reshape(batch, steps, width)
    return F.linear(context, sd[f"{prefix}.out_proj.weight"], sd[f"{prefix}.out_proj.bias"])


def _encoder_layer(x, sd, prefix, heads, layer_norm_first):
    """TransformerEncoderLayer in eval mode (dropouts off), post- or pre-layer-norm, GELU feed-forward."""

    def ffn(h):
        h = F.gelu(F.linear(h, sd[f"{prefix}.fc1.weight"], sd[f"{prefix}.fc1.bias"]))
        return F.linear(h, sd[f"{prefix}.fc2.weight"], sd[f"{prefix}.fc2.bias"])

    if layer_norm_first:
        x = x + _attention(_layer_norm(x, sd, f"{prefix}.self_attn_layer_norm"), sd, f"{prefix}.self_attn", heads)
        return x + ffn(_layer_norm(x, sd, f"{prefix}.final_layer_norm"))
    x = _layer_norm(x + _attention(x, sd, f"{prefix}.self_attn", heads), sd, f"{prefix}.self_attn_layer_norm")
    return _layer_norm(x + ffn(x), sd, f"{prefix}.final_layer_norm")


def fs_forward(sd: dict, cfg: dict, source: torch.Tensor) -> dict:
    """``features`` (layer-normed conv output [B, T', C]), ``x`` (transformer output [B, T', D]) and
    ``targets`` (the quantised, projected latents of eval mode [B, T', final_dim]) of ``source``."""
    sd = {key: value.float() for key, value in sd.items()}
    x = source
    for i, (dim, _, stride) in enumerate(conv_layers(cfg["conv_feature_layers"])):
        prefix = f"feature_extractor.conv_layers.{i}"
        x = F.conv1d(x, sd[f"{prefix}.0.weight"], sd.get(f"{prefix}.0.bias"), stride=stride)
        if cfg["extractor_mode"] == "layer_norm":
            x = _layer_norm(x.transpose(1, 2), sd, f"{prefix}.2.1").transpose(1, 2)
        elif i == 0:
            x = F.group_norm(x, dim, sd[f"{prefix}.2.weight"], sd[f"{prefix}.2.bias"], eps=1e-5)
        x = F.gelu(x)
    features = _layer_norm(x.transpose(1, 2), sd, "layer_norm")
    x = features
    if "post_extract_proj.weight" in sd:
        x = F.linear(x, sd["post_extract_proj.weight"], sd["post_extract_proj.bias"])
    # ConvPositionalEncoding: weight norm over dim 2, "same" padding (even kernels drop the last step), GELU.
    prefix = next(p for p in ("conv_pos.pos_conv.0", "encoder.pos_conv.0") if f"{p}.bias" in sd)
    g = sd.get(f"{prefix}.weight_g", sd.get(f"{prefix}.parametrizations.weight.original0"))
    v = sd.get(f"{prefix}.weight_v", sd.get(f"{prefix}.parametrizations.weight.original1"))
    weight = g * v / v.pow(2).sum(dim=(0, 1), keepdim=True).sqrt()
    kernel = cfg["conv_pos"]
    pos = F.conv1d(x.transpose(1, 2), weight, sd[f"{prefix}.bias"], padding=kernel // 2, groups=cfg["conv_pos_groups"])
    if kernel % 2 == 0:
        pos = pos[:, :, :-1]
    x = x + F.gelu(pos).transpose(1, 2)
    # TransformerEncoder
    if not cfg["layer_norm_first"]:
        x = _layer_norm(x, sd, "encoder.layer_norm")
    for n in range(cfg["encoder_layers"]):
        x = _encoder_layer(x, sd, f"encoder.layers.{n}", cfg["encoder_attention_heads"], cfg["layer_norm_first"])
    if cfg["layer_norm_first"]:
        x = _layer_norm(x, sd, "encoder.layer_norm")
    out = {"features": features, "x": x}
    if cfg["quantize_targets"]:  # GumbelVectorQuantizer in eval mode: the arg-max code of each group
        groups, n_vars = cfg["latent_groups"], cfg["latent_vars"]
        logits = F.linear(features, sd["quantizer.weight_proj.weight"], sd["quantizer.weight_proj.bias"])
        codes = logits.view(*logits.shape[:2], groups, n_vars).argmax(-1)
        chosen = sd["quantizer.vars"][0][codes + torch.arange(groups) * n_vars]
        out["codes"] = codes
        out["targets"] = F.linear(chosen.flatten(2), sd["project_q.weight"], sd["project_q.bias"])
    return out


def signals(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 12, T, generator=torch.Generator().manual_seed(seed))


def our_model(path: Path):
    from fairseq_goodviews.models.ecg_classifier import load_pretrained_encoder

    model, _ = load_pretrained_encoder(str(path))
    return model.eval()


# -- (i) every weight lands, with its value --


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_source_weight_lands_unchanged_and_nothing_else_is_missing(variant, tmp_path, capsys):
    _, weights = write_fs_checkpoint(tmp_path / "fs.pt", variant)
    assert main([str(tmp_path / "fs.pt"), str(tmp_path / "ours.pt")]) == 0
    printed = capsys.readouterr().out

    saved = torch.load(tmp_path / "ours.pt", weights_only=True)
    provenance = saved["extra_state"]["fairseq_signals_import"]
    ours = saved["model"]
    renamed = provenance["renamed"]
    mapping = {key: renamed.get(key, key) for key in weights}
    for key, value in weights.items():
        assert ours[mapping[key]].dtype == torch.float32
        assert torch.equal(ours[mapping[key]], value.float()), key
    # nothing of our model is missing but what the report says was initialised
    assert set(ours) == set(mapping.values()) | set(provenance["initialised"])
    assert set(saved["model"]) == set(our_model(tmp_path / "ours.pt").state_dict())

    if variant == "ecg_fm":
        assert renamed == {
            "conv_pos.pos_conv.0.weight_g": "encoder.pos_conv.0.weight_g",
            "conv_pos.pos_conv.0.weight_v": "encoder.pos_conv.0.weight_v",
            "conv_pos.pos_conv.0.bias": "encoder.pos_conv.0.bias",
        }
        assert provenance["initialised"] == []
        assert "initialised" not in printed
    if variant == "parametrized":
        assert renamed["conv_pos.pos_conv.0.parametrizations.weight.original0"] == "encoder.pos_conv.0.weight_g"
        assert renamed["conv_pos.pos_conv.0.parametrizations.weight.original1"] == "encoder.pos_conv.0.weight_v"
        assert provenance["initialised"] == ["mask_emb"]
        assert "initialised (not in the checkpoint): mask_emb (trained without masking" in printed
    if variant == "legacy_fp16":
        assert renamed == {}  # the positional convolution is already where upstream keeps it
        assert f"{len(weights)} widened to float32" in printed
    assert provenance["num_updates"] == 316 and provenance["model"] == VARIANTS[variant]["name"]
    lines = printed.strip().splitlines()
    assert lines[-1].startswith("dropped: optimiser state, learning-rate scheduler state, training progress")
    assert f"{len(weights)} tensors carried over with their values" in printed


def test_imported_config_is_the_source_architecture_and_options(tmp_path):
    model_cfg, _ = write_fs_checkpoint(tmp_path / "fs.pt")
    report = import_checkpoint(tmp_path / "fs.pt", tmp_path / "ours.pt")
    saved = torch.load(tmp_path / "ours.pt", weights_only=True)["cfg"]
    model = saved["model"]
    assert model["_name"] == "wav2vec2_ecg" and model["in_leads"] == 12
    for key in (
        "conv_feature_layers",
        "extractor_mode",
        "encoder_layers",
        "encoder_embed_dim",
        "encoder_ffn_embed_dim",
        "encoder_attention_heads",
        "layer_norm_first",
        "conv_pos",
        "conv_pos_groups",
        "final_dim",
        "latent_vars",
        "latent_groups",
        "quantize_targets",
        "mask_prob",
        "mask_length",
        "feature_grad_mult",
        "dropout_input",
        "num_negatives",
        "logit_temp",
    ):
        assert model[key] == model_cfg[key], key
    assert list(model["latent_temp"]) == model_cfg["latent_temp"]
    assert saved["task"] == {
        "_name": "ecg_pretraining",
        "sample_rate": 500.0,
        "sample_size": 2500,
        "lead_mask_prob": 0.5,
        "method_name": "W2V+CMSC+RLM (fairseq-signals)",
    }
    assert report.method == "W2V+CMSC+RLM"


def test_options_the_config_lacks_take_fairseq_signals_defaults(tmp_path):
    model_cfg = {"_name": "wav2vec2", **{k: v for k, v in SMALL.items() if k != "final_dim"}}
    # the weights of fairseq-signals' defaults for the absent options (final_dim 0: the encoder width)
    weights = fs_state_dict(fs_model_config("wav2vec2", final_dim=0))
    torch.save(fs_checkpoint(model_cfg, weights, {"_name": "ecg_pretraining", "data": "x"}), tmp_path / "fs.pt")
    import_checkpoint(tmp_path / "fs.pt", tmp_path / "ours.pt", sample_size=1000)
    saved = torch.load(tmp_path / "ours.pt", weights_only=True)["cfg"]
    assert saved["model"]["feature_grad_mult"] == 1.0  # fairseq-signals' default, not ours (0.1)
    assert saved["model"]["final_dim"] == 0  # = encoder width in both frameworks
    assert saved["model"]["dropout_input"] == 0.0 and saved["model"]["encoder_layerdrop"] == 0.0
    assert saved["task"]["sample_size"] == 1000 and saved["task"]["method_name"] == "W2V (fairseq-signals)"
    assert saved["task"]["lead_mask_prob"] == 0.0


# -- (ii) the forward pass is fairseq-signals' --


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_matches_an_independent_fairseq_signals_reference(variant, tmp_path):
    model_cfg, weights = write_fs_checkpoint(tmp_path / "fs.pt", variant)
    import_checkpoint(tmp_path / "fs.pt", tmp_path / "ours.pt")
    model = our_model(tmp_path / "ours.pt")
    source = signals()
    reference = fs_forward(weights, model_cfg, source)
    with torch.no_grad():
        out = model.extract_features(source, None, mask=False)
        encoded = model.encode(source)
    steps = T // 16
    assert out["x"].shape == (3, steps, model_cfg["encoder_embed_dim"])
    torch.testing.assert_close(out["features"], reference["features"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(out["x"], reference["x"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(encoded, reference["x"].mean(dim=1), atol=2e-5, rtol=1e-4)
    if model_cfg["quantize_targets"]:
        with torch.no_grad():
            quantised, codes = model.quantize(source)
            targets = model.project_q(quantised)
        assert torch.equal(codes, reference["codes"])
        torch.testing.assert_close(targets, reference["targets"], atol=1e-5, rtol=1e-4)
    # the reference is sensitive to the weights: another checkpoint's output differs
    other = fs_forward(fs_state_dict(model_cfg, seed=5), model_cfg, source)
    assert not torch.allclose(other["x"], reference["x"], atol=1e-2)


def test_per_lead_standardisation_is_recorded_and_applied_by_every_loader(tmp_path, capsys):
    """ECG-FM's inputs are standardised leads: imported so, the model standardises every input
    itself, so the gain and offset of each lead do not change the embedding."""
    model_cfg, weights = write_fs_checkpoint(tmp_path / "fs.pt")
    argv = [str(tmp_path / "fs.pt"), "--sample-size", str(T)]
    assert main([*argv, str(tmp_path / "std.pt"), "--input-normalisation", "per_lead_standardise"]) == 0
    assert "input normalisation: per_lead_standardise (each lead of each input standardised" in capsys.readouterr().out
    assert main([*argv, str(tmp_path / "mv.pt")]) == 0
    assert "input normalisation: none (signals in mV; ECG-FM" in capsys.readouterr().out
    saved = torch.load(tmp_path / "std.pt", weights_only=True)["cfg"]["model"]
    assert saved["input_normalisation"] == "per_lead_standardise"
    x = signals(2)
    # per lead: its own gain (fairseq-signals' group-normed first layer would absorb one gain for all)
    gain_offset = torch.linspace(0.5, 10.0, 12)[None, :, None] * x + torch.linspace(-3.0, 5.0, 12)[None, :, None]
    standardised, plain = load_encoder(tmp_path / "std.pt", "cpu"), load_encoder(tmp_path / "mv.pt", "cpu")
    torch.testing.assert_close(standardised.embed(gain_offset), standardised.embed(x), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain.embed(gain_offset), plain.embed(x), atol=1e-2)
    # what fairseq-signals' model computes on the leads standardised as its preprocessing does
    z = (x - x.mean(dim=-1, keepdim=True)) / x.std(dim=-1, unbiased=False, keepdim=True)
    reference = fs_forward(weights, model_cfg, z)["x"].mean(dim=1)
    torch.testing.assert_close(standardised.embed(x), reference, atol=2e-5, rtol=1e-4)
    # probes and fine-tunes (model.model_path=) rebuild the encoder with it
    assert our_model(tmp_path / "std.pt").feature_extractor.standardise
    assert not our_model(tmp_path / "mv.pt").feature_extractor.standardise


# -- (iii) our loaders take it --


def test_load_encoder_reads_the_imported_checkpoint(tmp_path, monkeypatch):
    model_cfg, weights = write_fs_checkpoint(tmp_path / "fs.pt")
    monkeypatch.chdir(tmp_path)  # relative paths are the user's current folder
    assert main(["fs.pt", "sub/ours.pt", "--sample-size", "1000"]) == 0
    encoder = load_encoder(tmp_path / "sub" / "ours.pt")
    assert (encoder.sample_rate, encoder.sample_size, len(encoder.leads)) == (500.0, 1000, 12)
    source = signals(2)
    with torch.no_grad():
        embedding = encoder(source)
    torch.testing.assert_close(embedding, fs_forward(weights, model_cfg, source)["x"].mean(dim=1), atol=2e-5, rtol=1e-4)
    assert not any(name.startswith(".") for name in os.listdir(tmp_path / "sub"))  # no temporary file left


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fs_import")
    write_fs_checkpoint(tmp / "fs.pt")
    import_checkpoint(tmp / "fs.pt", tmp / "imported.pt")
    return tmp / "imported.pt"


def test_a_probe_records_the_imported_encoder_config_and_rebuilds_without_it(imported, tiny_dataset):
    """The imported architecture is none of the presets' encoders: the probe's saved model config
    must carry it, or goodviews-evaluate / goodviews-lead-subsets could not rebuild the probe."""
    from fairseq.dataclass.utils import merge_with_parent
    from omegaconf import OmegaConf, open_dict

    from fairseq_goodviews.models.ecg_classifier import EcgClassifierConfig
    from fairseq_goodviews.tasks.ecg_classification import EcgClassificationConfig, EcgClassificationTask

    task = EcgClassificationTask.setup_task(EcgClassificationConfig(data=str(tiny_dataset), sample_size=1000, seed=1))
    cfg = OmegaConf.create(
        {"_name": "ecg_classifier", "model_path": str(imported), "freeze_encoder": True, "encoder": {"_name": "x"}}
    )
    cfg = merge_with_parent(EcgClassifierConfig(), cfg)
    model = task.build_model(cfg)
    assert cfg.encoder["_name"] == "wav2vec2_ecg" and cfg.encoder["encoder_embed_dim"] == SMALL["encoder_embed_dim"]
    with open_dict(cfg):
        cfg.model_path = None  # what goodviews-evaluate does: the pretraining checkpoint is not needed
    rebuilt = task.build_model(cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


@pytest.mark.slow
def test_a_fairseq_signals_folder_and_checkpoint_go_through_our_probe_and_lead_subsets(tmp_path, capsys):
    """The whole interop chain with the commands a user runs: a fairseq-signals manifest folder and a
    fairseq-signals W2V+CMSC checkpoint are imported, the checkpoint's frozen encoder is probed on
    the folder through fairseq-hydra-train, and the probe is scored on the CinC 2021 lead sets."""
    folder = write_fs_folder(tmp_path / "fs", 40, segments=2, seconds=2.0)
    assert fs_folder_main([str(folder), str(tmp_path / "data"), "--no-progress"]) == 0
    write_fs_checkpoint(tmp_path / "fs.pt")
    assert main([str(tmp_path / "fs.pt"), str(tmp_path / "imported.pt")]) == 0
    report = json.loads((tmp_path / "data" / "prepare_report.json").read_text())
    probe = tmp_path / "probe"
    hydra_train(
        FINETUNE_CONFIGS,
        "linear_probe",
        [
            "preset=w2v_cpu_small",
            "task.sample_size=1000",
            "dataset.batch_size=8",
            "dataset.num_workers=0",
            "optimization.max_epoch=1",
            f"task.data={tmp_path / 'data'}",
            f"model.model_path={tmp_path / 'imported.pt'}",
            f"checkpoint.save_dir={probe}",
            *report["probe_overrides"],
        ],
        tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    checkpoint = probe / "checkpoint_best.pt"
    imported_weights = torch.load(tmp_path / "imported.pt", weights_only=True)["model"]
    probed = torch.load(checkpoint, weights_only=True)
    assert probed["cfg"]["model"]["encoder"]["encoder_embed_dim"] == SMALL["encoder_embed_dim"]
    for key, value in imported_weights.items():
        assert torch.equal(probed["model"][f"encoder.{key}"], value), f"{key} changed during a frozen-encoder probe"

    capsys.readouterr()
    assert lead_subsets_main([str(checkpoint), "--split", "test"]) == 0
    table = capsys.readouterr().out
    for name in LEAD_SUBSETS:
        row = next(line for line in table.splitlines() if line.startswith(name))
        assert all(math.isfinite(float(v)) for v in row[len(name) :].split())


# -- what cannot be mapped: one line naming the file and the problem, nothing written --


def _fails(args, tmp_path, capsys) -> str:
    assert main([str(a) for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("goodviews-import-fairseq-signals-checkpoint: error: ")
    assert not (tmp_path / "ours.pt").exists()
    return captured.err


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"in_d": 1}, "in_d=1 input leads; this plugin's encoders take the 12 leads"),
        ({"extractor_mode": "group_norm_all"}, "model option extractor_mode='group_norm_all' is not supported"),
        ({"activation_fn": "relu"}, "activation_fn='relu'"),
        ({"quantize_input": True}, "quantize_input=true"),
        ({"normalize": True}, "normalize=true (each lead z-normalised with a dataset mean and std read from"),
        ({"filter": True}, "filter=true (inputs band-pass filtered)"),
        ({"conv_feature_layers": "[(24, 2)] * 4"}, "invalid conv_feature_layers"),
        ({"encoder_attention_heads": 5}, "the model config does not build here"),
        ({"_name": "ecg_transformer_classifier"}, "model 'ecg_transformer_classifier' is not a fairseq-signals"),
        ({"_name": "wav2vec2_ecg"}, "already a checkpoint of this plugin"),
    ],
)
def test_unsupported_options_are_one_line_errors(overrides, problem, tmp_path, capsys):
    model_cfg = fs_model_config(**overrides)
    weights = fs_state_dict(fs_model_config())
    torch.save(fs_checkpoint(model_cfg, weights), tmp_path / "fs.pt")
    err = _fails([tmp_path / "fs.pt", tmp_path / "ours.pt"], tmp_path, capsys)
    assert f"{tmp_path / 'fs.pt'}: " in err and problem in err


def test_weights_the_config_does_not_explain_are_one_line_errors(tmp_path, capsys):
    model_cfg = fs_model_config()
    weights = fs_state_dict(model_cfg)
    extra = {**weights, "cmsc_proj.weight": torch.zeros(4, 32)}
    torch.save(fs_checkpoint(model_cfg, extra), tmp_path / "fs.pt")
    err = _fails([tmp_path / "fs.pt", tmp_path / "ours.pt"], tmp_path, capsys)
    assert "parameter cmsc_proj.weight (4, 32) has no counterpart in wav2vec2_ecg" in err

    torch.save(fs_checkpoint(fs_model_config(encoder_ffn_embed_dim=64), weights), tmp_path / "fs.pt")
    err = _fails([tmp_path / "fs.pt", tmp_path / "ours.pt"], tmp_path, capsys)
    assert "parameter encoder.layers.0.fc1.weight has shape (48, 32), the model config gives (64, 32)" in err

    missing = {k: v for k, v in weights.items() if not k.startswith("final_proj.")}
    torch.save(fs_checkpoint(model_cfg, missing), tmp_path / "fs.pt")
    assert "the checkpoint lacks parameter final_proj.weight" in _fails(
        [tmp_path / "fs.pt", tmp_path / "ours.pt"], tmp_path, capsys
    )

    both = {**weights, "encoder.pos_conv.0.bias": weights["conv_pos.pos_conv.0.bias"]}
    torch.save(fs_checkpoint(model_cfg, both), tmp_path / "fs.pt")
    assert "are the same one (encoder.pos_conv.0.bias)" in _fails(
        [tmp_path / "fs.pt", tmp_path / "ours.pt"], tmp_path, capsys
    )


def test_files_that_are_not_fairseq_signals_checkpoints_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "ours.pt"
    assert "missing.pt: checkpoint not found" in _fails([tmp_path / "missing.pt", out], tmp_path, capsys)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert "junk.pt: not a fairseq-signals checkpoint (not a PyTorch file)" in _fails(
        [tmp_path / "junk.pt", out], tmp_path, capsys
    )
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert "tensor.pt: not a fairseq-signals checkpoint (it holds a Tensor)" in _fails(
        [tmp_path / "tensor.pt", out], tmp_path, capsys
    )
    torch.save({"model": {}}, tmp_path / "nocfg.pt")
    assert "nocfg.pt: not a fairseq-signals checkpoint (no 'cfg'" in _fails(
        [tmp_path / "nocfg.pt", out], tmp_path, capsys
    )
    write_fs_checkpoint(tmp_path / "fs.pt")
    assert "is the checkpoint being imported" in _fails([tmp_path / "fs.pt", tmp_path / "fs.pt"], tmp_path, capsys)
    (tmp_path / "folder").mkdir()
    assert "folder: is a folder" in _fails([tmp_path / "fs.pt", tmp_path / "folder"], tmp_path, capsys)
    (tmp_path / "afile").write_text("x")
    assert "afile" in _fails([tmp_path / "fs.pt", tmp_path / "afile" / "ours.pt"], tmp_path, capsys)


class _Opaque:
    """A Python object torch's safe loading refuses."""


def test_safe_loading_takes_numpy_scalars_and_refuses_other_objects_unless_trusted(tmp_path, capsys):
    model_cfg = fs_model_config()
    state = fs_checkpoint(model_cfg, fs_state_dict(model_cfg))
    state["extra_state"]["best"] = np.float64(2.25)  # meters may hold numpy scalars
    torch.save(state, tmp_path / "fs.pt")
    assert main([str(tmp_path / "fs.pt"), str(tmp_path / "ours.pt")]) == 0
    capsys.readouterr()
    (tmp_path / "ours.pt").unlink()

    state["extra_state"]["opaque"] = _Opaque()
    torch.save(state, tmp_path / "fs.pt")
    err = _fails([tmp_path / "fs.pt", tmp_path / "ours.pt"], tmp_path, capsys)
    assert "safe loading refuses the Python object" in err and "_Opaque" in err and "--trust-pickle" in err
    assert main([str(tmp_path / "fs.pt"), str(tmp_path / "ours.pt"), "--trust-pickle"]) == 0
    assert load_encoder(tmp_path / "ours.pt").encoder.cfg.encoder_layers == SMALL["encoder_layers"]


def test_import_checkpoint_raises_for_the_api(tmp_path):
    with pytest.raises(ImportCheckpointError, match="checkpoint not found"):
        import_checkpoint(tmp_path / "nothing.pt", tmp_path / "ours.pt")
