"""Encoders outside fairseq: load_encoder, goodviews-embed and goodviews-identify, on every kind of checkpoint."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils

from conftest import (
    FINETUNE_CONFIGS,
    HAS_GPU,
    PRETRAIN_CONFIGS,
    add_dx_column,
    hydra_train,
    shared_data,
    write_tiny_dataset,
)
from fairseq_goodviews.cli.embed import main
from fairseq_goodviews.cli.identify import main as identify_main
from fairseq_goodviews.evaluation.embed import CheckpointError, load_encoder
from fairseq_goodviews.evaluation.evaluate import evaluate_checkpoint, load_classifier, predict
from fairseq_goodviews.io.records import EcgRecord, read_record, write_record
from fairseq_goodviews.io.signal import resample
from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter, prepare_wfdb_dir
from fairseq_goodviews.preprocessing.wfdb_reader import read_wfdb

SMALL = [
    "preset=cpu_small",
    "task.sample_size=1000",
    "dataset.batch_size=16",
    "dataset.num_workers=0",
    "optimization.max_epoch=1",
]
#: The task each kind of checkpoint of the ``checkpoints`` fixture comes from.
KINDS = {
    "pretrain": "ecg_pretraining",
    "probe": "ecg_classification",
    "multi_probe": "ecg_classification",
    "identification": "ecg_identification",
}


@pytest.fixture(scope="module")
def pretrained(tiny_dataset, tmp_path_factory):
    """One epoch of SimCLR (ResNet, 1000-sample crops at 500 Hz) on the tiny dataset; its last checkpoint."""
    tmp = tmp_path_factory.mktemp("embed_pre")
    hydra_train(
        PRETRAIN_CONFIGS, "simclr", [*SMALL, f"task.data={tiny_dataset}", f"checkpoint.save_dir={tmp / 'pre'}"], tmp
    )
    return tmp / "pre" / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def checkpoints(pretrained, tiny_dataset, tmp_path_factory):
    """One checkpoint of each kind: SimCLR pretraining, a single-label lead-subset probe of it, a
    multi-label (CinC 2021, 26 classes) probe of a random encoder, an ArcFace fine-tune of it."""
    tmp = tmp_path_factory.mktemp("embed")
    hydra_train(
        FINETUNE_CONFIGS,
        "linear_probe",
        [
            *SMALL,
            f"task.data={tiny_dataset}",
            "task.leads=[I,II,V2]",
            f"checkpoint.save_dir={tmp / 'probe'}",
            f"model.model_path={pretrained}",
        ],
        tmp,
    )
    hydra_train(
        FINETUNE_CONFIGS,
        "linear_probe",
        [
            *SMALL,
            f"task.data={add_dx_column(write_tiny_dataset(tmp / 'dx'))}",
            "task.label_type=multi",
            "task.label_set=cinc2021",
            f"checkpoint.save_dir={tmp / 'multi_probe'}",
        ],
        tmp,
    )
    hydra_train(
        FINETUNE_CONFIGS,
        "identification",
        [
            *SMALL[1:],
            f"task.data={tiny_dataset}",
            f"checkpoint.save_dir={tmp / 'identification'}",
            f"model.model_path={pretrained}",
        ],
        tmp,
    )
    return {
        "pretrain": pretrained,
        "probe": tmp / "probe" / "checkpoint_best.pt",
        "multi_probe": tmp / "multi_probe" / "checkpoint_last.pt",
        "identification": tmp / "identification" / "checkpoint_last.pt",
    }


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


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_embed_and_identify_take_the_encoder_of_every_kind_of_checkpoint(checkpoints, tiny_dataset, tmp_path, kind):
    emb, metrics = tmp_path / "emb.npz", tmp_path / "identify.json"
    argv = [str(checkpoints[kind]), "--data", str(tiny_dataset), "--split", "test"]
    assert main([*argv, "--out", str(emb)]) == 0
    assert np.load(emb)["embedding"].shape == (16, 128)
    assert identify_main([*argv, "--json", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert result["checkpoint_task"] == KINDS[kind] and (result["n_gallery"], result["n_probe"]) == (8, 8)


@pytest.mark.slow
def test_checkpoints_record_the_class_and_patient_counts_their_task_built(checkpoints):
    multi = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoints["multi_probe"]))
    assert multi["cfg"].model.num_classes == len(CINC2021_CLASS_NAMES) == multi["model"]["head.weight"].shape[0]
    identification = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoints["identification"]))
    # 48 training records, two per patient
    assert identification["cfg"].model.num_patients == 24 == identification["model"]["prototypes"].shape[0]


@pytest.mark.slow
def test_a_checkpoint_with_a_stale_class_count_loads_by_its_heads_shape(checkpoints, tiny_dataset, tmp_path):
    """Checkpoints written before the task recorded the class count keep the default (4) in their
    saved model config whatever their head's size: the head's shape decides."""
    saved = torch.load(checkpoints["multi_probe"], map_location="cpu", weights_only=False)
    saved["cfg"]["model"]["num_classes"] = 4
    stale = tmp_path / "stale.pt"
    torch.save(saved, stale)
    x = torch.from_numpy(read_record(tiny_dataset / "records" / "test_000.mat").feats[None, :, :1000])
    with torch.no_grad():
        assert torch.equal(load_encoder(stale, "cpu")(x), load_encoder(checkpoints["multi_probe"], "cpu")(x))
    argv = [str(stale), "--data", str(tiny_dataset), "--split", "test"]
    assert main([*argv, "--out", str(tmp_path / "emb.npz")]) == 0
    assert identify_main([*argv, "--json", str(tmp_path / "identify.json")]) == 0
    # goodviews-evaluate rebuilds the task, whose label set gives the same count
    scored, fresh = (
        evaluate_checkpoint(stale, device="cpu"),
        evaluate_checkpoint(checkpoints["multi_probe"], device="cpu"),
    )
    assert (scored["n"], scored["macro_auroc"]) == (fresh["n"], fresh["macro_auroc"])


def test_bad_checkpoints_are_one_line_errors(tmp_path, tiny_dataset, capsys):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_encoder(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "e.npz"
    assert main([str(tmp_path / "junk.pt"), "--data", str(tiny_dataset), "--out", str(out)]) == 2
    assert "junk.pt: not a fairseq checkpoint (not a PyTorch file)" in capsys.readouterr().err and not out.exists()


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


# -- goodviews-embed on whole records, lead subsets and raw WFDB / .mat records --

#: Real PhysioNet/CinC 2021 records: 8,500 samples (not a multiple of the 1,000-sample crop), 5,000,
#: and a Georgia header naming its record with the signal file's extension.
REAL = ("cpsc_2018/g1/A1041", "cpsc_2018/g1/A0689", "georgia/g1/E00271")


def real_records(folder: Path) -> Path:
    """Copies of the :data:`REAL` records (header and signal) in ``folder``, or a skip naming the variable."""
    training = shared_data() / "real" / "physionet2021" / "training"
    folder.mkdir(parents=True)
    for record in REAL:
        for suffix in (".hea", ".mat"):
            shutil.copy(training / f"{record}{suffix}", folder)
    return folder


@pytest.mark.slow
def test_raw_wfdb_records_embed_as_they_do_after_preparation(pretrained, tmp_path, capsys):
    src = real_records(tmp_path / "raw")
    prepared = tmp_path / "prepared"
    prepare_wfdb_dir(
        src,
        prepared,
        converter=WfdbConverter(attributes=False),
        options=PrepareOptions(progress=False, split_fractions=(1.0,), split_names=("test",)),
    )
    (src / "broken.hea").write_text("not a header\n")
    capsys.readouterr()
    assert main([str(pretrained), "--data", str(src), "--out", str(tmp_path / "raw.npz")]) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith(f"skipped {src / 'broken.hea'}: ") and len(printed.err.splitlines()) == 1
    assert printed.out.startswith(f"3 embeddings of the records under {src} (crop whole, 1 skipped) written to")
    assert main([str(pretrained), "--data", str(prepared), "--out", str(tmp_path / "prepared.npz")]) == 0
    raw, ready = np.load(tmp_path / "raw.npz"), np.load(tmp_path / "prepared.npz")
    assert list(raw["record"]) == ["A0689", "A1041", "E00271"] and str(raw["root"]) == str(src)
    assert str(raw["crop"]) == str(ready["crop"]) == "whole"
    by_name = {Path(name).stem: row for name, row in zip(ready["record"], ready["embedding"], strict=True)}
    np.testing.assert_allclose(raw["embedding"], np.stack([by_name[n] for n in raw["record"]]), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_whole_records_are_the_mean_over_their_crops_and_centre_is_one_crop(pretrained, tmp_path):
    src = real_records(tmp_path / "raw")
    record = src / "A1041.hea"
    argv = [str(pretrained), str(record), str(src / "E00271.mat")]
    assert main([*argv, "--out", str(tmp_path / "whole.npz")]) == 0
    assert main([*argv, "--crop", "centre", "--out", str(tmp_path / "centre.npz")]) == 0
    whole, centre = np.load(tmp_path / "whole.npz"), np.load(tmp_path / "centre.npz")
    assert list(whole["record"]) == [str(record), str(src / "E00271.mat")] and str(centre["crop"]) == "centre"
    encoder = load_encoder(pretrained, "cpu")
    signal = read_wfdb(src / "A1041").record.feats
    assert signal.shape == (12, 8500)
    starts = [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 7500]  # the last one ends with the record
    crops = torch.from_numpy(np.stack([signal[:, s : s + 1000] for s in starts]))
    by_hand = encoder.embed(crops).mean(dim=0).numpy()
    np.testing.assert_allclose(whole["embedding"][0], by_hand, rtol=1e-4, atol=1e-5)
    middle = encoder.embed(torch.from_numpy(signal[None, :, 3750:4750].copy()))[0].numpy()
    np.testing.assert_allclose(centre["embedding"][0], middle, rtol=1e-4, atol=1e-5)
    assert not np.allclose(whole["embedding"], centre["embedding"], atol=1e-3)


@pytest.mark.slow
def test_leads_zero_fill_the_others_and_mat_records_are_resampled(pretrained, tiny_dataset, tmp_path):
    feats = read_record(tiny_dataset / "records" / "test_000.mat").feats
    slow = tmp_path / "at_250_hz.mat"
    write_record(slow, EcgRecord(feats[:, ::2].copy(), 250.0))
    argv = [str(pretrained), str(slow), "--crop", "centre"]
    assert main([*argv, "--leads", "I,II,V2", "--out", str(tmp_path / "subset.npz")]) == 0
    assert main([*argv, "--out", str(tmp_path / "all.npz")]) == 0
    subset, every = np.load(tmp_path / "subset.npz"), np.load(tmp_path / "all.npz")
    assert list(subset["leads"]) == ["I", "II", "V2"] and len(every["leads"]) == 12
    at_500 = resample(feats[:, ::2].copy(), 250.0, 500.0).astype(np.float32)
    kept = at_500.copy()
    kept[[2, 3, 4, 5, 6, 8, 9, 10, 11]] = 0.0
    encoder = load_encoder(pretrained, "cpu")
    for saved, signal in ((subset, kept), (every, at_500)):
        expected = encoder.embed(torch.from_numpy(signal[None]))[0].numpy()
        np.testing.assert_allclose(saved["embedding"][0], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(subset["embedding"], every["embedding"], atol=1e-3)


def test_records_to_embed_that_cannot_be_found_are_one_line_errors(tmp_path, tiny_dataset, capsys):
    out, ckpt = str(tmp_path / "e.npz"), str(tmp_path / "never_loaded.pt")
    (tmp_path / "empty").mkdir()
    cases = {
        (ckpt, "--out", out): "give either a folder (--data) or record files, not both and not neither",
        (ckpt, str(tmp_path / "a.mat"), "--data", str(tiny_dataset), "--out", out): "not both",
        (ckpt, "--data", str(tmp_path / "missing"), "--out", out): f"{tmp_path / 'missing'}: not found",
        (
            ckpt,
            "--data",
            str(tiny_dataset),
            "--split",
            "nope",
            "--out",
            out,
        ): f"{tiny_dataset / 'nope.tsv'}: manifest not found",
        (ckpt, "--data", str(tmp_path / "empty"), "--out", out): f"{tmp_path / 'empty'}: no WFDB records (.hea)",
    }
    for argv, message in cases.items():
        assert main(list(argv)) == 2
        err = capsys.readouterr().err
        assert err.startswith("goodviews-embed: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e.npz").exists()
