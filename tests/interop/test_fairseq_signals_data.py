"""goodviews-import-fairseq-signals: a fairseq-signals manifest folder (its .mat files written the way
its preprocessing scripts write them) becomes ours without a signal copied, and goes through our
linear probe and lead-subset evaluation; every kind of bad input is one line naming the file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from fairseq_signals_layout import ecg, write_fs_folder, write_fs_pipeline_folder

from conftest import FINETUNE_CONFIGS, hydra_train
from fairseq_goodviews.cli.import_fairseq_signals import main
from fairseq_goodviews.cli.lead_subsets import main as lead_subsets_main
from fairseq_goodviews.interop.fairseq_signals_data import import_fairseq_signals
from fairseq_goodviews.io.manifest import read_manifest, read_metadata
from fairseq_goodviews.io.records import EcgRecord, read_record, write_record
from fairseq_goodviews.preprocessing.items import PrepareOptions, SourceItem
from fairseq_goodviews.preprocessing.pipeline import prepare


def convert(src: Path, out: Path, **kwargs) -> dict:
    return import_fairseq_signals(src, out, progress=False, **kwargs)


def all_rows(out: Path) -> pd.DataFrame:
    splits = [s for s in ("train", "valid", "test") if (out / f"{s}.tsv").is_file()]
    return pd.concat([read_metadata(out, s) for s in splits], ignore_index=True).set_index("path")


def test_multi_hot_folder_becomes_ours_without_copying_a_signal(tmp_path, capsys, monkeypatch):
    src = write_fs_folder(tmp_path / "fs", 10)
    monkeypatch.chdir(tmp_path)  # relative arguments mean the folder the command runs in
    assert main(["fs/manifest", "ours", "--no-progress", "--workers", "2"]) == 0
    out = tmp_path / "ours"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fairseq_signals: listed 20 records in ours [train 12 / valid 4 / test 4]")
    assert lines[1] == (
        "labels: 4 classes from multi-hot vectors; probe with task.label_type=multi task.label_set=labels "
        "\"task.classes='class_0,class_1,class_2,class_3'\""
    )
    assert (
        lines[2]
        == "segments: 20 files are segments of 10 records (record_id is the record, and the patient where none is given)"
    )
    assert not list(out.rglob("*.mat"))
    for split in ("train", "valid", "test"):
        root, entries = read_manifest(out / f"{split}.tsv")
        theirs = (src / f"{split}.tsv").read_text().splitlines()
        assert root == Path(theirs[0]) and root.is_absolute()
        assert [f"{p}\t{n}" for p, n in entries] == theirs[1:]
    rows = all_rows(out)
    row = rows.loc["georgia/R005_1.mat"]
    # the segment files <record>_<i> of the older layout are segments of their record
    assert row["record_id"] == "R005" and row["segment"] == 1 and row["patient_id"] == "1002" and row["age"] == 35
    assert row["sex"] == "F" and row["source"] == "georgia" and row["sample_rate"] == 500.0
    assert row["labels"] == "class_1 class_2" and pd.isna(row["label"])  # two classes: no single label
    row = rows.loc["cpsc_2018/R004_0.mat"]
    assert row["labels"] == row["label"] == "class_0" and row["sex"] == "M"
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["labels"] == {"form": "multi_hot", "classes": [f"class_{i}" for i in range(4)]}
    assert report["config"]["src_dir"] == str(src.resolve()) and report["skipped"] == 0
    assert pd.read_csv(out / "skipped.csv").empty


def test_class_indices_take_their_names_from_the_label_names_file(tmp_path):
    src = write_fs_folder(tmp_path / "fs", 8, label="index", segments=1)
    names = tmp_path / "names.txt"
    names.write_text("AFIB\nGSVT\nSB\n\nSR\n")
    report = convert(src, tmp_path / "out", label_names=names)
    rows = all_rows(tmp_path / "out")
    assert rows.loc["cpsc_2018/R002_0.mat", "label"] == rows.loc["cpsc_2018/R002_0.mat", "labels"] == "SB"
    assert report["labels"]["form"] == "index" and report["probe_overrides"] == ["task.classes='AFIB,GSVT,SB,SR'"]
    names.write_text("AFIB\nGSVT\nSB\n")  # index 3 has no name: those records are skipped, and say why
    report = convert(src, tmp_path / "out3", label_names=names)
    skipped = pd.read_csv(tmp_path / "out3" / "skipped.csv")
    assert len(skipped) == 2 and set(skipped["category"]) == {"unknown_label"}
    assert skipped["reason"].str.contains("class index 3, but --label-names lists 3 classes").all()


def test_a_0_1_label_with_one_name_is_a_binary_class(tmp_path):
    src = write_fs_folder(tmp_path / "fs", 6, label="index", n_classes=2, segments=1)
    names = tmp_path / "names.txt"
    names.write_text("AF\n")
    convert(src, tmp_path / "out", label_names=names)
    rows = all_rows(tmp_path / "out")
    assert list(rows.sort_index()["labels"].fillna("")) == ["", "", "", "AF", "AF", "AF"]


def test_our_prepared_folders_import_with_their_classes_patients_and_segments(tmp_path):
    items = [
        SourceItem(f"r{i}", f"patient-{i // 2}", {"label": "AFIB GSVT SB SR".split()[i % 4]}, f"ok:{i}")
        for i in range(8)
    ]

    def convert_item(item):
        feats = ecg(np.random.default_rng(int(item.source[3:])), 70, 1000).astype(np.float32)
        return EcgRecord(feats, 500.0, meta={"source": "demo"})

    prepare(items, convert_item, tmp_path / "ours", options=PrepareOptions(progress=False, segment_samples=500))
    convert(tmp_path / "ours", tmp_path / "again")
    before, after = all_rows(tmp_path / "ours"), all_rows(tmp_path / "again")
    assert len(after) == 16
    for column in ("record_id", "segment", "patient_id", "label", "source"):
        assert list(after[column]) == list(before.loc[after.index, column]), column
    assert json.loads((tmp_path / "again" / "prepare_report.json").read_text())["labels"]["classes"] == [
        "AFIB",
        "GSVT",
        "SB",
        "SR",
    ]
    # Files written before the numeric forms held the strings under label and patient_id.
    old = tmp_path / "old"
    write_record(old / "a.mat", EcgRecord(np.ones((12, 50), np.float32) * np.arange(50), 500.0, meta={"label": "SB"}))
    write_record(
        old / "b.mat", EcgRecord(np.ones((12, 50), np.float32) * np.arange(50), 500.0, meta={"patient_id": "p1"})
    )
    (old / "train.tsv").write_text(f"{old}\na.mat\t50\nb.mat\t50\n")
    convert(old, tmp_path / "old_out")
    rows = all_rows(tmp_path / "old_out")
    assert rows.loc["a.mat", "label"] == "SB" and rows.loc["b.mat", "patient_id"] == "p1"


def test_unusable_records_are_skipped_with_the_file_and_the_reason(tmp_path, capsys):
    src = write_fs_folder(tmp_path / "fs", 4, segments=1, splits=(1.0, 0.0, 0.0))
    root = Path((src / "train.tsv").read_text().splitlines()[0])
    good = scipy.io.loadmat(root / "cpsc_2018/R000_0.mat")
    scipy.io.savemat(root / "no_feats.mat", {k: good[k] for k in ("label", "patient_id", "curr_sample_rate")})
    (root / "garbage.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
    scipy.io.savemat(root / "rate.mat", {**{k: good[k] for k in ("label", "feats")}, "curr_sample_rate": 250})
    scipy.io.savemat(root / "two_leads.mat", {"feats": good["feats"][:2], "curr_sample_rate": 500})
    nan = good["feats"].copy()
    nan[4, 7] = np.nan
    scipy.io.savemat(root / "not_finite.mat", {"feats": nan, "curr_sample_rate": 500}, do_compression=True)
    scipy.io.savemat(root / "short.mat", {"feats": good["feats"][:, :100], "curr_sample_rate": 500})
    bad = ["no_feats", "garbage", "rate", "two_leads", "not_finite", "missing", "short"]
    with open(src / "train.tsv", "a") as handle:
        handle.writelines(f"{name}.mat\t1000\n" for name in bad)
        handle.write("cpsc_2018/R000_0.mat\t1000\n")  # listed twice
    assert main([str(src), str(tmp_path / "out"), "--no-progress"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith(
        "; skipped 8 (bad_signal 1, duplicate 1, filtered 1, missing_file 1, unreadable 4; see skipped.csv); "
        "left out the empty valid.tsv, test.tsv"  # as fairseq-signals writes a split without records
    )
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv").set_index("key")
    reasons = skipped["reason"].to_dict()
    assert reasons["no_feats"] == "no 'feats' array in the .mat file"
    assert reasons["garbage"].startswith("unreadable .mat file")
    assert reasons["rate"] == "sample rate 250 Hz, not 500 Hz (--sample-rate)"
    assert reasons["two_leads"] == "'feats' has shape [2, 1000], expected [12, T]"
    assert (
        reasons["not_finite"] == "NaN or inf in lead(s) aVL" and skipped.loc["not_finite", "category"] == "bad_signal"
    )
    assert reasons["missing"] == "file not found" and skipped.loc["missing", "category"] == "missing_file"
    assert reasons["short"] == f"{src / 'train.tsv'}:12 gives 1000 samples, the file has 100"
    duplicate = skipped[skipped["category"] == "duplicate"]
    assert duplicate["reason"].iloc[0] == f"{src / 'train.tsv'}:13 lists the file {src / 'train.tsv'}:2 lists too"
    assert skipped.loc["rate", "file"] == str(root / "rate.mat")
    assert len(all_rows(tmp_path / "out")) == 4


def test_current_pipeline_folder_imports_labels_patients_and_millivolts(tmp_path, capsys):
    """fairseq-signals' current layout: labels in labels/y.npy and patients in meta.csv by each
    file's idx, leads standardised with the recording's mean and std beside them."""
    src, signals = write_fs_pipeline_folder(tmp_path / "fs", 10, segments=2)
    out = tmp_path / "ours"
    assert main([str(src), str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == (
        "labels: 4 classes from multi-hot vectors; probe with task.label_type=multi task.label_set=labels "
        "\"task.classes='AF,STach,SB,NSR'\""
    )
    processed = (tmp_path / "fs" / "mimic_iv_ecg").resolve()
    assert lines[2] == (
        f"fairseq-signals pipeline: labels by idx from {processed / 'labels' / 'y.npy'}; patients from "
        f"{processed / 'meta.csv'} (subject_id); signals mV restored from each file's mean and std"
    )
    rows = all_rows(out)
    assert len(rows) == 20
    row = rows.loc["mimic_iv_ecg_R005_1.mat"]  # class 5 % 4 = 1, and 2 as every third record
    assert row["labels"] == "STach SB" and row["idx"] == 105 and row["segment"] == 1
    assert row["patient_id"] == "5002" and row["age"] == 45 and row["sex"] == "M"
    assert rows.loc["mimic_iv_ecg_R004_0.mat", "label"] == "AF" and rows.loc["mimic_iv_ecg_R004_0.mat", "sex"] == "F"
    assert rows.loc["mimic_iv_ecg_R004_0.mat", "patient_id"] == rows.loc["mimic_iv_ecg_R005_0.mat", "patient_id"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["splits"]["train"]["patients"] == 3 and report["pipeline"]["recordings_as_patients"] == 0
    assert report["pipeline"]["signal_scale"] == "mV restored from each file's mean and std"
    root, entries = read_manifest(out / "valid.tsv")
    for path, _ in entries:  # what training reads: the millivolts, not the standardised leads
        assert np.abs(read_record(root / path, with_meta=False).feats - signals[path]).max() < 1e-5


def test_standardised_leads_without_mean_and_std_are_refused_unless_accepted(tmp_path, capsys):
    src, signals = write_fs_pipeline_folder(tmp_path / "fs", 6, statistics=False, patient_column=None, segments=1)
    segmented = (tmp_path / "fs" / "mimic_iv_ecg" / "segmented").resolve()
    error = _error(capsys, str(src), str(tmp_path / "out"))
    assert error.startswith(f"error: {segmented / 'mimic_iv_ecg_R000_0.mat'}: its leads look standardised (median")
    assert error.endswith(
        "as do 6 of the 6 records without them: pass --standardised-inputs to import them as standardised inputs"
    )
    assert not (tmp_path / "out" / "train.tsv").exists()
    assert main([str(src), str(tmp_path / "out"), "--no-progress", "--standardised-inputs"]) == 0
    assert (
        capsys.readouterr()
        .out.splitlines()[2]
        .endswith(
            "6 records without a patient: their recording (idx) is the patient; "
            "signals standardised (accepted with --standardised-inputs)"
        )
    )
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pipeline"]["signal_scale"] == "standardised (accepted with --standardised-inputs)"
    assert report["options"]["standardised_inputs"] is True
    rows = all_rows(tmp_path / "out")
    assert rows.loc["mimic_iv_ecg_R003_0.mat", "patient_id"] == "idx103"
    # Millivolt files of the same layout (no mean/std, leads far below std 1) import as they are.
    for name, mv in signals.items():
        scipy.io.savemat(segmented / name, {"feats": mv, "idx": 100 + int(name[14:17]), "curr_sample_rate": 500})
    assert convert(src, tmp_path / "mv")["pipeline"]["signal_scale"] == "mV"


def test_recordings_are_the_patients_when_the_pipeline_records_none(tmp_path, capsys):
    """PhysioNet 2021's meta.csv has no patient column: the segments of one recording share it."""
    src, _ = write_fs_pipeline_folder(tmp_path / "fs", 6, patient_column=None, label_def=False)
    names = tmp_path / "names.txt"
    names.write_text("IAVB\nAF\nAFL\nBrady\n")
    report = convert(src, tmp_path / "out", label_names=names)
    rows = all_rows(tmp_path / "out")
    assert rows.loc["mimic_iv_ecg_R001_0.mat", "patient_id"] == rows.loc["mimic_iv_ecg_R001_1.mat", "patient_id"]
    assert rows["patient_id"].nunique() == 6 and rows.loc["mimic_iv_ecg_R002_1.mat", "labels"] == "AFL Brady"
    assert report["pipeline"]["recordings_as_patients"] == 12 and report["pipeline"]["patient_tables"] == []
    # Without label_def.csv nor --label-names the classes are numbered; --label-file names another array.
    other = tmp_path / "y_other.npy"
    np.save(other, np.eye(2)[np.arange(200) % 2])
    report = convert(src, tmp_path / "other", label_file=other)
    assert report["labels"]["classes"] == ["class_0", "class_1"] and report["pipeline"]["label_files"] == [str(other)]
    assert all_rows(tmp_path / "other").loc["mimic_iv_ecg_R001_0.mat", "labels"] == "class_1"  # idx 101: odd


