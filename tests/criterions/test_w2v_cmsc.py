"""wav2vec2_cmsc: upstream wav2vec 2.0 loss + CMSC, every term logged, the sum falling in a tiny run."""

import numpy as np
import pytest
import torch
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
from fairseq.dataclass.utils import merge_with_parent
from fairseq.logging import metrics
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import PRETRAIN_CONFIGS, W2V_TINY
from fairseq_goodviews.criterions.w2v_cmsc import Wav2Vec2CmscCriterion
from fairseq_goodviews.models.wav2vec2_ecg import Wav2Vec2EcgConfig, Wav2Vec2EcgModel
from fairseq_goodviews.strategies.base import ALL, same

CONFIGS = PRETRAIN_CONFIGS
SMALL = W2V_TINY


pytestmark = pytest.mark.usefixtures("one_thread")


class SegmentsTask:
    """The CMSC relation: views of the same record in different segments are positives."""

    def positive_mask(self, meta, rows=ALL):
        return same(meta["record"], rows) & ~same(meta["segment"], rows)


def small_model() -> Wav2Vec2EcgModel:
    torch.manual_seed(0)
    return Wav2Vec2EcgModel.build_model(merge_with_parent(Wav2Vec2EcgConfig(), OmegaConf.create(SMALL)))


def cmsc_batch(records: int = 6, segment: int = 800) -> dict:
    """Two consecutive segments per record of a record-specific rhythm, random leads masked out.

    The wav2vec 2.0 time mask is fixed (upstream draws it from unseeded generators otherwise).
    """
    rng = np.random.default_rng(0)
    t = np.arange(2 * segment) / 500.0
    sources, record, seg = [], [], []
    for r in range(records):
        rate = 0.8 + 0.25 * r
        signal = np.sin(2 * np.pi * rate * t)[None] * rng.normal(1, 0.3, (12, 1)) + rng.normal(
            0, 0.05, (12, 2 * segment)
        )
        for s in range(2):
            view = signal[:, s * segment : (s + 1) * segment].copy()
            view[rng.random(12) < 0.5] = 0.0
            sources.append(view)
            record.append(r)
            seg.append(s)
    time_mask = torch.zeros(2 * records, segment // 16, dtype=torch.bool)
    time_mask[:, 5:15] = time_mask[:, 25:35] = True
    return {
        "id": torch.arange(records),
        "net_input": {"source": torch.tensor(np.stack(sources), dtype=torch.float32), "mask_indices": time_mask},
        "views_meta": {"record": torch.tensor(record), "segment": torch.tensor(seg)},
        "nsentences": records,
        "ntokens": 2 * records * segment,
    }


def criterion(**kwargs) -> Wav2Vec2CmscCriterion:
    options = {
        "infonce": True,
        "loss_weights": [0.1, 10.0],
        "log_keys": ["prob_perplexity", "code_perplexity", "temp"],
        "cmsc_weight": 1.0,
        "cmsc_temperature": 0.1,
        **kwargs,
    }
    return Wav2Vec2CmscCriterion(SegmentsTask(), **options)


def test_every_term_is_logged_and_the_terms_sum_to_the_loss():
    loss, sample_size, log = criterion()(small_model(), cmsc_batch())
    parts = ["loss_w2v", "loss_diversity", "loss_features", "loss_cmsc"]
    assert all(np.isfinite(log[p]) for p in parts) and torch.isfinite(loss)
    assert sum(log[p] for p in parts) == pytest.approx(log["loss"], rel=1e-5)
    assert log["loss"] == pytest.approx(loss.item(), rel=1e-6)
    assert log["loss_cmsc"] == pytest.approx(log["cmsc"] / log["cmsc_anchors"] * sample_size, rel=1e-5)
    assert log["cmsc_anchors"] == 12 and log["cmsc_positives"] == 12 and log["cmsc_anchors_without_positive"] == 0
    assert sample_size == log["count"] == 12 * 20

    with metrics.aggregate() as agg:
        Wav2Vec2CmscCriterion.reduce_metrics([log])
    values = agg.get_smoothed_values()
    for key in [*parts, "loss", "cmsc", "prob_perplexity", "accuracy"]:
        assert key in values, key
    assert values["cmsc"] == pytest.approx(log["cmsc"] / 12, abs=1e-3)


def test_zero_weight_penalties_are_left_out_under_their_own_names():
    _, _, log = criterion(loss_weights=[0.0, 10.0])(small_model(), cmsc_batch())
    assert "loss_diversity" not in log and "loss_features" in log and "loss_w2v" in log
    _, _, log = criterion(loss_weights=None)(small_model(), cmsc_batch())
    assert log["loss_w2v"] + log["loss_cmsc"] == pytest.approx(log["loss"], rel=1e-5)


def test_without_cmsc_it_is_upstream_wav2vec_criterion():
    batch = cmsc_batch()
    results = []
    for crit in (criterion(cmsc_weight=0.0), Wav2vecCriterion(SegmentsTask(), infonce=True, loss_weights=[0.1, 10.0])):
        model = small_model().eval()
        torch.manual_seed(3)  # negative sampling
        results.append(crit(model, batch)[0].item())
    assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_loss_is_finite_and_falls_over_a_tiny_run():
    model, crit, batch = small_model(), criterion(), cmsc_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(25):
        loss, sample_size, log = crit(model, batch)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        (loss / sample_size).backward()
        optimizer.step()
        history.append((loss.item() / sample_size, log["cmsc"] / log["cmsc_anchors"]))
    total, cmsc = np.array(history).T
    assert total[-5:].mean() < 0.7 * total[:5].mean()
    assert cmsc[-5:].mean() < cmsc[:5].mean()


def test_w2v_cmsc_rlm_config_has_fairseq_signals_settings():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        paper = compose(config_name="w2v_cmsc_rlm", overrides=["task.data=/x"])
        small = compose(config_name="w2v_cmsc_rlm", overrides=["task.data=/x", "preset=w2v_cpu_small"])
    assert paper.model._name == "wav2vec2_ecg" and paper.criterion._name == "wav2vec2_cmsc"
    assert (paper.model.encoder_layers, paper.model.encoder_embed_dim, paper.model.conv_feature_layers) == (
        12,
        768,
        "[(256, 2, 2)] * 4",
    )
    assert (paper.model.mask_prob, paper.model.final_dim, paper.model.feature_grad_mult) == (0.65, 256, 0.1)
    assert list(paper.criterion.loss_weights) == [0.1, 10.0] and paper.criterion.cmsc_temperature == 0.1
    assert list(paper.optimizer.adam_betas) == [0.9, 0.98] and paper.optimizer.adam_eps == 1e-6
    assert paper.optimizer.weight_decay == 0.01 and list(paper.optimization.lr) == [5e-5]
    assert paper.task.lead_mask_prob == 0.5 and paper.task.strategy._name == "cmsc"
    assert (paper.task.strategy.n_segments, paper.task.strategy.segment_length, paper.task.sample_size) == (
        2,
        2500,
        5000,
    )
    assert small.model.encoder_layers == 2 and small.model.encoder_embed_dim == 128
    assert small.criterion == paper.criterion and small.optimizer == paper.optimizer
    assert list(small.optimization.lr) == [5e-4]  # the preset's few updates need a larger step
