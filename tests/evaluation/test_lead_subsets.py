"""W2V+CMSC+RLM end to end through fairseq-hydra-train, and the lead-subset evaluation of its probe."""

import json
import math
import os
import re

import pytest
import torch

from conftest import FINETUNE_CONFIGS, PRETRAIN_CONFIGS, hydra_train
from fairseq_goodviews.cli.lead_subsets import main
from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint
from fairseq_goodviews.evaluation.lead_subsets import LEAD_SUBSETS, format_table
from fairseq_goodviews.leads import lead_names, parse_leads

PRETRAIN = PRETRAIN_CONFIGS
FINETUNE = FINETUNE_CONFIGS
# Tiny records are 1000 samples: two CMSC segments of 500.
PRETRAIN_SMALL = [
    "preset=w2v_cpu_small",
    "task.sample_size=1000",
    "task.strategy.segment_length=500",
    "dataset.batch_size=16",
    "dataset.num_workers=0",
    "optimization.max_epoch=1",
]
FINETUNE_SMALL = [
    "preset=w2v_cpu_small",
    "task.sample_size=1000",
    "dataset.batch_size=16",
    "dataset.num_workers=0",
    "optimization.max_epoch=1",
]
# Tiny models: intra-op threads only add overhead (and stall on a busy machine).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _logged_test_auroc(log: str) -> float:
    return float(re.findall(r"valid on 'test' subset \| .*?macro_auroc ([0-9.]+)", log)[-1])


@pytest.fixture(scope="module")
def pretrained(tiny_dataset, tmp_path_factory):
    """One epoch of W2V+CMSC+RLM (CPU preset) on the tiny dataset; its last checkpoint."""
    tmp = tmp_path_factory.mktemp("w2v_cmsc_rlm")
    run = hydra_train(
        PRETRAIN,
        "w2v_cmsc_rlm",
        [*PRETRAIN_SMALL, f"task.data={tiny_dataset}", f"checkpoint.save_dir={tmp / 'ckpt'}"],
        tmp,
        env=ENV,
    )
    log = run.stdout + run.stderr
    for term in ("loss_w2v", "loss_diversity", "loss_features", "loss_cmsc", "cmsc"):
        assert re.search(rf"\| {term} [0-9.]+", log), f"{term} is not logged"
    checkpoint = tmp / "ckpt" / "checkpoint_last.pt"
    task = torch.load(checkpoint, weights_only=True)["cfg"]["task"]
    assert task["lead_mask_prob"] == 0.5 and task["strategy"]["_name"] == "cmsc"
    return checkpoint


@pytest.mark.slow
def test_rlm_pretrained_model_probed_on_one_lead_end_to_end(pretrained, tiny_dataset, tmp_path, capsys):
    probe = tmp_path / "probe"
    run = hydra_train(
        FINETUNE,
        "linear_probe",
        [
            *FINETUNE_SMALL,
            f"task.data={tiny_dataset}",
            "+task.leads=II",
            "dataset.valid_subset='valid,test'",  # the test metrics logged, to compare with goodviews-evaluate's
            f"model.model_path={pretrained}",
            f"checkpoint.save_dir={probe}",
        ],
        tmp_path,
        env=ENV,
    )
    checkpoint = probe / "checkpoint_best.pt"
    pretrained_weights = torch.load(pretrained, weights_only=True)["model"]
    probed_weights = torch.load(checkpoint, weights_only=True)["model"]
    for key, value in pretrained_weights.items():
        assert torch.equal(probed_weights[f"encoder.{key}"], value), f"{key} changed during a frozen-encoder probe"

    metrics = evaluate_checkpoint(checkpoint, split="test", leads=parse_leads("II"))
    assert metrics["macro_auroc"] == pytest.approx(_logged_test_auroc(run.stdout + run.stderr), abs=1e-5)

    out = tmp_path / "subsets.json"
    assert main([str(checkpoint), "--data", str(tiny_dataset), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for name in LEAD_SUBSETS:
        assert name in table
    payload = json.loads(out.read_text())
    assert [s["name"] for s in payload["subsets"]] == list(LEAD_SUBSETS)
    assert [len(s["leads"]) for s in payload["subsets"]] == [12, 6, 4, 3, 2, 1]
    one_lead = payload["subsets"][-1]
    assert one_lead["leads"] == ["II"] and one_lead["metrics"]["warnings"] == metrics["warnings"]
    numbers = {k: v for k, v in one_lead["metrics"].items() if k != "warnings"}
    assert numbers == pytest.approx({k: v for k, v in metrics.items() if k != "warnings"})


@pytest.mark.slow
def test_finetuned_checkpoint_round_trips(pretrained, tiny_dataset, tmp_path):
    finetuned = tmp_path / "finetune"
    hydra_train(
        FINETUNE,
        "finetune",
        [
            *FINETUNE_SMALL,
            f"task.data={tiny_dataset}",
            f"model.model_path={pretrained}",
            f"checkpoint.save_dir={finetuned}",
        ],
        tmp_path,
        env=ENV,
    )
    checkpoint = finetuned / "checkpoint_last.pt"
    pretrained_weights = torch.load(pretrained, weights_only=True)["model"]
    tuned_weights = torch.load(checkpoint, weights_only=True)["model"]
    assert set(tuned_weights) == {f"encoder.{k}" for k in pretrained_weights} | {"head.weight", "head.bias"}
    key = "encoder.encoder.layers.0.fc1.weight"
    assert not torch.equal(tuned_weights[key], pretrained_weights[key.removeprefix("encoder.")]), (
        "encoder did not train"
    )

    first = evaluate_checkpoint(checkpoint, split="test", leads=parse_leads("I,II,V2"))
    second = evaluate_checkpoint(checkpoint, split="test", leads=parse_leads("I,II,V2"))
    assert first == second
    assert all(math.isfinite(first[k]) for k in ("macro_auroc", "accuracy", "macro_f1"))


def test_subsets_are_the_challenges_plus_one_lead_and_the_table_shows_them_in_order():
    subsets = [None if leads is None else ",".join(lead_names(leads)) for leads in LEAD_SUBSETS.values()]
    assert subsets == [None, "I,II,III,aVR,aVL,aVF", "I,II,III,V2", "I,II,V2", "I,II", "II"]
    results = {
        name: {"metrics": {"macro_auroc": 0.5 + i / 10, "macro_auprc": 0.4, "accuracy": 0.3, "macro_f1": 0.2}}
        for i, name in enumerate(LEAD_SUBSETS)
    }
    lines = format_table(results).splitlines()
    assert lines[0].split()[:2] == ["leads", "macro_auroc"]
    assert [line.startswith(name) for line, name in zip(lines[1:], LEAD_SUBSETS, strict=True)] == [True] * 6
    assert "1.0000" in lines[-1]


def test_multi_label_table_shows_the_tasks_own_metrics():
    metrics = {"macro_auroc": 0.8, "macro_auprc": 0.5, "f_max": 0.6, "challenge_score": 0.3, "per_class_auroc": {}}
    lines = format_table({name: {"metrics": metrics} for name in LEAD_SUBSETS}).splitlines()
    assert lines[0].split() == ["leads", "macro_auroc", "macro_auprc", "f_max", "challenge_score"]
    assert lines[3].startswith("4 leads (I, II, III, V2)") and lines[3].split()[-1] == "0.3000"


def test_missing_or_wrong_checkpoint_is_a_clear_error(tmp_path, capsys):

    from fairseq_goodviews.cli.lead_subsets import main

    assert main([str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: checkpoint not found" in capsys.readouterr().err