def test_segment_files_of_one_record_share_its_record_id_and_patient(tmp_path, capsys):
    """Segment files <record>_<i>.mat without a patient (a folder derived from the older layout,
    its patient ids dropped) are one record and one patient; names that merely end in a number
    (not numbered 0 .. n-1) stay records of their own; the current pipeline's files say their
    segment_i."""
    src = write_fs_folder(tmp_path / "fs", 6, segments=3)
    root = Path((src / "train.tsv").read_text().splitlines()[0])
    for file in root.rglob("*.mat"):
        data = {k: v for k, v in scipy.io.loadmat(file).items() if not k.startswith("__") and k != "patient_id"}
        scipy.io.savemat(file, data)
    (root / "ptb").mkdir()
    for number in (17, 42):
        scipy.io.savemat(
            root / "ptb" / f"S0001_{number}.mat",
            {"feats": ecg(np.random.default_rng(number), 70, 1000), "curr_sample_rate": 500},
        )
    with (src / "train.tsv").open("a") as manifest:
        manifest.write("ptb/S0001_17.mat\t1000\nptb/S0001_42.mat\t1000\n")
    assert main([str(src), str(tmp_path / "out"), "--no-progress"]) == 0
    assert "segments: 18 files are segments of 6 records" in capsys.readouterr().out
    rows = all_rows(tmp_path / "out")
    record = rows.loc[["cpsc_2018/R000_0.mat", "cpsc_2018/R000_1.mat", "cpsc_2018/R000_2.mat"]]
    assert set(record["record_id"]) == set(record["patient_id"]) == {"R000"}
    assert record["segment"].tolist() == [0, 1, 2]
    assert rows["patient_id"].nunique() == 6 + 2 and rows.loc["ptb/S0001_42.mat", "record_id"] == "S0001_42"
    assert rows.loc["ptb/S0001_17.mat", "patient_id"] == "S0001_17"
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["segments"] == {"files": 18, "records": 6, "records_in_several_splits": 0}
    # the current pipeline: each file holds its segment_i
    src, _ = write_fs_pipeline_folder(tmp_path / "pipeline", 4, patient_column=None, segments=2)
    convert(src, tmp_path / "pipeline_out")
    rows = all_rows(tmp_path / "pipeline_out")
    assert rows.loc["mimic_iv_ecg_R001_1.mat", "record_id"] == rows.loc["mimic_iv_ecg_R001_0.mat", "record_id"]
    assert rows.loc["mimic_iv_ecg_R001_1.mat", "record_id"] == "mimic_iv_ecg_R001"
    assert rows.loc["mimic_iv_ecg_R001_1.mat", "segment"] == 1


