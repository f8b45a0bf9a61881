"""Patient identification: the clear errors of ``goodviews-identify``."""

import numpy as np
import pandas as pd
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
