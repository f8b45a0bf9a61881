"""PhysioNet/CinC 2021 preparer: .mat records, Dx codes and rhythm classes, subsets, bad input, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairseq_goodviews.cli.prepare_physionet2021 import main
from fairseq_goodviews.io.manifest import read_manifest, read_metadata
from fairseq_goodviews.io.records import read_record
from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES, CINC2021_CODE_TO_CLASS
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions
from fairseq_goodviews.preprocessing.physionet2021 import (
    SNOMED_RHYTHMS,
    parse_subsets,
    physionet2021_items,
    prepare_physionet2021,
    rhythm_from_dx,
    subset_of,
    subset_of_record,
)
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter
from fairseq_goodviews.synthetic.wfdb_layouts import ecg_signal, write_physionet2021_tree, write_wfdb

REPO = Path(__file__).resolve().parents[2]
QUIET = PrepareOptions(progress=False)


def all_rows(out: Path) -> pd.DataFrame:
    parts = [read_metadata(out, s) for s in ("train", "valid", "test") if (out / f"{s}.csv").exists()]
    return pd.concat(parts, ignore_index=True).sort_values("record_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("physionet")
    write_physionet2021_tree(root, n_per_subset=4, seconds=4.0)
    return root


def test_rhythm_mapping():
    assert rhythm_from_dx(["164889003"]) == ("AFIB", "AFIB")
    assert rhythm_from_dx(["164890007", "59118001"]) == ("AF", "AFIB")  # flutter -> AFIB
    assert rhythm_from_dx(["427393009", "426177001"]) == ("SB", "SB")  # SA + SB -> SB
    assert rhythm_from_dx(["426783006", "427084000"]) == ("ST", "GSVT")  # SR + STach -> GSVT
    assert rhythm_from_dx(["67198005"]) == ("SVT", "GSVT")
    assert rhythm_from_dx(["713422000"]) == ("AT", "GSVT")
    assert rhythm_from_dx(["59118001", "270492004"]) == ("", "")  # no rhythm code
    assert set(SNOMED_RHYTHMS.values()) <= {"AFIB", "AF", "SVT", "AT", "AVNRT", "AVRT", "SAAWR", "ST", "SB", "SR", "SA"}


def test_subset_from_the_challenge_record_name():
    assert [
        subset_of_record(n)
        for n in ("E00271", "A0001", "Q0001", "I0001", "S0001", "HR00001", "JS10646", "JS10647", "s0010_re", "E1")
    ] == [
        "georgia",
        "cpsc_2018",
        "cpsc_2018_extra",
        "st_petersburg_incart",
        "ptb",
        "ptb-xl",
        "chapman_shaoxing",
        "ningbo",
        "",
        "",
    ]


def test_subset_names(tmp_path):
    assert subset_of(tmp_path / "training" / "ptb-xl" / "g3" / "HR00001", tmp_path) == "ptb-xl"
    assert subset_of(tmp_path / "WFDB_ChapmanShaoxing" / "JS00001", tmp_path) == "chapman_shaoxing"
    assert subset_of(tmp_path / "training" / "g1" / "X1", tmp_path) == ""
    assert subset_of(tmp_path / "my_hospital" / "X1", tmp_path) == "my_hospital"
    assert parse_subsets("chapman_shaoxing, WFDB_Ningbo,") == ["chapman_shaoxing", "ningbo"]


def test_prepares_records_with_labels_subsets_and_attributes(tree, tmp_path):
    out = tmp_path / "out"
    result = prepare_physionet2021(tree, out, options=QUIET)
    assert result.records == 12 and not result.skipped
    rows = all_rows(out)
    assert set(rows["source"]) == {"chapman_shaoxing", "georgia", "cpsc_2018"}
    by_dx = {dx.split()[0]: label for dx, label in zip(rows["dx"], rows["label"], strict=True)}
    assert by_dx == {"426783006": "SR", "426177001": "SB", "427084000": "GSVT", "164889003": "AFIB"}
    assert (rows["dx"].str.split().str[1] == "164934002").all()
    assert set(rows["sex"]) == {"M", "F"} and rows["age"].notna().all()
    assert (rows["sample_rate"] == 500.0).all() and (rows["n_samples"] == 2000).all()
    assert set(rows["source_sample_rate"]) == {500.0, 257.0, 1000.0}
    assert rows["attr_VentricularRate"].notna().all() and rows["attr_QTInterval"].notna().all()
    sinus = rows[rows["label"] != "AFIB"]
    assert (sinus["attr_AtrialRate"] == sinus["attr_VentricularRate"]).all()
    root, entries = read_manifest(out / "train.tsv")
    record = read_record(root / entries[0][0])
    assert record.feats.shape == (12, 2000) and record.lead_present.all() and record.sample_rate == 500.0
    assert record.meta["dx"] and record.meta["source"]
    # fairseq-signals' label: the 26 CinC 2021 classes of the Dx codes (weights.csv order)
    assert record.meta["label_classes"].split(",") == list(CINC2021_CLASS_NAMES)
    expected = [CINC2021_CLASS_NAMES[CINC2021_CODE_TO_CLASS[c]] for c in record.meta["dx"].split()]
    assert [CINC2021_CLASS_NAMES[i] for i in np.flatnonzero(record.meta["label"])] == sorted(
        expected, key=CINC2021_CLASS_NAMES.index
    )


def test_exclude_subsets_prevents_leakage(tree, tmp_path):
    out = tmp_path / "out"
    result = prepare_physionet2021(tree, out, exclude_subsets=["chapman_shaoxing"], options=QUIET)
    rows = all_rows(out)
    assert "chapman_shaoxing" not in set(rows["source"]) and len(rows) == 8
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 4 and set(skipped["category"]) == {"filtered"}
    assert skipped["reason"].str.contains("chapman_shaoxing excluded").all()
    assert result.report["config"]["excluded_subsets"] == ["chapman_shaoxing"]
    with pytest.raises(PrepareError, match=r"unknown subset.*chapman"):
        physionet2021_items(tree, exclude_subsets=["chapman"])


def test_bad_inputs_are_reported(tmp_path):
    src = tmp_path / "src" / "training" / "georgia" / "g1"
    write_physionet2021_tree(tmp_path / "src", n_per_subset=2, subsets=("georgia",), seconds=3.0)
    good = ecg_signal(3.0, 500.0, 70.0, seed=5)
    write_wfdb(src / "E9trunc", good, 500.0, CANONICAL_LEADS, storage="mat", comments=["Dx: 426783006"])
    with open(src / "E9trunc.mat", "r+b") as handle:
        handle.truncate(5000)
    write_wfdb(src / "E9garbage", good, 500.0, CANONICAL_LEADS, storage="mat")
    (src / "E9garbage.mat").write_bytes(b"\x00garbage" * 10)
    write_wfdb(src / "E9nomat", good, 500.0, CANONICAL_LEADS, storage="mat")
    (src / "E9nomat.mat").unlink()
    (src / "E9header.hea").write_text("E9header twelve 500\n")
    write_wfdb(src / "E9nan", good, 500.0, CANONICAL_LEADS, storage="mat")
    raw = bytearray((src / "E9nan.mat").read_bytes())
    at = 24 + 2 * (100 * 12 + 4)  # after the 24-byte preamble, int16 frames of 12 samples: aVL at frame 100
    raw[at : at + 2] = np.int16(-32768).tobytes()  # WFDB's invalid-sample value -> NaN
    (src / "E9nan.mat").write_bytes(bytes(raw))
    flat = good.copy()
    flat[7] = 0.0
    write_wfdb(src / "E9flat", flat, 500.0, CANONICAL_LEADS, storage="mat")
    write_wfdb(src / "E9slow", good[:, ::10], 50.0, CANONICAL_LEADS, storage="mat")
    out = tmp_path / "out"
    prepare_physionet2021(tmp_path / "src", out, converter=WfdbConverter(attributes=False), options=QUIET)
    skipped = pd.read_csv(out / "skipped.csv").set_index("key")
    assert set(skipped.index) == {"E9trunc", "E9garbage", "E9nomat", "E9header", "E9slow"}
    assert skipped.loc["E9trunc", "file"].endswith("E9trunc.mat")
    assert skipped.loc["E9garbage", "file"].endswith("E9garbage.mat")
    assert skipped.loc["E9nomat", "category"] == "missing_file"
    assert "malformed header" in skipped.loc["E9header", "reason"]
    assert "unsupported sample rate 50 Hz" in skipped.loc["E9slow", "reason"]
    rows = all_rows(out).set_index("record_id")
    assert len(rows) == 4
    assert rows.loc["E9nan", "repaired_samples"] == "aVL:1"  # one invalid sample of 1500: interpolated
    assert rows.loc["E9flat", "flat_leads"] == "V2" and "V2" not in rows.loc["E9flat", "leads"].split(",")


def test_cli_empty_directory_and_segments(tree, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "out0"), "--no-progress"]) == 2
    assert "empty: no WFDB records (.hea files) found" in capsys.readouterr().err

    out = tmp_path / "out"
    assert (
        main(
            [
                str(tree),
                str(out),
                "--segment-seconds",
                "1.5",
                "--no-attributes",
                "--no-progress",
                "--exclude-subsets",
                "chapman_shaoxing,georgia",
            ]
        )
        == 0
    )
    rows = all_rows(out)
    assert len(rows) == 4 * 2 and (rows["n_samples"] == 750).all()  # 4 s -> two 1.5 s segments each
    assert all(sorted(s) == [0, 1] for _, s in rows.groupby("record_id")["segment"])
    assert rows["attr_QTInterval"].isna().all()


def _manifests(out: Path) -> dict:
    files = {}
    for split in ("train", "valid", "test"):
        for suffix in (".tsv", ".csv"):
            path = out / f"{split}{suffix}"
            if path.exists():
                lines = path.read_text().splitlines()
                files[path.name] = lines[1:] if suffix == ".tsv" else lines
    return files


def test_sigkill_mid_run_then_rerun_gives_identical_manifests(tmp_path):
    src = tmp_path / "src"
    # Enough records to take well over the journal's commit interval (COMMIT_SECONDS), so the
    # kill comes after the first lines are journaled and before the last: 30 records of 4 s once
    # took long enough, but no longer after the preparers became faster.
    n_records = 3 * 30
    write_physionet2021_tree(src, n_per_subset=n_records // 3, seconds=10.0)
    reference = tmp_path / "reference"
    prepare_physionet2021(src, reference, options=QUIET)

    out = tmp_path / "out"
    script = (  # the command-line entry point, without importing fairseq (not needed here, slow)
        "import sys; sys.modules['fairseq'] = None; "
        f"sys.path.insert(0, {str(REPO)!r}); "
        "from fairseq_goodviews.cli.prepare_physionet2021 import main; "
        f"main([{str(src)!r}, {str(out)!r}, '--no-progress'])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    journal = out / ".prepare" / "journal.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 2:
            break
        time.sleep(0.002)
    assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "train.tsv").exists()
    done = journal.read_text().count("\n")
    assert 2 <= done < n_records

    result = prepare_physionet2021(src, out, options=QUIET)
    assert result.reused >= done
    assert _manifests(out) == _manifests(reference)
    for line in _manifests(out)["train.tsv"][:3]:
        path = line.split("\t")[0]
        a, b = read_record(out / path), read_record(reference / path)
        np.testing.assert_array_equal(a.feats, b.feats)