def test_label_arrays_that_do_not_fit_are_one_line_or_skipped_records(tmp_path, capsys):
    src, _ = write_fs_pipeline_folder(tmp_path / "fs", 5, segments=1, splits=(1.0, 0.0, 0.0))
    labels = tmp_path / "fs" / "mimic_iv_ecg" / "labels"
    out = str(tmp_path / "out")
    np.save(labels / "y.npy", np.full((105, 4), 0.5))
    assert _error(capsys, str(src), out) == (
        f"error: {(labels / 'y.npy').resolve()}: holds values other than 0 and 1 (not classification labels)"
    )
    (labels / "y.npy").write_bytes(b"not numpy")
    assert "y.npy: not a .npy label array" in _error(capsys, str(src), out)
    assert _error(capsys, str(src), out, "--label-file", str(tmp_path / "nope.npy")) == (
        f"error: {tmp_path / 'nope.npy'}: label file not found"
    )
    np.save(labels / "y.npy", np.eye(4)[np.arange(103) % 4])  # rows for idx 0..102 only
    pd.DataFrame({"name": ["AF", "ST ach", "SB", "NSR"]}).to_csv(labels / "label_def.csv", index=False)
    assert _error(capsys, str(src), out) == (
        f"error: {(labels / 'label_def.csv').resolve()}:3: class name 'ST ach' has a space or comma (the labels "
        "column is space-separated and task.classes comma-separated); pass --label-names to name the classes"
    )
    names = tmp_path / "names.txt"
    names.write_text("AF\nSTach\nSB\nNSR\n")
    convert(src, Path(out), label_names=names)
    skipped = pd.read_csv(Path(out) / "skipped.csv")
    assert sorted(skipped["key"]) == ["mimic_iv_ecg_R003_0", "mimic_iv_ecg_R004_0"]
    assert set(skipped["category"]) == {"unknown_label"}
    assert skipped["reason"].iloc[0].startswith("idx 103 has no row in ") and skipped["reason"].iloc[0].endswith(
        "y.npy (103 rows)"
    )


