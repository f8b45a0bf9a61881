"""ecg_classification targets from real metadata: PhysioNet/CinC 2021 #Dx sets and PTB-XL scp_codes
through the real preparers, unlabelled records, whole-record crops and every record batched."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_data
from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord, write_record
from fairseq_goodviews.labels import LabelSetError
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.physionet2021 import prepare_physionet2021
from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
from fairseq_goodviews.tasks.ecg_classification import EcgClassificationConfig, EcgClassificationTask

QUIET = PrepareOptions(progress=False)

# Read off the real headers' "#Dx:" lines (unscored codes 428750005, 55827005 and 55930002 drop
# out; LBBB 164909002 and RBBB 59118001 are scored with their "complete" equivalents).
PHYSIONET_EXPECTED = {
    "A0689": {"AF"},  # 164889003
    "A1041": {"AF", "CLBBB|LBBB"},  # 164889003, 164909002
    "HR03961": {"NSR"},
    "HR07911": {"NSR"},  # 426783006
    "JS01048": {"SB"},  # 426177001
    "JS01560": {"SB"},  # 426177001, 428750005
    "JS03291": {"NSR"},  # 426783006
    "JS09740": {"AFL", "NSIVCB", "TAb"},  # 164890007, 698252002, 55827005, 164934002
    "JS13888": {"AFL", "LAD"},  # 55930002, 164890007, 39732003
    "E00271": {"CRBBB|RBBB"},  # 59118001 (Georgia: record line names E00271.mat)
    "E01137": {"SB"},  # 426177001
    "E03823": {"STach"},  # 428750005, 427084000
    "JS11438": {"STach"},  # 427084000 (V1-V6 flat: written with them absent)
}
# ptbxl_database.csv rows (ecg_id: scp_codes) of the records that have signals in the shared folder.
PTBXL_EXPECTED = {
    "rhythm": {
        1: {"SR"},
        2: {"SBRAD"},
        3: {"SR"},
        4: {"SR"},
        5: {"SR"},
        6: {"SR"},
        11: {"SARRH"},
        12: {"SBRAD"},
        15: {"SARRH"},
        17: {"AFLT", "AFIB"},
        18: {"AFLT"},
        20: {"AFLT"},
    },
    "all": {1: {"NORM", "LVOLT", "SR"}, 17: {"AFLT", "ABQRS", "AFIB"}, 18: {"AFLT"}},
    "form": {1: {"LVOLT"}, 17: {"ABQRS"}, 20: {"ABQRS"}},
    "superdiagnostic": {i: {"NORM"} for i in (1, 2, 3, 4, 5, 6, 11, 12, 15)},
    "diagnostic": {i: {"NORM"} for i in (1, 2, 3, 4, 5, 6, 11, 12, 15)},
}


def _task(data, **overrides) -> EcgClassificationTask:
    cfg = EcgClassificationConfig(**{"data": str(data), "seed": 1, "sample_size": 2000, **overrides})
    return EcgClassificationTask.setup_task(cfg)


def _labels_by_record(task, column="record_name") -> dict:
    found = {}
    for split in ("train", "valid", "test"):
        if not (Path(task.cfg.data) / f"{split}.tsv").exists():
            continue
        table = pd.read_csv(Path(task.cfg.data) / f"{split}.csv", dtype=str).set_index("path")
        try:
            task.load_dataset(split)
        except LabelSetError:
            continue  # every record of the split lacks the task's labels
        dataset = task.dataset(split)
        root = Path(task.cfg.data).resolve()
        for path, target in zip(dataset.source.paths, dataset.labels, strict=True):
            key = table.loc[str(Path(path).resolve().relative_to(root)), column]
            found[key] = {name for name, hot in zip(task.class_names, target, strict=True) if hot}
    return found


@pytest.fixture(scope="module")
def physionet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("p21") / "out"
    prepare_physionet2021(shared_data() / "real" / "physionet2021", out, options=QUIET)
    return out


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ptbxl") / "out"
    prepare_ptbxl(shared_data() / "real" / "ptbxl", out, options=QUIET)
    return out


def test_physionet2021_dx_sets_give_the_scored_multi_hot_targets(physionet):
    task = _task(physionet, label_type="multi", label_set="cinc2021")
    assert len(task.class_names) == 26
    found = _labels_by_record(task)
    # The preparer writes all 13 real records (Georgia's record lines name their .mat file; Ningbo's
    # flat precordial leads are marked absent); every one of them has its header's scored classes.
    assert found == PHYSIONET_EXPECTED


@pytest.mark.parametrize("ptbxl_task", sorted(PTBXL_EXPECTED))
def test_ptbxl_scp_codes_aggregate_into_the_benchmark_tasks(ptbxl, ptbxl_task):
    # scp_statements.csv is found beside the source recorded in prepare_report.json.
    task = _task(ptbxl, label_type="multi", label_set=f"ptbxl_{ptbxl_task}")
    sizes = {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
    assert len(task.class_names) == sizes[ptbxl_task]
    found = {int(float(k)): v for k, v in _labels_by_record(task, "ecg_id").items()}
    expected = PTBXL_EXPECTED[ptbxl_task]
    assert {k: found.get(k) for k in expected} == expected
    if ptbxl_task in ("superdiagnostic", "diagnostic"):
        assert set(found) == set(expected)  # the AFLT records carry no diagnostic statement


def test_unlabelled_records_are_dropped_and_counted_or_refused(ptbxl, caplog):
    task = _task(ptbxl, label_type="multi", label_set="ptbxl_form")
    with caplog.at_level("INFO"):
        task.load_dataset("train")
        task.load_dataset("valid")
    assert task.dropped == {"train": 8, "valid": 1}
    assert len(task.dataset("train")) == 1 and len(task.dataset("valid")) == 2
    assert "train: 1 records with labels, 8 without (dropped)" in caplog.text

    strict = _task(ptbxl, label_type="multi", label_set="ptbxl_form", unlabelled="error")
    with pytest.raises(LabelSetError, match=r"train\.csv: 8 record\(s\) with none of the task's 19 labels") as caught:
        strict.load_dataset("train")
    classes = ", ".join(strict.class_names[:10])
    assert f"the label set ptbxl_form (19 classes: {classes} and 9 more))" in str(caught.value)


def test_a_split_without_any_of_the_tasks_labels_names_the_set_s_classes(ptbxl):
    task = _task(ptbxl, classes="GSVT,SB")  # the rhythm classes no valid record has
    with pytest.raises(LabelSetError) as caught:
        task.load_dataset("valid")
    assert str(caught.value) == (
        f"{ptbxl / 'valid.csv'}: none of its 3 record(s) has one of the task's labels "
        "(the label set rhythm (2 classes: GSVT, SB))"
    )


def test_single_label_split_with_an_unlabelled_record_still_loads(physionet, tmp_path):
    # A record whose #Dx has no rhythm code (e.g. LBBB alone) gets an empty Chapman label from the
    # preparer; derive such a split from the real one by blanking one record's label.
    copy = tmp_path / "copy"
    shutil.copytree(physionet, copy)
    table = pd.read_csv(copy / "train.csv", keep_default_na=False)
    unlabelled = int((table["label"] == "").sum())  # real records whose #Dx has no rhythm (RBBB alone)
    first_labelled = int(np.flatnonzero(table["label"] != "")[0])
    table.loc[first_labelled, "label"] = ""
    table.to_csv(copy / "train.csv", index=False)
    task = _task(copy)
    task.load_dataset("train")
    assert task.dropped == {"train": unlabelled + 1} and len(task.dataset("train")) == len(table) - unlabelled - 1
    with pytest.raises(
        LabelSetError, match=rf"train\.csv: {unlabelled + 1} record\(s\) with none of the task's 4 labels"
    ):
        _task(copy, unlabelled="error").load_dataset("train")


def test_missing_statement_table_and_column_are_clear_errors(ptbxl, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(ptbxl, copy)
    (copy / "prepare_report.json").unlink()
    with pytest.raises(LabelSetError, match=r"scp_statements\.csv .* not found at .*copy/scp_statements\.csv"):
        _task(copy, label_type="multi", label_set="ptbxl_rhythm")
    with pytest.raises(LabelSetError, match="label_set, one of cinc2021"):
        _task(copy, label_type="multi", label_set="ptbxl_nonsense")
    task = _task(copy, label_type="multi", label_set="cinc2021")
    with pytest.raises(Exception, match=r"train\.csv: missing column\(s\) dx"):
        task.load_dataset("train")


def test_evaluation_scores_whole_records_and_batches_every_record(physionet, tmp_path):
    # Duplicate some real records so that the split is not a multiple of 8: batch size 8 with
    # fairseq's default multiple of 8 would leave the last records unscored.
    rows = pd.concat([pd.read_csv(physionet / f"{s}.csv", keep_default_na=False) for s in ("train", "valid", "test")])
    rows = pd.concat([rows, rows.iloc[:4]], ignore_index=True)
    assert len(rows) % 8
    rows["path"] = [str((physionet / p).resolve()) for p in rows["path"]]
    write_manifest(tmp_path, "valid", Path("/"), rows.assign(path=[p.lstrip("/") for p in rows["path"]]))
    task = _task(tmp_path, label_type="multi", label_set="cinc2021", sample_size=1500)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    item = dataset[0]
    length = int(dataset.source.sizes[0])
    n_crops = -(-length // 1500)
    assert item["source"].shape == (n_crops, 12, 1500)
    full, _ = dataset.source.load(0, length, None)
    assert np.array_equal(item["source"][0], full[:, :1500])
    assert np.array_equal(item["source"][-1], full[:, -1500:])  # the last crop ends with the record

    iterator = task.get_batch_iterator(dataset=dataset, max_sentences=8, required_batch_size_multiple=8, seed=1)
    seen = [int(i) for batch in iterator.next_epoch_itr(shuffle=False) for i in batch["id"]]
    assert sorted(seen) == list(range(len(rows)))
    batch = dataset.collater([dataset[0], dataset[1]])
    assert batch["crop_record"].tolist() == [0] * n_crops + [1] * (len(batch["net_input"]["source"]) - n_crops)
    assert batch["target"].dtype == torch.float32 and batch["target"].shape == (2, 26)


def test_labels_set_reads_the_labels_column_with_the_classes_given(tmp_path):
    root = tmp_path / "data"
    rows = []
    for i, labels in enumerate(["a c", "b", "", "c zzz", "a"]):
        feats = np.random.default_rng(i).normal(size=(12, 600)).astype(np.float32)
        write_record(root / f"r{i}.mat", EcgRecord(feats, 500.0))
        rows.append({"path": f"r{i}.mat", "n_samples": 600, "record_id": f"r{i}", "labels": labels})
    write_manifest(root, "train", root, pd.DataFrame(rows))
    task = _task(root, label_type="multi", label_set="labels", classes="a,b,c", sample_size=500)
    task.load_dataset("train")
    assert task.class_names == ["a", "b", "c"] and task.label_column == "labels"
    targets = task.dataset("train").labels
    # the record without a label is dropped; an unknown name ("zzz") is ignored
    assert targets.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0]] and task.dropped == {"train": 1}
