"""The lean MAT-5 writer writes the bytes scipy.io.savemat writes, and loadmat reads them back."""

import io

import numpy as np
import pytest
import scipy.io

from fairseq_goodviews.io.records import EcgRecord, mat5_bytes, read_record, write_record

HEADER_TEXT = 116  # the free-text part of the header (savemat puts the time there)


def _savemat(payload) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, payload, do_compression=False)
    return buffer.getvalue()


PAYLOADS = {
    "record": {
        "feats": np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32),
        "curr_sample_rate": 500.0,
        "lead_present": np.ones(12, np.uint8),
        "age": 85.0,
        "sex": "MALE",
        "rhythm": "SB",
        "beat": "",
        "patient_id": "MUSE_20180112_072617_85000",
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


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_bytes_equal_savemat_after_the_header_text(name):
    payload = PAYLOADS[name]
    ours = mat5_bytes(payload)
    assert ours is not None
    reference = _savemat(payload)
    assert len(ours) == len(reference)
    assert ours[HEADER_TEXT:] == reference[HEADER_TEXT:]
    back = scipy.io.loadmat(io.BytesIO(ours))
    expected = scipy.io.loadmat(io.BytesIO(reference))
    for key in payload:
        assert np.array_equal(back[key], expected[key]), key


@pytest.mark.parametrize("value", [{"nested": 1}, [1, 2], np.zeros((2, 2, 2)), np.array([1j]), np.array(["a", "b"])])
def test_values_it_does_not_lay_out_go_to_savemat(tmp_path, value):
    assert mat5_bytes({"x": value}) is None
    record = EcgRecord(np.random.default_rng(1).normal(size=(12, 100)).astype(np.float32), 500.0, meta={"x": value})
    write_record(tmp_path / "r.mat", record)
    assert "x" in scipy.io.loadmat(tmp_path / "r.mat")


def test_written_record_reads_back_through_loadmat_and_the_fast_reader(tmp_path):
    feats = np.random.default_rng(2).normal(size=(12, 2500)).astype(np.float32)
    present = np.ones(12, bool)
    present[3] = False
    feats[3] = 0
    write_record(tmp_path / "r.mat", EcgRecord(feats, 250.0, present, {"sex": "F", "age": 40.0}))
    mat = scipy.io.loadmat(tmp_path / "r.mat")
    assert mat["feats"].dtype == np.float32 and np.array_equal(mat["feats"], feats)
    assert mat["curr_sample_rate"].item() == 250.0 and mat["sex"][0] == "F"
    record = read_record(tmp_path / "r.mat")
    assert np.array_equal(record.feats, feats) and record.sample_rate == 250.0
    assert np.array_equal(record.lead_present, present) and record.meta["sex"] == "F"