def _error(capsys, *argv) -> str:
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("goodviews-import-fairseq-signals: error: ")
    assert len(err.splitlines()) == 1, err
    return err.removeprefix("goodviews-import-fairseq-signals: ")


def test_bad_folders_are_one_line_naming_the_file(tmp_path, capsys):
    src = write_fs_folder(tmp_path / "fs", 4, segments=1, splits=(1.0, 0.0, 0.0))
    out = str(tmp_path / "out")
    assert _error(capsys, str(tmp_path / "nope"), out) == f"error: {tmp_path / 'nope'}: not a directory " + (
        "(a fairseq-signals manifest folder holds <split>.tsv files)"
    )
    (tmp_path / "empty_dir").mkdir()
    assert _error(capsys, str(tmp_path / "empty_dir"), out).endswith("empty_dir: no <split>.tsv manifest in the folder")
    assert _error(capsys, str(src), out, "--splits", "train,finetune") == (
        f"error: {src / 'finetune.tsv'}: manifest not found"
    )
    (src / "pretrain.tsv").write_text("/data\n")
    assert _error(capsys, str(src), out, "--splits", "pretrain") == (
        f"error: {src / 'pretrain.tsv'}: empty manifest (no records)"
    )
    (tmp_path / "only_empty").mkdir()
    (tmp_path / "only_empty" / "train.tsv").write_text("/data\n\n")
    assert _error(capsys, str(tmp_path / "only_empty"), out) == (
        f"error: {tmp_path / 'only_empty' / 'train.tsv'}: empty manifest (no records)"
    )
    (src / "pretrain.tsv").write_text("/data\nrecord.mat\n")
    assert "pretrain.tsv:2: expected 'relative/path<TAB>n_samples'" in _error(capsys, str(src), out)
    (src / "pretrain.tsv").unlink()
    (tmp_path / "a_file").write_text("")
    assert _error(capsys, str(src), str(tmp_path / "a_file")) == (
        f"error: {tmp_path / 'a_file'}: the output folder is a file, not a folder"
    )
    assert "the output folder is the fairseq-signals folder" in _error(capsys, str(src), str(src))
    # Every record unusable: the reasons are in skipped.csv, and the command says where.
    for line in (src / "train.tsv").read_text().splitlines()[1:]:
        Path((src / "train.tsv").read_text().splitlines()[0], line.split("\t")[0]).unlink()
    assert _error(capsys, str(src), out) == (
        f"error: fairseq_signals: no record listed (4 skipped: missing_file: 4); see {tmp_path / 'out' / 'skipped.csv'}"
    )


