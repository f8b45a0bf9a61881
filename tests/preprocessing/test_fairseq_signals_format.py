"""Our prepared folders read through fairseq-signals' own reading logic (tests/fairseq_signals_reader.py,
re-implemented from its source): its fine-tuning dataset gets a multi-hot ``label`` per record,
its identification manifest and dataset an integer ``patient_id`` that groups records by patient,
and its CMSC manifest converter and dataset every segment of every segmented record, in order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_data
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.io.records import EcgRecord
from fairseq_goodviews.labels import CLASS_NAMES
from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES
from fairseq_goodviews.preprocessing.chapman import prepare_chapman
from fairseq_goodviews.preprocessing.items import PrepareOptions, SourceItem
from fairseq_goodviews.preprocessing.physionet2021 import prepare_physionet2021
from fairseq_goodviews.preprocessing.pipeline import prepare
from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter
from fairseq_goodviews.synthetic.chapman import generate_chapman
from fairseq_goodviews.synthetic.ptbxl import generate_ptbxl
from fairseq_goodviews.tasks.ecg_classification import EcgClassificationConfig, EcgClassificationTask
from fairseq_signals_reader import (
    CMSCDataset,
    FineTuningDataset,
    IdentificationDataset,
    cmsc_manifest,
    identification_manifest,
)

QUIET = PrepareOptions(progress=False)


def _splits(out):
    return [split for split in ("train", "valid", "test") if (out / f"{split}.tsv").is_file()]


def _batches(dataset, size=4):
    for start in range(0, len(dataset), size):
        yield dataset.collator([dataset[i] for i in range(start, min(start + size, len(dataset)))])


def _fine_tuning_targets(out, num_labels) -> dict[str, np.ndarray]:
    """Every record's target as fairseq-signals' classifier receives it, by manifest path."""
    targets = {}
    for split in _splits(out):
        dataset = FineTuningDataset(out / f"{split}.tsv")
        for batch in _batches(dataset):
            target = FineTuningDataset.targets(batch, num_labels)
            assert target.dtype == torch.float32 and target.shape == (len(batch["id"]), num_labels)
            assert batch["net_input"]["source"].shape[1] == 12
            targets.update({dataset.fnames[i]: t.numpy() for i, t in zip(batch["id"].tolist(), target, strict=True)})
    return targets


def _check_identification(out, tmp_path) -> dict:
    """fairseq-signals' identification manifest and dataset over ``out/records``: every batch
    holds IntTensor patient ids, and its patients are ours (the metadata tables' ``patient_id``)."""
    patients = identification_manifest(out / "records", tmp_path / "ident")
    dataset = IdentificationDataset(tmp_path / "ident" / "train.tsv")
    ours = pd.concat([read_metadata(out, split) for split in _splits(out)]).set_index("path")["patient_id"]
    seen: dict[int, set] = {}
    for batch in _batches(dataset):
        assert batch["patient_id"].dtype == torch.int32 and batch["label"].dtype == torch.int64
        for i, number in zip(batch["id"].tolist(), batch["patient_id"].tolist(), strict=True):
            seen.setdefault(number, set()).add(ours[f"records/{dataset.fnames[i]}"])
    assert all(len(ids) == 1 for ids in seen.values()), "one integer, several patients of ours"
    assert len(seen) == len(patients) == ours.nunique(), "one patient of ours, several integers"
    return {next(iter(ids)): number for number, ids in seen.items()}


@pytest.fixture(scope="module")
def chapman(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chapman")
    generate_chapman(tmp / "src", 24, seed=3)
    prepare_chapman(tmp / "src", tmp / "out", options=QUIET)
    return tmp / "out"


def test_chapman_folder_gives_fairseq_signals_one_hot_rhythm_labels_and_patient_integers(chapman, tmp_path):
    targets = _fine_tuning_targets(chapman, num_labels=len(CLASS_NAMES))
    assert len(targets) == 24
    for split in _splits(chapman):
        table = read_metadata(chapman, split)
        for path, label in zip(table["path"], table["label"], strict=True):
            assert targets[path].tolist() == [float(c == label) for c in CLASS_NAMES]
    numbers = _check_identification(chapman, tmp_path)
    # Chapman's ids are file names: each patient gets its rank among them
    assert numbers == {pid: n for n, pid in enumerate(sorted(numbers))}


def test_ptbxl_folder_keeps_ptbxl_patient_ids_for_fairseq_signals_identification(tmp_path):
    generate_ptbxl(tmp_path / "src", 6, visits=(2, 3), seconds=2.0, seed=2)
    options = PrepareOptions(progress=False)
    prepare_ptbxl(tmp_path / "src", tmp_path / "out", converter=WfdbConverter(attributes=False), options=options)
    numbers = _check_identification(tmp_path / "out", tmp_path)
    assert numbers == {pid: int(pid) for pid in numbers}  # PTB-XL's integer patient ids as they are
    assert len(_fine_tuning_targets(tmp_path / "out", num_labels=len(CLASS_NAMES))) > 0


def test_real_physionet2021_folder_gives_the_26_class_targets_our_task_reads(tmp_path):
    """The vector fairseq-signals' classifier gets is the multi-hot our cinc2021 task builds from ``dx``."""
    out = tmp_path / "out"
    prepare_physionet2021(shared_data() / "real" / "physionet2021", out, options=QUIET)
    targets = _fine_tuning_targets(out, num_labels=len(CINC2021_CLASS_NAMES))
    cfg = EcgClassificationConfig(data=str(out), seed=1, sample_size=2000, label_type="multi", label_set="cinc2021")
    task = EcgClassificationTask.setup_task(cfg)
    compared = 0
    for split in _splits(out):
        table = read_metadata(out, split)
        ours, _ = task.label_set.targets(table, split)
        for path, target in zip(table["path"], ours, strict=True):
            np.testing.assert_array_equal(targets[path], target)
            compared += 1
    assert compared == 13


SEGMENT = 500


@dataclass(frozen=True)
class _Noise:
    """Converter of the segmentation test: ``item.source`` is ``seed:n_samples`` of Gaussian noise."""

    def __call__(self, item: SourceItem) -> EcgRecord:
        seed, n_samples = map(int, item.source.split(":"))
        feats = np.random.default_rng(seed).standard_normal((12, n_samples)).astype(np.float32)
        return EcgRecord(feats=feats, sample_rate=500.0)


def test_segmented_folder_gives_fairseq_signals_cmsc_every_segment_of_every_record_in_order(tmp_path):
    """Its CMSC manifest converter parses our segment names into record and segment index (keys
    ending in ``_<digits>`` included) and its CMSC dataset reads each pair of consecutive segments
    from the files those names give."""
    keys = ["A", "A_1", "A_1_0", "B_12", "rec_3", "C", "D_0", "E_7", "F", "G_10"]
    items = [
        SourceItem(key, f"p{i}", {"label": "SR"}, f"{i}:{SEGMENT * (2 + 2 * (i % 2)) + 123}")
        for i, key in enumerate(keys)
    ]
    out = tmp_path / "out"
    prepare(items, _Noise(), out, options=PrepareOptions(progress=False, segment_samples=SEGMENT))
    converted = cmsc_manifest(out, tmp_path / "fs")
    assert sorted(converted) == sorted(_splits(out))
    seen = set()
    for split in _splits(out):
        table = read_metadata(out, split)
        ours = {f"records/{record}": part["segment"].tolist() for record, part in table.groupby("record_id")}
        theirs: dict[str, list[int]] = {}
        for record, pair in converted[split]:
            theirs.setdefault(record, []).extend(pair)
        assert theirs == {record: sorted(segments) for record, segments in ours.items()}
        dataset = CMSCDataset(tmp_path / "fs" / "cmsc" / f"{split}.tsv")
        for index in range(len(dataset)):
            item = next(i for i in items if f"records/{i.key}" == dataset.records[index])
            full = _Noise()(item).feats
            views = dataset[index]
            assert [view["segment"] for view in views] == [0, 1]
            assert views[0]["patient_id"] == views[1]["patient_id"] and views[0]["label"].shape == (1, 4)
            for view, segment in zip(views, dataset.segments[index], strict=True):
                np.testing.assert_array_equal(
                    view["source"].numpy(), full[:, segment * SEGMENT : (segment + 1) * SEGMENT]
                )
                seen.add((item.key, segment))
    assert seen == {(i.key, k) for n, i in enumerate(items) for k in range(2 + 2 * (n % 2))}


def test_old_segment_names_break_fairseq_signals_cmsc_manifest_converter(tmp_path):
    """Why segments are named ``<record>_<k>``: the converter cannot parse ``<record>_s<k>``."""
    (tmp_path / "train.tsv").write_text("/data\nrecords/A_s0.mat\t500\nrecords/A_s1.mat\t500\n")
    with pytest.raises(ValueError, match="invalid literal for int"):
        cmsc_manifest(tmp_path, tmp_path / "fs")
