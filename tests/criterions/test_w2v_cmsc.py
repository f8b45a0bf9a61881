"""wav2vec2_cmsc: upstream wav2vec 2.0 loss + CMSC, every term logged, the sum falling in a tiny run."""

import numpy as np
import pytest
import torch
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
from fairseq.dataclass.utils import merge_with_parent
from fairseq.logging import metrics
from fairseq.optim.lr_scheduler.fixed_schedule import FixedLRScheduleConfig
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import PRETRAIN_CONFIGS, W2V_TINY
from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce
from fairseq_goodviews.criterions.w2v_cmsc import (
    CmscFormError,
    Wav2Vec2CmscCriterion,
    Wav2Vec2CmscCriterionConfig,
    segment_pair_cmsc,
)
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


def fairseq_signals_cmsc(features: torch.Tensor, patient_id: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    """fairseq-signals' CMSC term, written from a reading of its ``wav2vec2_with_cmsc`` criterion.

    Features divided by their detached norm (eps 1e-8); rows: segment-0 views, columns: segment-1
    views; positives where the patient ids agree; the mean negative log-softmax over the positives
    along the rows, and along the columns of the transposed matrix; their average. Temperature 0.1.
    """
    features = features / torch.maximum(features.detach().norm(dim=-1, keepdim=True), torch.tensor(1e-8))
    first, second = segment == 0, segment == 1
    logits = features[first] @ features[second].T / 0.1
    target = patient_id[first][:, None] == patient_id[second][None, :]
    rows = -torch.log_softmax(logits, dim=-1)[target].mean()
    columns = -torch.log_softmax(logits.T, dim=-1)[target.T].mean()
    return rows / 2 + columns / 2


def shuffled_views(records: int = 32, dim: int = 16, seed: int = 0):
    """Two views per record in shuffled order, embeddings correlated within a record."""
    generator = torch.Generator().manual_seed(seed)
    centre = torch.randn(records, dim, generator=generator)
    embeddings = centre.repeat_interleave(2, 0) + 0.7 * torch.randn(2 * records, dim, generator=generator)
    record = torch.arange(records).repeat_interleave(2)
    segment = torch.tensor([0, 1] * records)
    order = torch.randperm(2 * records, generator=generator)
    return embeddings[order].clone().requires_grad_(True), record[order], segment[order]


def test_segment_pairs_equal_fairseq_signals_cmsc_value_and_gradient():
    embeddings, record, segment = shuffled_views()
    relation = (record[:, None] == record[None, :]) & (segment[:, None] != segment[None, :])
    ours, pairs, anchors = segment_pair_cmsc(embeddings, segment, embeddings, segment, relation, 0.1)
    (ours_grad,) = torch.autograd.grad(ours, embeddings)
    theirs = fairseq_signals_cmsc(embeddings, record, segment)
    (theirs_grad,) = torch.autograd.grad(theirs, embeddings)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert torch.allclose(ours_grad, theirs_grad, atol=1e-6)
    assert (pairs, anchors) == (64, 64)


def test_segment_pairs_differ_from_the_all_views_form_on_the_same_embeddings():
    embeddings, record, segment = shuffled_views()
    relation = (record[:, None] == record[None, :]) & (segment[:, None] != segment[None, :])
    published, _, _ = segment_pair_cmsc(embeddings, segment, embeddings, segment, relation, 0.1)
    per_anchor, _ = multi_positive_info_nce(embeddings, embeddings, relation, 0, 0.1)
    # all_views also contrasts each view with the other views of its own segment: more negatives.
    assert per_anchor.mean().item() > published.item() + 0.05


def test_the_criterion_computes_the_published_form_by_default_and_all_views_on_request():
    batch, model = cmsc_batch(), small_model().eval()
    torch.manual_seed(3)
    _, _, published = criterion()(model, batch)
    torch.manual_seed(3)
    _, _, all_views = criterion(cmsc_form="all_views")(model, batch)
    with torch.no_grad():
        embedding = model(**batch["net_input"])["embedding"]
    meta = batch["views_meta"]
    expected = fairseq_signals_cmsc(embedding, meta["record"], meta["segment"]).item()
    assert published["cmsc"] / published["cmsc_anchors"] == pytest.approx(expected, abs=1e-5)
    assert all_views["cmsc"] / all_views["cmsc_anchors"] != pytest.approx(expected, abs=1e-3)


def test_segment_pairs_refuse_views_that_are_not_time_segments():
    batch = cmsc_batch()
    batch["views_meta"]["segment"] = torch.zeros_like(batch["views_meta"]["segment"])
    with pytest.raises(CmscFormError, match="cmsc_form=all_views"):
        criterion()(small_model(), batch)
    with pytest.raises(CmscFormError, match="segment_pairs, all_views"):
        criterion(cmsc_form="pairs")


#: Every setting of fairseq-signals' examples/w2v_cmsc/config/pretraining/w2v_cmsc_rlm.yaml (and the
#: model defaults it relies on), beside the key of ours that holds it. A value of ours that differs
#: on purpose is named in DIFFERENCES with the reason (docs/training.md says them too).
FAIRSEQ_SIGNALS_W2V_CMSC_RLM = {
    "common.fp16": (False, "common.fp16"),
    "task.perturbation_mode/mask_leads_prob": (0.5, "task.lead_mask_prob"),
    "task.normalize": (False, None),
    "dataset.batch_size": (64, "dataset.batch_size"),
    "distributed_training.distributed_world_size x optimization.update_freq": (4 * 2, "optimization.update_freq"),
    "criterion.infonce": (True, "criterion.infonce"),
    "criterion.log_keys": (["prob_perplexity", "code_perplexity", "temp"], "criterion.log_keys"),
    "criterion.loss_weights": ([0.1, 10], "criterion.loss_weights"),
    "criterion.temp (CMSC)": (0.1, "criterion.cmsc_temperature"),
    "criterion.cmsc_weights": (1.0, "criterion.cmsc_weight"),
    "criterion.all_gather (CMSC)": (False, "criterion.cmsc_gather"),
    "optimization.max_epoch": (200, "optimization.max_epoch"),
    "optimization.lr": ([5e-5], "optimization.lr"),
    "optimizer.adam_betas": ([0.9, 0.98], "optimizer.adam_betas"),
    "optimizer.adam_eps": (1e-6, "optimizer.adam_eps"),
    "optimizer.weight_decay": (0.01, "optimizer.weight_decay"),
    "lr_scheduler._name": ("fixed", "lr_scheduler._name"),
    "lr_scheduler.warmup_updates": (0, "lr_scheduler.warmup_updates"),
    "model.apply_mask / mask_prob": (0.65, "model.mask_prob"),
    "model.quantize_targets": (True, "model.quantize_targets"),
    "model.final_dim": (256, "model.final_dim"),
    "model.encoder_layerdrop (commented out: default)": (0.0, "model.encoder_layerdrop"),
    "model.dropout_input": (0.1, "model.dropout_input"),
    "model.dropout_features": (0.1, "model.dropout_features"),
    "model.feature_grad_mult": (0.1, "model.feature_grad_mult"),
    "model.encoder_embed_dim": (768, "model.encoder_embed_dim"),
    "model.encoder_layers (default)": (12, "model.encoder_layers"),
    "model.encoder_ffn_embed_dim (default)": (3072, "model.encoder_ffn_embed_dim"),
    "model.encoder_attention_heads (default)": (12, "model.encoder_attention_heads"),
    "model.latent_vars (default)": (320, "model.latent_vars"),
    "model.latent_groups (default)": (2, "model.latent_groups"),
    "model.num_negatives (default)": (100, "model.num_negatives"),
    "model.in_d": (12, "model.in_leads"),
}

#: The dataclass whose defaults fill a key our yaml does not set, by config group.
SCHEMAS = {"lr_scheduler": FixedLRScheduleConfig, "model": Wav2Vec2EcgConfig, "criterion": Wav2Vec2CmscCriterionConfig}

DIFFERENCES = {
    # fairseq-signals: 4 GPUs x update_freq 2; ours: update_freq 8 on one GPU, the same 512 records per update.
    "distributed_training.distributed_world_size x optimization.update_freq": 8,
    # fairseq-signals' input normalisation is off; we have no such option (records are in mV).
    "task.normalize": None,
}


def test_w2v_cmsc_rlm_lists_every_fairseq_signals_setting_beside_ours():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        ours = compose(config_name="w2v_cmsc_rlm", overrides=["task.data=/x"])
    for setting, (theirs, key) in FAIRSEQ_SIGNALS_W2V_CMSC_RLM.items():
        if key is None:
            assert setting in DIFFERENCES, setting
            continue
        value = OmegaConf.select(ours, key)
        if value is None:  # not in the yaml: the default of the registered component's dataclass
            group, name = key.split(".")
            value = getattr(SCHEMAS[group](), name)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if key == "optimization.update_freq":
            value = value[0] * ours.dataset.batch_size // 64
        expected = DIFFERENCES.get(setting, theirs)
        assert value == expected, (setting, key, value, expected)
    assert ours.dataset.batch_size * ours.optimization.update_freq[0] == 64 * 4 * 2  # 512 records per update
    assert ours.criterion.cmsc_form == "segment_pairs"
