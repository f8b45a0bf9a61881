"""write_record writes with scipy.io.savemat: loadmat (fairseq-signals' reader) and our fast reader
read the same values back, and the same record gives the same bytes whenever it is written."""

import time

import numpy as np
import pytest
import scipy.io

from fairseq_goodviews.io import records
from fairseq_goodviews.io.records import EcgRecord, read_record, write_record

METADATA = {
    "chapman": {
        "age": 85.0,
        "sex": "MALE",
        "rhythm": "SB",
        "beat": "",
        "label": np.array([[True, False, False, False]]),
        "label_classes": "SB,AFIB,GSVT,SR",
        "patient": "MUSE_20180112_072617_85000",
        "patient_id": 17,
        "segment": 3,
        "attributes": np.arange(11, dtype=np.float32),
    },
    "every_numeric_dtype": {
        f"v_{np.dtype(t).name}": np.arange(7, dtype=t).reshape(1, 7)
        for t in ("f8", "f4", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8")
    },
    "small_values": {
        "a": np.uint8(3),
        "b": np.int16(-2),
        "abcd": np.float32(1.5),
        "t": "x",
        "u": "abcd",
        "flag": True,
        "mask": np.array([True, False, True]),
    },
    "text": {"name": "Müller ü", "empty": "", "long_name_of_a_variable_here": "ok"},
    "shapes": {
        "column": np.arange(4.0).reshape(4, 1),
        "empty": np.zeros((0, 3)),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">f8"),
    },
}


def _record(meta=None, n_samples: int = 2500) -> EcgRecord:
    feats = np.random.default_rng(2).normal(size=(12, n_samples)).astype(np.float32)
    present = np.ones(12, bool)
    present[3] = False
    feats[3] = 0
    return EcgRecord(feats, 250.0, present, dict(meta or {}))


@pytest.mark.parametrize("name", sorted(METADATA))
def test_the_fast_reader_reads_what_loadmat_reads(tmp_path, name):
    path = tmp_path / "r.mat"
    write_record(path, _record(METADATA[name]))
    expected = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    got = records._read_mat5(np.fromfile(path, dtype=np.uint8))
    assert got is not None, "the fast reader should decode every value type a record holds"
    assert list(got) == ["feats", "curr_sample_rate", "lead_present", *METADATA[name]]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        np.testing.assert_array_equal(got[key], value)


def test_written_record_reads_back_through_loadmat_and_the_fast_reader(tmp_path):
    record = _record({"sex": "F", "age": 40.0})
    write_record(tmp_path / "r.mat", record)
    mat = scipy.io.loadmat(tmp_path / "r.mat")  # what fairseq-signals' datasets call
    assert mat["feats"].dtype == np.float32 and np.array_equal(mat["feats"], record.feats)
    assert mat["curr_sample_rate"].item() == 250.0 and mat["sex"][0] == "F"
    back = read_record(tmp_path / "r.mat")
    assert np.array_equal(back.feats, record.feats) and back.sample_rate == 250.0
    assert np.array_equal(back.lead_present, record.lead_present)
    assert back.meta == {"sex": "F", "age": 40.0}


def test_the_same_record_gives_the_same_bytes_at_another_time(tmp_path):
    """savemat writes the time into the header; a prepared folder must not depend on it."""
    record = _record(METADATA["chapman"])
    write_record(tmp_path / "a.mat", record)
    time.sleep(1.01 - time.time() % 1)  # into the next second, the resolution of savemat's time
    write_record(tmp_path / "b.mat", record)
    data = (tmp_path / "a.mat").read_bytes()
    assert data == (tmp_path / "b.mat").read_bytes()
    assert data.startswith(b"MATLAB 5.0 MAT-file")  # what MATLAB looks for


@pytest.mark.parametrize("value", [{"nested": 1}, [1, 2], np.zeros((2, 2, 2)), np.array([1j]), np.array(["a", "b"])])
def test_metadata_of_other_kinds_is_written_and_read_back(tmp_path, value):
    write_record(tmp_path / "r.mat", _record({"x": value}, n_samples=100))
    assert "x" in scipy.io.loadmat(tmp_path / "r.mat")
    back = read_record(tmp_path / "r.mat")
    assert "x" in back.meta and back.feats.shape == (12, 100)
