"""The linear probe standardises frozen features with training-split statistics (random init included)."""

import torch

from fairseq_goodviews import register_plugins
from fairseq_goodviews.models.ecg_classifier import EcgClassifier, EcgClassifierConfig

SMALL = {"_name": "resnet1d", "base_width": 8, "layers": [1, 1, 1, 1]}


def _model(freeze: bool) -> EcgClassifier:
    register_plugins()
    torch.manual_seed(0)
    return EcgClassifier.build_model(EcgClassifierConfig(freeze_encoder=freeze, encoder=dict(SMALL), num_classes=3))


def test_random_init_probe_standardises_with_the_training_batches_statistics():
    model = _model(freeze=True)
    batches = [torch.randn(6, 12, 500) * 0.5 + 0.1 for _ in range(4)]
    model.train()
    for batch in batches:
        model(batch)
    model.eval()
    with torch.no_grad():
        raw = torch.cat([model.encoder.encode(b) for b in batches])
        standardised = torch.cat([model.features(b) for b in batches])
    # Cumulative statistics over every training batch: the split's mean, the mean of the batch variances.
    assert torch.allclose(model.feature_norm.running_mean, raw.mean(0), atol=1e-5)
    expected_var = torch.stack([f.var(0, unbiased=True) for f in raw.split(6)]).mean(0)
    assert torch.allclose(model.feature_norm.running_var, expected_var, rtol=1e-4, atol=1e-8)
    assert standardised.mean(0).abs().max() < 1e-3
    assert (standardised.std(0) - 1).abs().max() < 0.2
    # The raw features of a random encoder differ between records by a small fraction of their scale.
    assert raw.std(0).mean() < raw.abs().mean()


def test_a_single_record_training_batch_uses_the_statistics_so_far():
    model = _model(freeze=True)
    model.train()
    model(torch.randn(4, 12, 500))
    mean = model.feature_norm.running_mean.clone()
    out = model(torch.randn(1, 12, 500))["logits"]
    assert out.shape == (1, 3) and torch.equal(model.feature_norm.running_mean, mean)


def test_fine_tuning_has_no_feature_norm_and_the_encoder_trains():
    model = _model(freeze=False)
    assert model.feature_norm is None
    assert all(p.requires_grad for p in model.encoder.parameters())


def test_a_probe_computes_an_evaluation_batchs_features_once_and_gets_the_same_bits():
    model = _model(freeze=True)
    model.train()
    model(torch.randn(8, 12, 500))
    model.eval()
    batch = torch.randn(5, 12, 500)
    calls = []
    encode = model.encoder.encode

    def counted(source):
        calls.append(source.shape[0])
        return encode(source)

    model.encoder.encode = counted
    with torch.no_grad():
        first = model(batch)["logits"]
        again = model(batch.clone())["logits"]
        model(batch[:4])
    assert calls == [5, 4]
    assert torch.equal(first, again)
    model.encoder.encode = encode
    with torch.no_grad():
        assert torch.equal(model.features(batch), model.feature_norm(encode(batch)))
    # Training batches are never kept, and new weights forget what was kept.
    model.train()
    model(torch.randn(6, 12, 500))
    assert len(model.evaluation_features) == 2
    model.load_state_dict(model.state_dict())
    assert len(model.evaluation_features) == 0


def test_the_feature_cache_stops_keeping_at_its_size_and_a_fine_tune_has_none():
    model = _model(freeze=True)
    model.evaluation_features.max_bytes = 0
    model.eval()
    with torch.no_grad():
        model(torch.randn(3, 12, 500))
    assert len(model.evaluation_features) == 0
    assert _model(freeze=False).evaluation_features is None
