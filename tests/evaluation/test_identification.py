"""Patient identification: the clear errors of ``goodviews-identify``."""

import re

import numpy as np
import pandas as pd
import pytest
import torch

from fairseq_goodviews.cli.identify import main
from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord, write_record


def _write_split(root, patient_ids, with_patient_column=True):
    rows = []
    rng = np.random.default_rng(0)
    for i, pid in enumerate(patient_ids):
        rel = f"records/r{i}.mat"
        write_record(root / rel, EcgRecord(rng.normal(size=(12, 600)).astype(np.float32), 500.0))
        rows.append({"path": rel, "n_samples": 600, "record_id": f"r{i}", "patient_id": pid})
    write_manifest(root, "test", root, pd.DataFrame(rows))
    if not with_patient_column:
        table = pd.read_csv(root / "test.csv").drop(columns=["patient_id"])
        table.to_csv(root / "test.csv", index=False)
    return root


def _run_main(capsys, *argv):
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("goodviews-identify: error: ")
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_cli_errors_are_one_line_and_name_the_file(tmp_path, capsys):
    out_json = tmp_path / "out.json"
    ckpt = tmp_path / "missing.pt"
    data = _write_split(tmp_path / "no_column", ["a", "a", "b", "b"], with_patient_column=False)
    err = _run_main(capsys, ckpt, "--data", data, "--json", out_json)
    assert f"{data / 'test.csv'}: missing column(s) patient_id" in err

    data = _write_split(tmp_path / "singles", ["a", "b", "c", ""])
    err = _run_main(capsys, ckpt, "--data", data, "--json", out_json)
    assert f"{data / 'test.csv'}: no patient has two or more records (3 records, 3 patients)" in err

    data = _write_split(tmp_path / "ok", ["a", "a", "b", "b"])
    assert f"{ckpt}: checkpoint not found" in _run_main(capsys, ckpt, "--data", data, "--json", out_json)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    assert f"{garbage}: not a fairseq checkpoint (not a PyTorch file)" in _run_main(capsys, garbage, "--data", data)
    weights_only = tmp_path / "weights.pt"
    torch.save({"model": {}}, weights_only)
    assert f"{weights_only}: not a fairseq checkpoint (no 'cfg'; it holds 'model')" in _run_main(
        capsys, weights_only, "--data", data
    )
    assert "unknown lead name 'V7'" in _run_main(capsys, garbage, "--data", data, "--leads", "I,V7")
    assert not out_json.exists(), "an error must not leave a JSON file"


def _write_splits(root, splits):
    """Records of ``splits`` ({split: patient ids}), all in one folder."""
    rng = np.random.default_rng(1)
    for split, patient_ids in splits.items():
        rows = []
        for i, pid in enumerate(patient_ids):
            rel = f"records/{split}_{i}.mat"
            write_record(root / rel, EcgRecord(rng.normal(size=(12, 600)).astype(np.float32), 500.0))
            rows.append({"path": rel, "n_samples": 600, "record_id": f"{split}_{i}", "patient_id": pid})
        write_manifest(root, split, root, pd.DataFrame(rows))
    return root


def test_split_names_pool_and_all_means_the_splits_present(tmp_path):
    from fairseq_goodviews.evaluation.identification import requested_splits
    from fairseq_goodviews.scoring.retrieval import IdentificationError

    data = _write_splits(tmp_path, {"train": ["a", "a"], "test": ["b", "b"]})
    assert requested_splits(data, "all") == ["train", "test"]
    assert requested_splits(data, "train, test") == ["train", "test"]
    with pytest.raises(IdentificationError, match="give one split, several separated by commas, or all"):
        requested_splits(data, "test,test")


def test_the_advice_says_what_would_help_given_what_was_passed(tmp_path, capsys):
    data = _write_splits(tmp_path, {"train": ["a", "a", "c"], "valid": ["d"], "test": ["b", "b", "e"]})
    ckpt = tmp_path / "missing.pt"
    err = _run_main(capsys, ckpt, "--data", data)
    assert "only one patient (b) has two or more records (3 records, 2 patients)" in err
    assert "--distractors would add its 1 single-record patient(s)" in err
    assert err.endswith("pooling splits may find more (--split test,train,valid or --split all)")
    err = _run_main(capsys, ckpt, "--data", data, "--distractors", "--split", "valid")
    assert "--distractors" not in err and "no patient has two or more records (1 records, 1 patients)" in err
    err = _run_main(capsys, ckpt, "--data", data, "--split", "train,valid,test", "--distractors")
    assert f"{ckpt}: checkpoint not found" in err  # pooled: two patients with probes, the protocol holds
    single = _write_splits(tmp_path / "single", {"test": ["a", "a", "a"]})
    err = _run_main(capsys, ckpt, "--data", single, "--split", "all")
    assert "--distractors" not in err  # no single-record patient: distractors cannot help
    assert err.endswith("pooled already: the data has too few patients with several ECGs for identification")


@pytest.mark.slow
def test_identification_pools_splits_and_reports_intervals_and_warnings(tiny_dataset, tmp_path, capsys):
    """A one-epoch SimCLR checkpoint through goodviews-identify --split all, with its intervals."""
    import json

    from conftest import PRETRAIN_CONFIGS, hydra_train

    small = ["preset=cpu_small", "task.sample_size=1000", "dataset.batch_size=16", "dataset.num_workers=0"]
    hydra_train(
        PRETRAIN_CONFIGS,
        "simclr",
        [*small, "optimization.max_epoch=1", f"task.data={tiny_dataset}", f"checkpoint.save_dir={tmp_path / 'pre'}"],
        tmp_path,
    )
    out = tmp_path / "ident.json"
    argv = [str(tmp_path / "pre" / "checkpoint_last.pt"), "--data", str(tiny_dataset), "--device", "cpu"]
    assert main([*argv, "--split", "all", "--bootstrap", "200", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    result = json.loads(out.read_text())
    # 48 + 16 + 16 records, two per patient: 40 patients, each a gallery entry and a probe.
    assert (result["split"], result["n_gallery"], result["n_probe"]) == ("train,valid,test", 40, 40)
    for key in ("top1", "top5", "eer"):
        interval = result["intervals"][key]
        assert interval["interval"][0] <= result[key] <= interval["interval"][1]
        assert (interval["method"], interval["n"], interval["replicates"]) == ("bootstrap_patients", 40, 200)
        # Degenerate only at a bound (e.g. top-5 of 0 when every probe ties with other entries).
        assert interval["interval"][1] > interval["interval"][0] or result[key] in (0.0, 1.0), (key, result)
    assert re.search(r"top1  [0-9.]+ \[[0-9.]+, [0-9.]+\]", captured.out)
    assert result["warnings"] == [] and "warning" not in captured.err
    again = tmp_path / "again.json"
    assert main([*argv, "--split", "test", "--bootstrap", "200", "--json", str(again)]) == 0
    small_split = json.loads(again.read_text())
    assert small_split["intervals"]["top1"]["n"] == 8
    assert small_split["warnings"][0].startswith("only 8 patients with probes (fewer than 30)")
    assert "goodviews-identify: warning: only 8 patients" in capsys.readouterr().err
    assert main([*argv, "--split", "test", "--bootstrap", "0", "--json", str(again)]) == 0
    assert "intervals" not in json.loads(again.read_text())