def test_label_names_and_label_forms_that_do_not_fit_are_errors(tmp_path, capsys):
    src = write_fs_folder(tmp_path / "fs", 4, segments=1)
    out = str(tmp_path / "out")
    names = tmp_path / "names.txt"
    assert _error(capsys, str(src), out, "--label-names", str(names)) == f"error: {names}: label names file not found"
    names.write_text("AF\natrial flutter\n")
    assert _error(capsys, str(src), out, "--label-names", str(names)) == (
        f"error: {names}:2: class name 'atrial flutter' has a space or comma (the labels column is "
        "space-separated and task.classes comma-separated)"
    )
    names.write_text("AF\nAF\n")
    assert "names.txt:2: class name 'AF' is listed twice" in _error(capsys, str(src), out, "--label-names", str(names))
    names.write_text("AF\nSB\n")
    assert _error(capsys, str(src), out, "--label-names", str(names)) == (
        f"error: --label-names lists 2 classes, the label vectors of {tmp_path / 'fs' / 'signals' / 'cpsc_2018' / 'R000_0.mat'} 4"
    )
    root = Path((src / "train.tsv").read_text().splitlines()[0])
    data = {k: v for k, v in scipy.io.loadmat(root / "georgia/R001_0.mat").items() if not k.startswith("__")}
    scipy.io.savemat(root / "georgia/R001_0.mat", {**data, "label": 2})
    assert "georgia/R001_0.mat holds a class index as 'label' and " in _error(capsys, str(src), out)
    scipy.io.savemat(root / "georgia/R001_0.mat", {**data, "label": np.zeros(7, bool)})
    assert re.search(
        r"the label vectors have 4 positions in .*R000_0\.mat and 7 in .*R001_0\.mat", _error(capsys, str(src), out)
    )


