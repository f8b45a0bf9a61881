"""Encoders outside fairseq: load_encoder and goodviews-embed, on a probe and a pretraining checkpoint."""

import numpy as np
import pytest
import torch

from conftest import FINETUNE_CONFIGS, HAS_GPU, PRETRAIN_CONFIGS, hydra_train
from fairseq_goodviews.cli.embed import main
from fairseq_goodviews.evaluation.embed import CheckpointError, load_encoder
from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint, load_classifier, predict
from fairseq_goodviews.io.records import read_record

SMALL = [
    "preset=cpu_small",
    "task.sample_size=1000",
    "dataset.batch_size=16",
    "dataset.num_workers=0",
    "optimization.max_epoch=1",
]


@pytest.fixture(scope="module")
def checkpoints(tiny_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    hydra_train(
        PRETRAIN_CONFIGS, "simclr", [*SMALL, f"task.data={tiny_dataset}", f"checkpoint.save_dir={tmp / 'pre'}"], tmp
    )
    hydra_train(
        FINETUNE_CONFIGS,
        "linear_probe",
        [
            *SMALL,
            f"task.data={tiny_dataset}",
            "task.leads=[I,II,V2]",
            f"checkpoint.save_dir={tmp / 'probe'}",
            f"model.model_path={tmp / 'pre' / 'checkpoint_last.pt'}",
        ],
        tmp,
    )
    return {"pretrain": tmp / "pre" / "checkpoint_last.pt", "probe": tmp / "probe" / "checkpoint_best.pt"}


@pytest.mark.slow
def test_any_checkpoint_is_an_encoder_module_that_says_what_it_expects(checkpoints, tiny_dataset):
    pretrained, probed = load_encoder(checkpoints["pretrain"]), load_encoder(checkpoints["probe"])
    assert isinstance(pretrained, torch.nn.Module) and not pretrained.training
    assert (pretrained.sample_rate, pretrained.sample_size, len(pretrained.leads)) == (500.0, 1000, 12)
    assert probed.leads == ["I", "II", "V2"] and probed.task_name == "ecg_classification"
    x = torch.from_numpy(read_record(tiny_dataset / "records" / "test_000.mat").feats[None, :, :1000])
    with torch.no_grad():
        assert pretrained(x).shape == (1, 128)
        # the probe's frozen encoder is the pretrained one; it zero-fills the leads it was not trained on
        kept = x.clone()
        kept[:, [2, 3, 4, 5, 6, 8, 9, 10, 11]] = 0
        assert torch.allclose(probed(x), pretrained(kept), atol=1e-5)
        assert torch.equal(pretrained(x), pretrained(x))  # inference mode: no masking, no augmentation


@pytest.mark.slow
def test_goodviews_embed_writes_one_embedding_per_record(checkpoints, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert main([str(checkpoints["pretrain"]), "--data", str(tiny_dataset), "--split", "test", "--out", str(out)]) == 0
    saved = np.load(out)
    n_test = len((tiny_dataset / "test.tsv").read_text().splitlines()) - 1
    assert saved["embedding"].shape == (n_test, 128) and len(saved["record"]) == n_test
    assert saved["record"][0] == "records/test_000.mat" and int(saved["sample_size"]) == 1000
    assert f"{n_test} embeddings" in capsys.readouterr().out


def test_bad_checkpoints_are_one_line_errors(tmp_path, tiny_dataset, capsys):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_encoder(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "e.npz"
    assert main([str(tmp_path / "junk.pt"), "--data", str(tiny_dataset), "--out", str(out)]) == 2
    assert "junk.pt: not a readable fairseq checkpoint" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_scoring_on_the_gpu_matches_the_cpu(checkpoints, tiny_dataset):
    """Embeddings, probe probabilities and metrics computed on the GPU (TF32 matmuls) agree with the CPU's."""
    x = torch.from_numpy(read_record(tiny_dataset / "records" / "test_000.mat").feats[None, :, :1000])
    on_cpu, on_gpu = load_encoder(checkpoints["pretrain"], "cpu"), load_encoder(checkpoints["pretrain"], "cuda")
    assert on_gpu.device.type == "cuda" and on_cpu.device.type == "cpu"
    torch.testing.assert_close(on_gpu.embed(x), on_cpu.embed(x), rtol=2e-2, atol=2e-3)
    probs = {}
    for device in ("cpu", "cuda"):
        model, task = load_classifier(checkpoints["probe"], device=device)
        assert next(model.parameters()).device.type == device
        probs[device], _ = predict(model, task, "test")
    np.testing.assert_allclose(probs["cuda"], probs["cpu"], atol=2e-2)  # TF32 convolutions on the GPU
    cpu = evaluate_checkpoint(checkpoints["probe"], device="cpu")
    gpu = evaluate_checkpoint(checkpoints["probe"], device="cuda")
    assert abs(cpu["macro_auroc"] - gpu["macro_auroc"]) < 0.02
