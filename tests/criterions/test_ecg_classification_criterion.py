"""ecg_classification criterion: BCE with logits for multi-hot targets, crop averaging, fine-tune gradients."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fairseq_goodviews import register_plugins
from fairseq_goodviews.criterions.ecg_classification import EcgClassificationCriterion
from fairseq_goodviews.models.ecg_classifier import EcgClassifier, EcgClassifierConfig


def _model(freeze: bool) -> EcgClassifier:
    register_plugins()
    torch.manual_seed(0)
    cfg = EcgClassifierConfig(
        freeze_encoder=freeze, encoder={"_name": "resnet1d", "base_width": 8, "layers": [1, 1, 1, 1]}, num_classes=3
    )
    return EcgClassifier.build_model(cfg)


def test_multi_label_fine_tune_trains_the_encoder_with_bce():
    model = _model(freeze=False)
    criterion = EcgClassificationCriterion(task=None)
    source = torch.randn(4, 12, 500)
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    sample = {"net_input": {"source": source}, "target": target, "crop_record": torch.arange(4), "ntokens": 2000}
    model.train()
    loss, sample_size, log = criterion(model, sample)
    expected = F.binary_cross_entropy_with_logits(model(source)["logits"], target, reduction="none").mean(1).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5) and sample_size == 4
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert "correct" not in log and "probs" not in log


def test_evaluation_scores_the_mean_of_a_records_crops():
    model = _model(freeze=True)
    model.eval()
    criterion = EcgClassificationCriterion(task=None)
    source = torch.randn(3, 12, 500)
    target = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.float32)
    sample = {
        "net_input": {"source": source},
        "target": target,
        "crop_record": torch.tensor([0, 0, 1]),
        "ntokens": 1500,
        "split": "valid",
    }
    loss, sample_size, log = criterion(model, sample)
    with torch.no_grad():
        crops = torch.sigmoid(model(source)["logits"])
    expected = torch.stack([crops[:2].mean(0), crops[2]]).numpy()
    assert sample_size == 2 and np.allclose(log["probs"], expected, atol=1e-6)
    bce = F.binary_cross_entropy(torch.from_numpy(expected), target, reduction="none").mean(1).sum()
    assert loss.item() == pytest.approx(bce.item(), rel=1e-5)
    assert log["split"] == "valid" and log["targets"].shape == (2, 3)
