"""The MAT-5 fast path of read_record: same values as scipy.io.loadmat, scipy for everything else."""

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from fairseq_goodviews.io import records
from fairseq_goodviews.io.records import EcgRecord, RecordError, read_record, write_record

LEAD_PATTERNS = {
    "all": np.ones(12, bool),
    "one": np.eye(12, dtype=bool)[1],
    "alternate": np.arange(12) % 2 == 0,
}
META = {
    "patient_id": "p-17",
    "age": 61,
    "sex": "",
    "rhythm": "AFIB",
    "name": "Müller",
    "w": 72.5,
    "attr": np.array([1.5, -2.0, 3.25]),
    "u8": np.uint8(3),
    "i16": np.int16(-5),
    "flag": True,
    "none": None,
    "rows": np.array(["ab", "cd"]),
}


def _feats(n_samples: int, present: np.ndarray, seed: int = 0) -> np.ndarray:
    feats = np.random.default_rng(seed).normal(0, 0.5, (12, n_samples)).astype(np.float32)
    feats[~present] = 0.0
    return feats


def _write(path, n_samples: int, present: np.ndarray, meta=None, rate: float = 500.0) -> None:
    """write_record, or for T < 2 (which write_record refuses as flat) the same savemat call."""
    feats = _feats(n_samples, present)
    if n_samples >= 2:
        write_record(path, EcgRecord(feats, rate, present, dict(meta or {})))
        return
    payload = {"feats": feats, "curr_sample_rate": rate, "lead_present": present.astype(np.uint8)}
    payload.update({k: "" if v is None else v for k, v in (meta or {}).items()})
    scipy.io.savemat(str(path), payload, do_compression=False)


def _loadmat(path) -> dict:
    return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}


def _walk(path, wanted=None):
    return records._read_mat5(np.fromfile(path, dtype=np.uint8), wanted)


