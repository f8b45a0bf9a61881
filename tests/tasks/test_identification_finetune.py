"""Identification end to end: a multi-visit set, an ArcFace fine-tune through fairseq-hydra-train,
and ``goodviews-identify`` on frozen-encoder and fine-tuned checkpoints."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FINETUNE_CONFIGS, PRETRAIN_CONFIGS, hydra_train, shared_data
from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord, write_record


def write_multi_visit_dataset(
    root: Path, patients=(24, 8, 8), visits: int = 4, n_samples: int = 2000, seed: int = 0
) -> Path:
    """Several ECGs per patient: persistent per-patient traits under visit-to-visit variation.

    Every patient's lead gains (axis and amplitudes) deviate a little from one population
    pattern, and it keeps its QRS width, T-wave gains and resting rate; each visit perturbs the
    lead gains (electrode placement), rate (+-8 bpm), overall amplitude (+-10 %), baseline wander,
    beat phase and noise. Patients are disjoint between splits.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 500.0
    population_qrs = rng.normal(0.0, 1.0, size=(12, 1))
    population_t = rng.normal(0.0, 0.3, size=(12, 1))
    for split, n_patients in zip(("train", "valid", "test"), patients, strict=True):
        rows = []
        for p in range(n_patients):
            pid = f"{split}_p{p:02d}"
            qrs_gain = population_qrs + rng.normal(0.0, 0.3, size=(12, 1))
            t_gain = population_t + rng.normal(0.0, 0.1, size=(12, 1))
            width = rng.uniform(0.008, 0.02)
            rest_rate = rng.uniform(55, 95)
            for v in range(visits):
                rate = rest_rate + rng.normal(0, 8)
                beats = np.arange(rng.uniform(0, 0.4), t[-1], 60.0 / rate)
                qrs = np.exp(-((t[None, :] - beats[:, None]) ** 2) / (2 * width**2)).sum(0)
                twave = np.exp(-((t[None, :] - beats[:, None] - 0.3) ** 2) / (2 * 0.04**2)).sum(0)
                wander = 0.15 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
                placement = rng.normal(0.0, 0.15, size=(12, 1))
                feats = rng.normal(1.0, 0.1) * ((qrs_gain + placement) * qrs + t_gain * twave) + wander
                feats = (feats + rng.normal(0, 0.1, size=feats.shape)).astype(np.float32)
                rel = f"records/{pid}_v{v}.mat"
                write_record(root / rel, EcgRecord(feats, 500.0, meta={"patient_id": pid}))
                rows.append(
                    {
                        "path": rel,
                        "n_samples": n_samples,
                        "record_id": f"{pid}_v{v}",
                        "patient_id": pid,
                        "source": "multi_visit",
                        "sample_rate": 500.0,
                    }
                )
        write_manifest(root, split, root, pd.DataFrame(rows))
    return root


SMALL_ENCODER = ["task.sample_size=1000", "dataset.batch_size=16", "dataset.num_workers=0"]


