"""Patient (PCLR): other records of the same patient are the positives; segments of one recording count
as records of their patient unless ``same_recording`` is false."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairseq_goodviews.io.manifest import write_manifest
from fairseq_goodviews.io.records import EcgRecord, write_record
from strategies.helpers import load, off_diagonal, pairwise

#: (patient_id, record_id, segment) of each row of the training split.
ROWS = [
    ("A", "r1", 0),
    ("A", "r1", 1),
    ("A", "r2", 0),
    ("B", "r3", 0),
    ("B", "r3", 1),
    ("C", "r4", 0),
    (None, "r5", 0),
    ("E", "r6", 0),
    ("E", "r7", 0),
]
PARTNERS = {
    True: {0: {1, 2}, 1: {0, 2}, 2: {0, 1}, 3: {4}, 4: {3}, 5: set(), 6: set(), 7: {8}, 8: {7}},
    False: {0: {2}, 1: {2}, 2: {0, 1}, 3: set(), 4: set(), 5: set(), 6: set(), 7: {8}, 8: {7}},
}


@pytest.fixture(scope="module")
def segmented_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("segmented")
    feats = np.random.default_rng(0).normal(size=(12, 1000)).astype(np.float32)
    for split in ("train", "valid", "test"):
        rows = []
        for patient, record, segment in ROWS if split == "train" else ROWS[:3]:
            rel = f"{split}/{record}_{segment}.mat"
            write_record(root / rel, EcgRecord(feats, 500.0))
            rows.append(
                {
                    "path": rel,
                    "n_samples": 1000,
                    "record_id": record,
                    "patient_id": patient,
                    "segment": segment,
                    "sample_rate": 500.0,
                }
            )
        write_manifest(root, split, root, pd.DataFrame(rows))
    return root


@pytest.mark.parametrize("same_recording", [True, False])
def test_positive_mask_and_partners(segmented_dataset, same_recording):
    loaded = load(segmented_dataset, {"_name": "patient", "same_recording": same_recording})
    records = loaded.table.iloc[loaded.views["record"]]
    patient = records["patient_id"].to_numpy()
    expected = pairwise(patient) & pd.notna(patient)[:, None]
    if not same_recording:
        expected &= ~pairwise(records["record_id"])
    expected |= pairwise(loaded.views["record"])
    assert np.array_equal(off_diagonal(loaded.mask), off_diagonal(expected))

    strategy = loaded.strategy
    for anchor, partners in PARTNERS[same_recording].items():
        drawn = {strategy.sample_partner(anchor, np.random.default_rng([anchor, i])) for i in range(60)}
        assert drawn == (partners or {None}), f"record {anchor}"
    without = sum(not p for p in PARTNERS[same_recording].values())
    assert loaded.batch["items_without_partner"] == without
    assert strategy.describe()["records_without_partner"] == without


def test_every_anchor_with_a_partner_has_a_positive(tiny_dataset):
    loaded = load(tiny_dataset, {"_name": "patient"})
    anchors = (loaded.views["record"] == loaded.views["item"]).to_numpy()
    assert off_diagonal(loaded.mask).any(axis=1)[anchors].all()
    assert loaded.batch["items_without_partner"] == 0