def _scipy_record(path, with_meta: bool, monkeypatch) -> EcgRecord:
    """What read_record returns when the fast path is switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(records, "_read_fast", lambda *_: None)
        return read_record(path, with_meta=with_meta)


def _assert_same_record(got: EcgRecord, want: EcgRecord) -> None:
    assert got.feats.dtype == want.feats.dtype == np.float32
    np.testing.assert_array_equal(got.feats, want.feats)
    assert got.sample_rate == want.sample_rate
    np.testing.assert_array_equal(got.lead_present, want.lead_present)
    assert got.meta.keys() == want.meta.keys()
    for key, value in want.meta.items():
        np.testing.assert_array_equal(got.meta[key], value)
        assert type(got.meta[key]) is type(value)


def _assert_same_variables(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert value.size == 0 or got[key].strides == value.strides, key
        np.testing.assert_array_equal(got[key], value)


@pytest.mark.parametrize("n_samples", [1, 2, 7, 2500, 4999, 5000])
@pytest.mark.parametrize("pattern", list(LEAD_PATTERNS))
def test_fast_path_returns_what_loadmat_returns(tmp_path, n_samples, pattern, monkeypatch):
    path = tmp_path / "r.mat"
    _write(path, n_samples, LEAD_PATTERNS[pattern], META)
    variables = _walk(path)
    assert variables is not None, "the walker should read files written by write_record"
    _assert_same_variables(variables, _loadmat(path))
    signal = _walk(path, records.SIGNAL_KEYS)
    _assert_same_variables(signal, {k: v for k, v in _loadmat(path).items() if k in records.SIGNAL_KEYS})
    for with_meta in (False, True):
        _assert_same_record(read_record(path, with_meta=with_meta), _scipy_record(path, with_meta, monkeypatch))


def test_fast_path_feats_are_writable_and_column_major_like_loadmat(tmp_path):
    path = tmp_path / "r.mat"
    _write(path, 300, LEAD_PATTERNS["all"])
    feats = read_record(path, with_meta=False).feats
    assert feats.flags.writeable and feats.flags.f_contiguous and feats.shape == (12, 300)
    feats[0, 0] = 1.0


def test_files_without_signal_keys_read_like_before(tmp_path, monkeypatch):
    """fairseq-signals files have no lead_present; a missing rate defaults to 500 Hz."""
    path = tmp_path / "fs.mat"
    scipy.io.savemat(str(path), {"feats": _feats(50, LEAD_PATTERNS["all"])}, do_compression=False)
    assert _walk(path) is not None
    _assert_same_record(read_record(path), _scipy_record(path, True, monkeypatch))
    assert read_record(path).sample_rate == 500.0 and read_record(path).lead_present.all()


def test_compressed_file_falls_back_to_scipy(tmp_path, monkeypatch):
    path = tmp_path / "z.mat"
    payload = {"feats": _feats(700, LEAD_PATTERNS["all"]), "curr_sample_rate": 250.0, "age": 40}
    scipy.io.savemat(str(path), payload, do_compression=True)
    assert _walk(path) is None and _walk(path, records.SIGNAL_KEYS) is None
    record = read_record(path)
    _assert_same_record(record, _scipy_record(path, True, monkeypatch))
    assert record.sample_rate == 250.0 and record.meta == {"age": 40}


def test_other_classes_fall_back_only_where_they_are_needed(tmp_path, monkeypatch):
    """Cells, structs, complex and sparse arrays: metadata goes through scipy; the signal need not."""
    path = tmp_path / "x.mat"
    feats = _feats(400, LEAD_PATTERNS["alternate"])
    scipy.io.savemat(
        str(path),
        {
            "labels": np.array([1, "a"], dtype=object),  # cell, before the signal
            "feats": feats,
            "curr_sample_rate": 500.0,
            "lead_present": LEAD_PATTERNS["alternate"].astype(np.uint8),
            "info": {"site": "x", "n": 2},  # struct
            "z": np.array([1 + 2j]),
            "sp": scipy.sparse.csc_matrix(np.eye(3)),
        },
        do_compression=False,
    )
    assert _walk(path) is None
    signal = _walk(path, records.SIGNAL_KEYS)
    assert signal is not None
    _assert_same_variables(signal, {k: v for k, v in _loadmat(path).items() if k in records.SIGNAL_KEYS})
    fast = read_record(path, with_meta=False)
    np.testing.assert_array_equal(fast.feats, feats)
    np.testing.assert_array_equal(fast.lead_present, LEAD_PATTERNS["alternate"])
    slow = _scipy_record(path, True, monkeypatch)
    got = read_record(path, with_meta=True)
    np.testing.assert_array_equal(got.feats, slow.feats)
    assert got.meta.keys() == slow.meta.keys() == {"labels", "info", "z", "sp"}


@pytest.mark.parametrize("offset, value", [(126, b"MI"), (124, b"\x00\x02"), (116, b"\x01\x00")])
def test_headers_it_does_not_know_are_left_to_scipy(tmp_path, offset, value):
    """Big-endian indicator, version 0x0200 (v7.3), subsystem data."""
    path = tmp_path / "r.mat"
    _write(path, 20, LEAD_PATTERNS["all"])
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    assert records._read_mat5(np.frombuffer(bytes(data), np.uint8)) is None


def test_v4_file_falls_back_to_scipy(tmp_path, monkeypatch):
    path = tmp_path / "v4.mat"
    scipy.io.savemat(str(path), {"feats": _feats(30, LEAD_PATTERNS["all"]).astype(np.float64)}, format="4")
    assert _walk(path) is None
    _assert_same_record(read_record(path), _scipy_record(path, True, monkeypatch))


def _cut_points(size: int, boundaries, rng) -> list:
    near = {b + d for b in boundaries for d in (-9, -8, -5, -4, -1, 0, 1, 4, 8)}
    return sorted({c for c in near | set(rng.integers(0, size, 150).tolist()) | set(range(0, 140)) if 0 <= c < size})


def _element_boundaries(data: bytes) -> list:
    pos, out = 128, []
    while pos + 8 <= len(data):
        pos += 8 + int.from_bytes(data[pos + 4 : pos + 8], "little")
        out.append(pos)
    return out


@pytest.mark.parametrize("n_samples", [7, 5000])
def test_truncated_file_is_a_record_error_naming_the_file(tmp_path, n_samples, monkeypatch):
    whole = tmp_path / "whole.mat"
    _write(whole, n_samples, LEAD_PATTERNS["one"], {"patient_id": "p1", "age": 61, "sex": "F"})
    data = whole.read_bytes()
    cuts = (
        range(len(data))
        if n_samples < 10
        else _cut_points(len(data), _element_boundaries(data), np.random.default_rng(0))
    )
    path = tmp_path / "cut.mat"
    errors = 0
    for cut in cuts:
        path.write_bytes(data[:cut])
        for with_meta in (False, True):
            try:
                got = read_record(path, with_meta=with_meta)
            except RecordError as exc:
                assert str(exc).startswith(f"{path}: "), exc
                errors += 1
                continue
            # Only a cut between elements (or inside the last one's padding) reads, as with scipy.
            _assert_same_record(got, _scipy_record(path, with_meta, monkeypatch))
    assert errors > len(cuts)


def _element_starts(data: bytes) -> list:
    return [128, *_element_boundaries(data)[:-1]]


@pytest.mark.parametrize(
    "variable, offset, value",
    [
        (2, 20, 118),  # lead_present: dimensions byte count not a multiple of 4
        (1, 56, 244),  # curr_sample_rate: unknown data type of its value
        (1, 8, 0x0806),  # curr_sample_rate: complex flag, but no imaginary part
        (0, 8, 5),  # feats: sparse class, but no integer indices
    ],
)
def test_damaged_layouts_are_reported_without_scipy(tmp_path, monkeypatch, variable, offset, value):
    """scipy.io.loadmat crashes the interpreter on these; the walker reports them itself."""
    path = tmp_path / "r.mat"
    _write(path, 40, LEAD_PATTERNS["all"], {"patient_id": "p1"})
    data = bytearray(path.read_bytes())
    at = _element_starts(bytes(data))[variable] + 8 + offset
    data[at : at + 4] = value.to_bytes(4, "little")
    path.write_bytes(bytes(data))

    def crash(*args, **kwargs):
        raise AssertionError("handed a damaged file to scipy")

    monkeypatch.setattr(records.scipy.io, "loadmat", crash)
    with pytest.raises(RecordError, match=r"r\.mat: unreadable \.mat file \(damaged MAT-5 layout: "):
        read_record(path, with_meta=True)


def test_random_damage_is_a_record_error_or_a_record(tmp_path):
    whole = tmp_path / "whole.mat"
    _write(whole, 40, LEAD_PATTERNS["all"], {"patient_id": "p1", "age": 61})
    data = whole.read_bytes()
    rng = np.random.default_rng(1)
    path = tmp_path / "bad.mat"
    for _ in range(300):
        damaged = bytearray(data)
        for where in rng.integers(0, len(data), rng.integers(1, 4)):
            damaged[where] = rng.integers(0, 256)
        path.write_bytes(bytes(damaged))
        for with_meta in (False, True):
            try:
                record = read_record(path, with_meta=with_meta)
            except RecordError as exc:
                assert str(exc).startswith(f"{path}: ")
                continue
            assert record.feats.dtype == np.float32 and record.feats.shape[0] == 12
            assert record.lead_present.shape == (12,)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(RecordError, match=r"nope\.mat: file not found"):
        read_record(tmp_path / "nope.mat", with_meta=False)
    with pytest.raises(RecordError) as error:
        read_record(tmp_path, with_meta=False)
    assert str(error.value).startswith(f"{tmp_path}: ")
