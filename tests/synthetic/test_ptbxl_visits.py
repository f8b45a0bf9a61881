"""The synthetic multi-visit PTB-XL: layout, persistent patients, statements that agree with the
waveform, through the real PTB-XL preparer."""

from __future__ import annotations

import ast
import math

import numpy as np
import pandas as pd
import pytest
import wfdb

from fairseq_goodviews.cli.synthetic_ptbxl import main
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.ptbxl import REQUIRED_COLUMNS, prepare_ptbxl
from fairseq_goodviews.synthetic.ptbxl import generate_ptbxl, scp_statements


def test_statements_follow_the_synthesised_conditions():
    assert scp_statements("SR", frozenset(), 90.0) == {"NORM": 100.0, "SR": 0.0}
    assert scp_statements("SB", frozenset({"RBBB"}), 150.0) == {"CRBBB": 100.0, "SBRAD": 0.0}
    assert scp_statements("SR", frozenset({"RBBB"}), 110.0) == {"IRBBB": 100.0, "SR": 0.0}
    # Form statements (likelihood 0) do not make a record abnormal; diagnostic ones do.
    assert scp_statements("AFIB", frozenset({"VPB"}), 90.0) == {"NORM": 100.0, "PVC": 0.0, "AFIB": 0.0}
    assert "NORM" not in scp_statements("ST", frozenset({"LVHV", "TWC"}), 90.0)


def test_layout_folds_and_determinism(tmp_path):
    table = generate_ptbxl(tmp_path / "a", 3, visits=(2, 2), seconds=2.0, seed=4)
    assert set(REQUIRED_COLUMNS) <= set(table.columns) and len(table) == 6
    assert (table.groupby("patient_id")["strat_fold"].nunique() == 1).all()
    assert table["ecg_id"].is_unique and table.groupby("patient_id").size().eq(2).all()
    for name in table["filename_hr"]:
        assert (tmp_path / "a" / f"{name}.hea").is_file() and (tmp_path / "a" / f"{name}.dat").is_file()
    low = wfdb.rdrecord(str(tmp_path / "a" / table["filename_lr"][0]))
    assert low.fs == 100 and low.p_signal.shape == (200, 12)
    statements = pd.read_csv(tmp_path / "a" / "scp_statements.csv", index_col=0)
    used = {code for text in table["scp_codes"] for code in ast.literal_eval(text)}
    assert used == set(statements.index)
    assert set(statements.loc[statements["diagnostic"] == 1.0, "diagnostic_class"].dropna()) <= {
        "NORM",
        "CD",
        "HYP",
        "STTC",
        "MI",
    }
    # The same files again, and written by two processes.
    generate_ptbxl(tmp_path / "b", 3, visits=(2, 2), seconds=2.0, seed=4, workers=2)
    written = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert written == sorted(path.relative_to(tmp_path / "b") for path in (tmp_path / "b").rglob("*") if path.is_file())
    for name in written:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="visits"):
        generate_ptbxl(tmp_path, 2, visits=(3, 2))
    assert main([str(tmp_path / "x"), "--patients", "0"]) == 2
    assert "n_patients must be at least 1" in capsys.readouterr().err


def _lead_profile(path) -> np.ndarray:
    """Unit vector of the 12 leads' 2nd-98th percentile ranges: the patient's QRS 'shape' across leads."""
    signal = wfdb.rdrecord(str(path)).p_signal
    span = np.percentile(signal, 98, axis=0) - np.percentile(signal, 2, axis=0)
    return span / np.linalg.norm(span)


@pytest.mark.slow
def test_multi_visit_data_through_the_real_preparer(tmp_path):
    table = generate_ptbxl(tmp_path / "src", 10, visits=(2, 3), seconds=6.0, seed=1)
    result = prepare_ptbxl(tmp_path / "src", tmp_path / "out", options=PrepareOptions(progress=False))
    assert result.records == len(table) and not result.skipped
    rows = pd.concat([read_metadata(tmp_path / "out", s) for s in ("train", "valid", "test")])
    # Patients: several ECGs each, all in one split (PCLR positives, identification gallery + probes).
    assert rows.groupby("patient_id").size().min() >= 2
    assert (rows.groupby("patient_id")["split"].nunique() == 1).all()
    # Statements agree with the waveform as the preparer measures it.
    for row in rows.itertuples():
        codes = row.scp_codes.split()
        rate, qrsd = row.attr_VentricularRate, row.attr_QRSDuration
        if "SBRAD" in codes:
            assert rate < 61, row
        if "STACH" in codes:
            assert rate > 99, row
        if "CRBBB" in codes or "CLBBB" in codes:
            assert qrsd >= 110, row
        if codes[0] == "NORM" and not {"IRBBB"} & set(codes):
            assert qrsd < 130, row
        if "AFIB" in codes:
            assert math.isnan(row.attr_AtrialRate), row
    # Persistent traits: a patient's ECGs look more alike than two patients' ECGs.
    src = tmp_path / "src"
    profiles = {r.ecg_id: _lead_profile(src / r.filename_hr) for r in table.itertuples()}
    patient = dict(zip(table["ecg_id"], table["patient_id"], strict=True))
    same, other = [], []
    ids = sorted(profiles)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            (same if patient[a] == patient[b] else other).append(float(profiles[a] @ profiles[b]))
    assert np.mean(same) > np.mean(other) + 0.03 and np.median(same) > np.percentile(other, 75)
