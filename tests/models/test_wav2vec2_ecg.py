"""wav2vec2_ecg: upstream wav2vec 2.0 pieces over multi-lead input, for any set of present leads."""

import numpy as np
import pytest
import torch
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models.wav2vec.wav2vec2 import ConvFeatureExtractionModel, TransformerEncoder, Wav2Vec2Model
from fairseq.modules import GumbelVectorQuantizer
from omegaconf import OmegaConf

from conftest import W2V_TINY
from fairseq_goodviews.models.wav2vec2_ecg import (
    Wav2Vec2EcgConfig,
    Wav2Vec2EcgModel,
    parse_conv_layers,
    standardise_leads,
)

SMALL = W2V_TINY
T = 800  # samples: 50 latent steps at the 16-sample stride


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(**overrides) -> Wav2Vec2EcgModel:
    torch.manual_seed(0)
    cfg = merge_with_parent(Wav2Vec2EcgConfig(), OmegaConf.create({**SMALL, **overrides}))
    return Wav2Vec2EcgModel.build_model(cfg)


def with_leads_present(n_present: int, in_leads: int = 12, batch: int = 3) -> torch.Tensor:
    """Random signals in ``n_present`` randomly chosen lead slots, zeros in the others."""
    generator = torch.Generator().manual_seed(n_present)
    source = torch.randn(batch, in_leads, T, generator=generator)
    absent = torch.randperm(in_leads, generator=generator)[n_present:]
    source[:, absent] = 0.0
    return source


def test_conv_layers_are_read_without_eval():
    assert parse_conv_layers("[(256, 2, 2)] * 4") == [(256, 2, 2)] * 4
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    for bad in [
        "__import__('os').system('true')",
        "[(1, 2)]",
        "[(1, 2, 3)] * 10 ** 9",
        "[(0, 2, 2)]",
        "[]",
        "[(1, 2, 3)] * 1000",
    ]:
        with pytest.raises(ValueError):
            parse_conv_layers(bad)


def test_paper_defaults_and_upstream_building_blocks():
    cfg = Wav2Vec2EcgConfig()
    assert (cfg.in_leads, cfg.conv_feature_layers, cfg.encoder_layers, cfg.encoder_embed_dim) == (
        12,
        "[(256, 2, 2)] * 4",
        12,
        768,
    )
    assert (cfg.final_dim, cfg.mask_prob, cfg.feature_grad_mult, cfg.quantize_targets) == (256, 0.65, 0.1, True)
    model = small_model()
    assert isinstance(model, Wav2Vec2Model)
    assert isinstance(model.feature_extractor, ConvFeatureExtractionModel)
    assert isinstance(model.encoder, TransformerEncoder)
    assert isinstance(model.quantizer, GumbelVectorQuantizer)
    assert model.feature_extractor.conv_layers[0][0].in_channels == 12


@pytest.mark.parametrize("in_leads", [12, 3, 1])
def test_feature_mask_and_quantiser_shapes_for_every_number_of_present_leads(in_leads):
    model = small_model(in_leads=in_leads)
    steps = T // 16
    for n_present in range(1, in_leads + 1):
        source = with_leads_present(n_present, in_leads)
        features = model.feature_extractor(source)
        assert features.shape == (3, 32, steps) and torch.isfinite(features).all()

        np.random.seed(n_present)
        masked, mask_indices = model.apply_mask(features.transpose(1, 2), None)
        assert masked.shape == (3, steps, 32) and mask_indices.shape == (3, steps)
        per_record = mask_indices.sum(dim=1)
        assert (per_record == per_record[0]).all() and 0 < per_record[0] < steps

        quantised, codes = model.quantize(source)
        assert quantised.shape == (3, steps, 16) and codes.shape == (3, steps, 2)
        assert codes.min() >= 0 and codes.max() < 16

        out = model(source)
        assert out["x"].shape[:2] == (1 + 10, 3) and out["x"].shape[2] > 0  # true latent + negatives
        assert torch.isfinite(out["x"][0]).all() and torch.isfinite(out["features_pen"])
        assert out["embedding"].shape == (3, 32) and torch.isfinite(out["embedding"]).all()
        assert model.encode(source).shape == (3, 32)


def test_all_leads_absent_still_gives_finite_outputs():
    model = small_model()
    out = model(torch.zeros(2, 12, T))
    assert torch.isfinite(out["embedding"]).all() and torch.isfinite(out["x"][0]).all()


def test_input_with_the_wrong_number_of_leads_is_a_clear_error():
    with pytest.raises(ValueError, match="3 leads"):
        small_model(in_leads=3)(torch.randn(2, 12, T))


