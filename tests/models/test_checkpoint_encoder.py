"""model.model_path takes the encoder of any checkpoint: a pretraining one's model, a probe's or fine-tune's encoder."""

import logging

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_goodviews import register_plugins
from fairseq_goodviews.models.ecg_classifier import (
    EcgClassifier,
    EcgClassifierConfig,
    EncoderError,
    build_encoder,
    load_pretrained_encoder,
)
from fairseq_goodviews.models.ecg_identifier import EcgIdentifier, EcgIdentifierConfig

SMALL = {"_name": "resnet1d", "base_width": 8, "layers": [1, 1, 1, 1], "embedding_dim": 16}


def save(path, model, cfg, name: str) -> str:
    """``model`` saved as fairseq saves a checkpoint: its weights and its run's config (with the model's name)."""
    model_cfg = {**OmegaConf.to_container(OmegaConf.structured(cfg)), "_name": name}
    torch.save({"model": model.state_dict(), "cfg": {"model": model_cfg}}, path)
    return str(path)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_a_probe_and_an_identification_checkpoint_give_their_encoder_without_the_head(tmp_path, caplog):
    register_plugins()
    torch.manual_seed(0)
    probe_cfg = EcgClassifierConfig(freeze_encoder=True, encoder=dict(SMALL), num_classes=3)
    probe = EcgClassifier.build_model(probe_cfg)
    ident = EcgIdentifier.build_model(EcgIdentifierConfig(encoder=dict(SMALL), num_patients=5))
    for model, name, cfg in [(probe, "ecg_classifier", probe_cfg), (ident, "ecg_identifier", ident.cfg)]:
        path = save(tmp_path / f"{name}.pt", model, cfg, name)
        with caplog.at_level(logging.INFO):
            encoder, encoder_cfg = load_pretrained_encoder(path)
        assert encoder_cfg["_name"] == "resnet1d" and encoder_cfg["embedding_dim"] == 16
        assert same_weights(encoder, model.encoder)
        assert f"model.model_path={path}: an {name} checkpoint; its encoder (resnet1d) is loaded, not its head" in (
            caplog.text
        )
    # The probe built on that encoder starts from it.
    tuned = EcgClassifier.build_model(EcgClassifierConfig(model_path=str(tmp_path / "ecg_classifier.pt")))
    assert same_weights(tuned.encoder, probe.encoder) and tuned.cfg.encoder["_name"] == "resnet1d"


def test_a_pretraining_checkpoint_is_the_encoder(tmp_path):
    register_plugins()
    encoder = build_encoder(dict(SMALL))
    path = save(tmp_path / "pretrained.pt", encoder, encoder.cfg, "resnet1d")
    loaded, _ = load_pretrained_encoder(path)
    assert same_weights(loaded, encoder)


def test_a_checkpoint_that_gives_no_encoder_is_one_line(tmp_path):
    register_plugins()
    encoder = build_encoder(dict(SMALL))
    torch.save({"model": encoder.state_dict(), "cfg": {"model": {"_name": "wav2vec2_cmsc"}}}, tmp_path / "fs.pt")
    with pytest.raises(EncoderError, match=r"^model.model_path=.*fs.pt: unknown encoder model 'wav2vec2_cmsc'; "):
        load_pretrained_encoder(str(tmp_path / "fs.pt"))
    wider = build_encoder({**SMALL, "base_width": 16})
    torch.save({"model": wider.state_dict(), "cfg": {"model": dict(SMALL)}}, tmp_path / "mismatch.pt")
    with pytest.raises(EncoderError, match=r"mismatch.pt: the weights do not match the model config \(Error"):
        load_pretrained_encoder(str(tmp_path / "mismatch.pt"))
