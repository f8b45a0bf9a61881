"""ArcFace criterion, ecg_identifier model and ecg_identification task, without a training run."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.criterions.arcface import ArcFaceCriterion, additive_angular_margin
from fairseq_goodviews.evaluation.embed import EcgEncoder, embed_records
from fairseq_goodviews.io.checkpoints import CheckpointError
from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord, read_record, write_record
from fairseq_goodviews.leads import parse_leads
from fairseq_goodviews.models.ecg_classifier import build_encoder
from fairseq_goodviews.models.ecg_identifier import EcgIdentifier, EcgIdentifierConfig
from fairseq_goodviews.scoring.retrieval import IdentificationError, gallery_probe_split, retrieval_metrics
from fairseq_goodviews.tasks.ecg_identification import EcgIdentificationConfig, EcgIdentificationTask

TINY_RESNET = {"_name": "resnet1d", "base_width": 8, "layers": [1, 1, 1, 1], "embedding_dim": 16}


def test_margin_is_added_to_the_target_angle_only():
    cosine = torch.tensor([[math.cos(math.pi / 3), 0.2, -0.1], [0.1, math.cos(math.pi - 0.2), 0.3]])
    out = additive_angular_margin(cosine, torch.tensor([0, 1]), margin=0.5)
    assert out[0, 0].item() == pytest.approx(math.cos(math.pi / 3 + 0.5))
    # theta = pi - 0.2 is past pi - m: ArcFace's fallback cos(theta) - m sin(m).
    assert out[1, 1].item() == pytest.approx(math.cos(math.pi - 0.2) - 0.5 * math.sin(0.5))
    untouched = torch.ones_like(cosine, dtype=torch.bool)
    untouched[0, 0] = untouched[1, 1] = False
    assert torch.equal(out[untouched], cosine[untouched])
    assert torch.equal(additive_angular_margin(cosine, torch.tensor([0, 1]), margin=0.0)[0], cosine[0])


def _write_split(root, split, patient_ids, n_samples=1200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, pid in enumerate(patient_ids):
        rel = f"records/{split}_{i}.mat"
        write_record(root / rel, EcgRecord(rng.normal(size=(12, n_samples)).astype(np.float32), 500.0))
        rows.append({"path": rel, "n_samples": n_samples, "record_id": f"{split}_{i}", "patient_id": pid})
    write_manifest(root, split, root, pd.DataFrame(rows))


@pytest.fixture
def folder(tmp_path):
    _write_split(tmp_path, "train", ["p1", "p2", "", "p1", "p3", "p2"])
    _write_split(tmp_path, "valid", ["v1", "v2", "v1", "v2", "v3"], seed=1)
    _write_split(tmp_path, "test", ["t1", "t2", "t3"], seed=2)
    return tmp_path


def test_task_labels_training_patients_and_checks_validation_splits(folder):
    task = EcgIdentificationTask.setup_task(EcgIdentificationConfig(data=str(folder), sample_size=1000, seed=1))
    assert task.num_patients == 3
    task.load_dataset("train")
    train = task.dataset("train")
    assert len(train) == 5  # the record without a patient id is left out
    assert train.labels.tolist() == [0, 1, 0, 2, 1]
    task.load_dataset("valid")
    assert task.dataset("valid").labels.tolist() == [0, 1, 0, 1, 2]
    with pytest.raises(IdentificationError, match=r"test.csv: no patient has two or more records"):
        task.load_dataset("test")


def _model_cfg():
    return OmegaConf.create(
        {"_name": "ecg_identifier", "model_path": None, "encoder": dict(TINY_RESNET), "num_patients": 0}
    )


def test_model_config_saved_in_checkpoints_rebuilds_the_model(folder):
    task = EcgIdentificationTask.setup_task(EcgIdentificationConfig(data=str(folder), sample_size=1000, seed=1))
    cfg = _model_cfg()
    model = task.build_model(cfg)
    assert cfg.num_patients == 3 and model.prototypes.shape == (3, 16)
    rebuilt = EcgIdentifier.build_model(merge_with_parent(EcgIdentifierConfig(), cfg), task=None)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def _criterion_and_model(folder, margin=0.3, scale=10.0):
    task = EcgIdentificationTask.setup_task(EcgIdentificationConfig(data=str(folder), sample_size=1000, seed=1))
    torch.manual_seed(0)
    model = task.build_model(_model_cfg())
    return task, ArcFaceCriterion(task, scale=scale, margin=margin), model


def test_training_loss_is_cross_entropy_of_margin_logits(folder):
    task, criterion, model = _criterion_and_model(folder)
    task.load_dataset("train")
    dataset = task.dataset("train")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    model.train()
    loss, n, log = criterion(model, sample)
    with torch.no_grad():  # same weights and batch statistics: the cosines the loss saw
        cosine = model(**sample["net_input"])["cosine"]
    target = sample["target"]
    theta = torch.acos(cosine.gather(1, target[:, None]).clamp(-1, 1))
    expected_logits = cosine.clone()
    expected_logits.scatter_(1, target[:, None], torch.cos(theta + 0.3))
    expected = F.cross_entropy(10.0 * expected_logits, target, reduction="sum")
    assert n == 5 and log["loss"] == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert model.prototypes.grad is not None and model.prototypes.grad.abs().sum() > 0


def test_validation_collects_a_whole_split_and_scores_retrieval(folder):
    task, criterion, model = _criterion_and_model(folder)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    model.eval()
    # Batches arrive in any order; the protocol follows the manifest order through the ids.
    logs = [criterion(model, dataset.collater([dataset[i] for i in batch]))[2] for batch in ([4, 1], [3, 0, 2])]
    assert all("loss" not in log for log in logs)
    with metrics.aggregate(new_root=True) as agg:
        ArcFaceCriterion.reduce_metrics(logs)
        logged = agg.get_smoothed_values()
    with torch.no_grad():
        embeddings = model.encode(dataset.collater([dataset[i] for i in range(5)])["net_input"]["source"]).numpy()
    protocol = gallery_probe_split(["v1", "v2", "v1", "v2", "v3"])
    expected = retrieval_metrics(
        embeddings[protocol.gallery], protocol.gallery_patients, embeddings[protocol.probe], protocol.probe_patients
    )
    for key in ("top1", "top5", "eer"):
        assert logged[key] == pytest.approx(expected[key], abs=1e-6), key


def test_lead_subset_zero_fills_the_other_leads(folder):
    torch.manual_seed(0)
    encoder = build_encoder(dict(TINY_RESNET)).eval()
    model = EcgEncoder(encoder, "ecg_pretraining", 500.0, 1000)
    indices = np.arange(3)
    subset = embed_records(model, folder / "valid.tsv", indices, 1000, leads=parse_leads("I,II"), batch_size=2)
    signals = []
    for i in indices:
        feats = read_record(folder / f"records/valid_{i}.mat").feats[:, 100:1100].copy()  # centred crop
        feats[2:] = 0.0
        signals.append(feats)
    with torch.no_grad():
        expected = encoder.encode(torch.from_numpy(np.stack(signals))).numpy()
    np.testing.assert_allclose(subset, expected, rtol=1e-5, atol=1e-6)
    full = embed_records(model, folder / "valid.tsv", indices, 1000)
    assert not np.allclose(full, subset)


def test_missing_pretraining_checkpoint_is_named(folder):
    task = EcgIdentificationTask.setup_task(EcgIdentificationConfig(data=str(folder), sample_size=1000, seed=1))
    cfg = _model_cfg()
    cfg.model_path = str(folder / "gone.pt")
    with pytest.raises(CheckpointError, match=r"^model.model_path=.*gone.pt: checkpoint not found$"):
        task.build_model(cfg)