def _identify(checkpoint: Path, data: Path, out: Path, *extra: str) -> dict:
    from fairseq_goodviews.cli.identify import main

    assert main([str(checkpoint), "--data", str(data), "--split", "test", "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Pretrain (1 epoch, SimCLR), score the frozen encoder, ArcFace fine-tune from it, score again."""
    tmp_path = tmp_path_factory.mktemp("identification")
    data = write_multi_visit_dataset(tmp_path / "data")
    pretrain = tmp_path / "pretrain"
    hydra_train(
        PRETRAIN_CONFIGS,
        "simclr",
        [
            "preset=cpu_small",
            *SMALL_ENCODER,
            f"task.data={data}",
            f"checkpoint.save_dir={pretrain}",
            "optimization.max_epoch=1",
        ],
        tmp_path,
    )
    frozen = _identify(pretrain / "checkpoint_last.pt", data, tmp_path / "frozen.json")

    finetune = tmp_path / "finetune"
    run = hydra_train(
        FINETUNE_CONFIGS,
        "identification",
        [
            *SMALL_ENCODER,
            f"task.data={data}",
            f"checkpoint.save_dir={finetune}",
            f"model.model_path={pretrain / 'checkpoint_last.pt'}",
            "optimization.max_epoch=6",
            "optimization.lr=[0.001]",
        ],
        tmp_path,
    )
    shutil.rmtree(pretrain)  # the fine-tuned checkpoint must not need the pretraining one
    tuned = _identify(finetune / "checkpoint_best.pt", data, tmp_path / "tuned.json")
    return {
        "frozen": frozen,
        "tuned": tuned,
        "log": run.stdout + run.stderr,
        "checkpoint": finetune / "checkpoint_best.pt",
        "tmp": tmp_path,
    }


@pytest.mark.slow
def test_arcface_fine_tune_identifies_unseen_patients_above_chance(trained):
    """Test patients are none of the training patients; chance top-1 is 1/8."""
    frozen, tuned = trained["frozen"], trained["tuned"]
    assert frozen["checkpoint_task"] == "ecg_pretraining"
    assert (frozen["n_gallery"], frozen["n_probe"]) == (8, 24)
    assert re.search(r"valid on 'valid' subset \| .*top1 [0-9.]+ \| top5 [0-9.]+ \| eer [0-9.]+", trained["log"])
    assert tuned["checkpoint_task"] == "ecg_identification" and (tuned["n_gallery"], tuned["n_probe"]) == (8, 24)
    assert tuned["top1"] >= 3 * tuned["chance_top1"], tuned
    assert tuned["eer"] < 0.4, tuned
    assert tuned["top1"] > frozen["top1"] and tuned["eer"] < frozen["eer"], (frozen, tuned)


@pytest.mark.slow
def test_identify_runs_on_real_ptbxl_records(trained):
    """Real PTB-XL records through the real preparer: patient 13619's ECGs 18 and 20 are the probes,
    its ECG 17 and the nine single-ECG patients the gallery (distractor variant)."""
    from fairseq_goodviews.io.manifest import read_metadata
    from fairseq_goodviews.preprocessing.items import PrepareOptions
    from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
    from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter

    prepared = trained["tmp"] / "ptbxl"
    prepare_ptbxl(
        shared_data() / "real" / "ptbxl",
        prepared,
        converter=WfdbConverter(attributes=False),
        options=PrepareOptions(progress=False),
    )
    both = pd.concat([read_metadata(prepared, "train"), read_metadata(prepared, "valid")], ignore_index=True)
    combined = trained["tmp"] / "ptbxl_one_split"
    write_manifest(combined, "test", prepared, both)
    result = _identify(trained["checkpoint"], combined, trained["tmp"] / "real.json", "--distractors")
    assert (result["n_gallery"], result["n_probe"], result["n_patients_with_probes"]) == (10, 2, 1)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0 and 0.0 <= result["eer"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["linear_probe", "w2v_cmsc_rlm"])
def test_identify_reads_classification_and_wav2vec_checkpoints(tiny_dataset, tmp_path, kind):
    """Frozen-encoder identification from a linear-probe checkpoint (its encoder) and from a
    wav2vec 2.0 pretraining checkpoint; the tiny set has two records per patient."""
    if kind == "linear_probe":
        config = [FINETUNE_CONFIGS, "linear_probe", "preset=cpu_small"]
        expected_task = "ecg_classification"
    else:
        config = [PRETRAIN_CONFIGS, "w2v_cmsc_rlm", "preset=w2v_cpu_small", "task.strategy.segment_length=500"]
        expected_task = "ecg_pretraining"
    hydra_train(
        config[0],
        config[1],
        [
            *config[2:],
            *SMALL_ENCODER,
            f"task.data={tiny_dataset}",
            f"checkpoint.save_dir={tmp_path / 'ckpt'}",
            "optimization.max_epoch=1",
        ],
        tmp_path,
    )
    result = _identify(tmp_path / "ckpt" / "checkpoint_last.pt", tiny_dataset, tmp_path / "out.json", "--standardize")
    assert result["checkpoint_task"] == expected_task and result["standardized_with"] == "train"
    assert (result["n_gallery"], result["n_probe"], result["sample_size"]) == (8, 8, 1000)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0 and 0.0 <= result["eer"] <= 1.0
