import numpy as np
import pytest
import scipy.io

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


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_fairseq_signals_files_as_its_preprocessing_writes_them(tmp_path, compressed):
    """scipy.io.savemat of Python scalars and a bool multi-hot label (preprocess_physionet2021.py):
    every scalar a [1, 1] array, the label a logical [1, K]; compressed or not, the same record."""
    feats = np.random.default_rng(0).normal(0, 0.5, (12, 2500))  # float64, as fairseq-signals keeps it
    label = np.zeros(26, dtype=bool)
    label[[3, 14]] = True
    payload = {"age": 61, "sex": 1, "label": label, "patient_id": 4242, "curr_sample_rate": 500, "feats": feats}
    scipy.io.savemat(str(tmp_path / "A0001_0.mat"), payload, do_compression=compressed)
    record = read_record(tmp_path / "A0001_0.mat")
    assert record.feats.dtype == np.float32 and np.allclose(record.feats, feats, atol=1e-6)
    assert record.sample_rate == 500.0 and record.lead_present.all()
    assert record.meta["age"] == 61 and record.meta["sex"] == 1 and record.meta["patient_id"] == 4242
    assert record.meta["label"].shape == (26,) and np.flatnonzero(record.meta["label"]).tolist() == [3, 14]


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("with_meta", [True, False])
def test_standardised_leads_with_their_mean_and_std_read_back_in_millivolts(tmp_path, compressed, with_meta):
    """fairseq-signals' current preprocess.py stores each lead as (x - mean) / std with the
    recording's mean and std [12, 1] beside it: every reader gets x back, in mV."""
    rng = np.random.default_rng(1)
    mv = rng.normal(0, 0.2, (12, 1000)) + rng.normal(0, 0.3, (12, 1))
    mean, std = mv.mean(axis=1, keepdims=True), mv.std(axis=1, keepdims=True)
    payload = {"feats": (mv - mean) / std, "mean": mean, "std": std, "idx": 7, "curr_sample_rate": 500}
    scipy.io.savemat(str(tmp_path / "s.mat"), payload, do_compression=compressed)
    record = read_record(tmp_path / "s.mat", with_meta=with_meta)
    assert record.restored_mv and np.abs(record.feats - mv).max() < 1e-6
    assert record.feats.dtype == np.float32 and record.feats.shape == (12, 1000)
    if with_meta:
        assert set(record.meta) == {"idx"}  # mean and std are spent on the signal


def test_a_mean_or_std_that_is_not_one_value_a_lead_leaves_the_signal_as_stored(tmp_path):
    feats = np.random.default_rng(2).normal(0, 1, (12, 300))
    scipy.io.savemat(str(tmp_path / "s.mat"), {"feats": feats, "mean": np.zeros((12, 1)), "std": 2.0})
    record = read_record(tmp_path / "s.mat")
    assert not record.restored_mv and np.allclose(record.feats, feats, atol=1e-6)
    assert record.meta["std"] == 2.0 and record.meta["mean"].shape == (12,)