def test_embedding_pools_the_one_masked_pass_by_default():
    model = small_model().eval()
    source = with_leads_present(5)
    steps = T // 16
    mask_indices = torch.zeros(3, steps, dtype=torch.bool)
    mask_indices[:, 10:20] = True
    with torch.no_grad():
        out = model(source, mask_indices=mask_indices)
        masked_frames = model(source, mask_indices=mask_indices, features_only=True)["x"]
        unmasked = model.encode(source)
    assert torch.allclose(out["embedding"], masked_frames.mean(dim=1), atol=1e-6)
    # The masked steps carry the mask embedding, so the pooled output differs from the unmasked pass.
    assert not torch.allclose(out["embedding"], unmasked, atol=1e-4)


def test_padded_steps_are_left_out_of_the_masked_pass_embedding():
    model = small_model().eval()
    source = with_leads_present(12, batch=2)
    padding = torch.zeros(2, T, dtype=torch.bool)
    padding[1, T // 2 :] = True
    with torch.no_grad():
        out = model(source, padding_mask=padding, mask=False)
        frames = model(source, padding_mask=padding, mask=False, features_only=True)
    keep = ~frames["padding_mask"][1]
    assert torch.allclose(out["embedding"][1], frames["x"][1][keep].mean(dim=0), atol=1e-6)


def test_unmasked_pass_option_is_encode():
    model = small_model(cmsc_pass="unmasked").eval()
    source = with_leads_present(5)
    with torch.no_grad():
        encoded = model.encode(source)
        assert torch.equal(encoded, model.encode(source))
        assert torch.allclose(model(source)["embedding"], encoded)
        frames = model(source, mask=False, features_only=True)["x"]
    assert torch.allclose(encoded, frames.mean(dim=1))


def test_gradients_reach_the_multi_lead_first_layer():
    model = small_model()
    out = model(with_leads_present(12))
    (model.get_logits(out).logsumexp(-1).sum() + out["embedding"].sum()).backward()
    first = model.feature_extractor.conv_layers[0][0].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_forward_and_backward_under_bf16_autocast():
    model = small_model()
    source = with_leads_present(12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(source)
        logits = model.get_logits(out).float()
    assert out["embedding"].shape == (3, 32) and torch.isfinite(out["embedding"].float()).all()
    # Upstream sets a negative equal to the target to -inf; nothing may be NaN, the true latent is finite.
    assert not torch.isnan(logits).any() and torch.isfinite(logits[:, 0]).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
    assert torch.isfinite(loss)
    (loss + out["embedding"].float().sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("channel_prob", [0.0, 0.3])
def test_masking_is_reproducible_from_the_torch_seed(channel_prob):
    """Upstream draws its mask spans from fresh OS entropy; here the same seed gives the same masks."""
    model = small_model(mask_prob=0.5, mask_channel_prob=channel_prob).train()
    x = torch.randn(4, 50, SMALL["encoder_embed_dim"])

    def masked(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        out, indices = model.apply_mask(x.clone(), None)
        return out, indices

    first, second, other = masked(3), masked(3), masked(4)
    assert torch.equal(first[1], second[1]) and torch.equal(first[0], second[0])
    assert first[1].any() and not torch.equal(first[1], other[1])
    assert not torch.equal(first[1][0], first[1][1])  # rows get their own spans


def test_lead_standardisation_leaves_out_absent_leads_and_padding():
    x = torch.randn(2, 12, T, generator=torch.Generator().manual_seed(0)) * 3 + 1
    x[:, 3] = 0.0  # absent
    x[:, 5] = 2.5  # constant
    x[1, :, 300:] = 0.0  # a 300-sample record zero-padded to T
    out = standardise_leads(x)
    assert torch.equal(out[:, 3], torch.zeros(2, T)) and torch.equal(out[:, 5], torch.zeros(2, T))
    assert torch.equal(out[1, :, 300:], torch.zeros(12, T - 300))
    for row, length in ((0, T), (1, 300)):
        present = x[row, :, :length].double()
        leads = [i for i in range(12) if i not in (3, 5)]
        mean, std = present[leads].mean(dim=1, keepdim=True), present[leads].std(dim=1, unbiased=False, keepdim=True)
        torch.testing.assert_close(
            out[row, leads, :length].double(), (present[leads] - mean) / std, atol=1e-5, rtol=1e-5
        )
    # the model applies it to every pass: a lead's gain and offset no longer matter, padding still does
    model = small_model(input_normalisation="per_lead_standardise").eval()
    scaled = (x * torch.linspace(0.5, 7.0, 12)[None, :, None] + 4.0) * (x != 0)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(scaled), model.encode(x), atol=1e-4, rtol=1e-4)
        plain = small_model().eval()
        assert not torch.allclose(plain.encode(scaled), plain.encode(x), atol=1e-2)