def test_a_prepared_folder_is_refused_unless_overwrite(tmp_path, capsys):
    src = write_fs_folder(tmp_path / "fs", 4, segments=1)
    out = tmp_path / "out"
    items = [SourceItem(f"r{i}", f"p{i}", {"label": "SR"}, i) for i in range(6)]
    prepare(
        items,
        lambda item: EcgRecord(ecg(np.random.default_rng(item.source), 70, 600).astype(np.float32), 500.0),
        out,
        options=PrepareOptions(progress=False, split_fractions=(0.5, 0.5, 0.0)),
        source="chapman",
    )
    before = {p.name: p.read_bytes() for p in out.glob("*.[tc]sv")}
    assert _error(capsys, str(src), str(out)) == (
        f"error: {out} was prepared from chapman, not fairseq_signals: pass --overwrite to replace its manifests "
        "(checkpoints trained on the old split then refer to another split), or prepare into another folder"
    )
    assert {p.name: p.read_bytes() for p in out.glob("*.[tc]sv")} == before  # untouched
    assert main([str(src), str(out), "--no-progress", "--overwrite", "--splits", "train"]) == 0
    assert sorted(p.name for p in out.glob("*.tsv")) == ["train.tsv"]  # the old valid split is gone
    assert main([str(src), str(out), "--no-progress", "--splits", "train"]) == 0  # the same import again
    assert "prepared with other options (splits ['train'] -> ['train', 'valid', 'test'])" in _error(
        capsys, str(src), str(out)
    )
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.tsv").write_text("/somewhere\nx.mat\t10\n")
    assert _error(capsys, str(src), str(foreign)) == (
        f"error: {foreign} holds manifests (train.tsv) that no preparation of ours wrote: pass --overwrite to "
        "replace them, or choose another folder"
    )


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _probe_test_line(data: Path, save: Path, overrides: list[str], max_epoch: int) -> str:
    """Train a small linear probe on an imported folder; its last log line on the test split."""
    run = hydra_train(
        FINETUNE_CONFIGS,
        "linear_probe",
        [
            "preset=cpu_small",
            "task.sample_size=1000",
            "dataset.batch_size=8",
            "dataset.num_workers=0",
            f"optimization.max_epoch={max_epoch}",
            f"task.data={data}",
            f"checkpoint.save_dir={save}",
            "dataset.valid_subset='valid,test'",  # the test line this helper returns
            *overrides,
        ],
        data.parent,
        env=ENV,
    )
    return re.findall(r"valid on 'test' subset \| .*", run.stdout + run.stderr)[-1]


