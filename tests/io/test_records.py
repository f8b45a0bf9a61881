import numpy as np
import pytest

from fairseq_goodviews.io.records import EcgRecord, RecordError, read_record, signal_problems, write_record


def _record(seed=0):
    rng = np.random.default_rng(seed)
    return EcgRecord(rng.normal(0, 0.5, (12, 500)).astype(np.float32), 500.0, meta={"patient_id": "p1", "age": 61})


def test_round_trip_keeps_signal_rate_mask_and_metadata(tmp_path):
    record = _record()
    record.lead_present[3] = False
    record.feats[3] = 0.0
    write_record(tmp_path / "r.mat", record)
    back = read_record(tmp_path / "r.mat")
    np.testing.assert_array_equal(back.feats, record.feats)
    assert back.sample_rate == 500.0
    assert back.lead_present.tolist() == record.lead_present.tolist()
    assert back.meta["patient_id"] == "p1" and back.meta["age"] == 61


def test_truncated_file_is_reported_with_its_name(tmp_path):
    write_record(tmp_path / "r.mat", _record())
    data = (tmp_path / "r.mat").read_bytes()
    (tmp_path / "r.mat").write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordError, match=r"r\.mat: unreadable \.mat file"):
        read_record(tmp_path / "r.mat")


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(RecordError, match=r"nope\.mat: file not found"):
        read_record(tmp_path / "nope.mat")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda x: x.__setitem__((1, 10), np.nan), "NaN or inf in lead\\(s\\) II"),
        (lambda x: x.__setitem__(7, 0.25), "flat lead\\(s\\) V2"),
    ],
)
def test_unusable_signal_is_refused_and_nothing_is_written(tmp_path, damage, message):
    record = _record()
    damage(record.feats)
    with pytest.raises(RecordError, match=message):
        write_record(tmp_path / "bad.mat", record)
    assert list(tmp_path.iterdir()) == []


def test_absent_zero_lead_is_not_flat():
    feats = _record().feats
    feats[4] = 0
    present = np.ones(12, bool)
    present[4] = False
    assert signal_problems(feats, present) == []
    assert signal_problems(np.zeros((12, 10)), np.zeros(12, bool))[0] == "no ECG lead present"