@pytest.mark.slow
def test_imported_folder_goes_through_the_linear_probe_and_lead_subsets(tmp_path):
    src = write_fs_folder(tmp_path / "fs", 40, segments=2, seconds=2.0, splits=(0.6, 0.2, 0.2))
    report = convert(src, tmp_path / "data")
    assert report["probe_overrides"][:2] == ["task.label_type=multi", "task.label_set=labels"]
    save = tmp_path / "probe"
    line = _probe_test_line(tmp_path / "data", save, report["probe_overrides"], max_epoch=3)
    assert re.search(r"\| n 16 \|", line)  # every test segment scored
    for name in ("class_0", "class_1", "class_2", "class_3"):
        assert re.search(rf"\| auroc_{name} [0-9.]+", line)
    auroc = float(re.search(r"macro_auroc ([0-9.]+)", line).group(1))
    assert 0.5 < auroc <= 1.0

    subsets = tmp_path / "subsets.json"
    assert lead_subsets_main([str(save / "checkpoint_best.pt"), "--split", "test", "--json", str(subsets)]) == 0
    payload = json.loads(subsets.read_text())
    assert [len(s["leads"]) for s in payload["subsets"]] == [12, 6, 4, 3, 2, 1]
    assert all(0.0 <= s["metrics"]["macro_auroc"] <= 1.0 for s in payload["subsets"])


@pytest.mark.slow
def test_current_pipeline_folder_goes_through_the_linear_probe(tmp_path):
    """The folder the issue's probe failed on (no record had a label): labels from y.npy by idx."""
    src, _ = write_fs_pipeline_folder(tmp_path / "fs", 20, segments=2, seconds=2.0, splits=(0.6, 0.2, 0.2))
    report = convert(src, tmp_path / "data")
    assert report["pipeline"]["signal_scale"] == "mV restored from each file's mean and std"
    line = _probe_test_line(tmp_path / "data", tmp_path / "probe", report["probe_overrides"], max_epoch=2)
    assert re.search(r"\| n 8 \|", line)  # every test segment scored
    for name in ("AF", "STach", "SB", "NSR"):
        assert re.search(rf"\| auroc_{name} [0-9.]+", line)
