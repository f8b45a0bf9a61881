"""The one record format: a MATLAB ``.mat`` file per record (compatible with fairseq-signals).

Keys: ``feats`` float32 [12, T] in millivolts (canonical lead order, absent leads zero-filled),
``curr_sample_rate``, ``lead_present`` (uint8 [12]) and scalar metadata (``age``, ``sex``,
``rhythm``, ...). Numeric attribute vectors are stored under their own key. Prepared folders
(:mod:`fairseq_goodviews.preprocessing.pipeline`) add the keys fairseq-signals' readers take in
its numeric forms: ``label`` (logical multi-hot [1, K] over the comma-separated
``label_classes``) and ``patient_id`` (an integer), with our string forms under ``label_name``
and ``patient``. Files written before that hold the strings under ``label`` and ``patient_id``;
the fairseq-signals importer (:mod:`fairseq_goodviews.interop.fairseq_signals_data`) reads both.

fairseq-signals' current preprocessing (``scripts/preprocess/ecg/preprocess.py``) stores each
lead standardised (mean 0, std 1 over the whole recording) with the recording's per-lead ``mean``
and ``std`` ([12, 1]) beside ``feats``: :func:`read_record` restores such a file's millivolts,
``feats * std + mean``, for every reader (training, packs, the importer) and says so in
:attr:`EcgRecord.restored_mv`.

Writing is ``scipy.io.savemat`` (uncompressed, ``oned_as="row"``), in the order the payload lists
the keys (the signal first), with a fixed header text in place of savemat's creation time, so the
same record gives the same bytes.

Reading has two paths. ``scipy.io.loadmat`` is general but slow for what the training loop does
per sample: its time goes to per-variable machinery rather than to the bytes. So
:func:`read_record` first tries :func:`_read_mat5`, a minimal walker over the MAT-5 layout that
savemat writes for the values records hold: little-endian, uncompressed ``miMATRIX`` elements of
numeric classes or UTF-8 text. It reads the file with one system call and returns numpy views of
the bytes, laid out exactly as ``loadmat`` lays them out. Anything valid it does not decode
(compressed elements as fairseq-signals may write them, v4 or v7.3/HDF5 files, big-endian files,
cells, structs, complex or sparse arrays) is left to ``loadmat``, which stays the general reader.
A layout no writer produces (a truncated file, impossible sizes or types) is reported as
unreadable by the walker itself, since scipy crashes on some of those.

How fast each path reads, against one memory-mapped array and the packed format
(:mod:`fairseq_goodviews.io.packed`, the training default when present), is measured by
``goodviews-perf record-loading``; the figures are in the README.
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Tuple

import numpy as np
import scipy.io

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.leads import CANONICAL_LEADS

N_LEADS = len(CANONICAL_LEADS)
# A present lead whose peak-to-peak range is below this (mV) carries no signal.
FLAT_LEAD_MV = 1e-3

SIGNAL_KEYS: FrozenSet[str] = frozenset({"feats", "curr_sample_rate", "lead_present"})
# fairseq-signals' per-lead statistics of a standardised recording (see the module's notes).
STANDARDISATION_KEYS: FrozenSet[str] = frozenset({"mean", "std"})
# Our string forms of the label and the patient, beside fairseq-signals' numeric ``label`` and
# ``patient_id`` (see the module's notes).
LABEL_NAME_KEY = "label_name"  # the record's class name (the metadata table's ``label``)
LABEL_CLASSES_KEY = "label_classes"  # the class of each position of ``label``, comma-separated
PATIENT_KEY = "patient"  # the patient id as a string (the metadata table's ``patient_id``)


class RecordError(GoodviewsError, ValueError):
    """A record that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in a worker process, re-raised here
        return type(self), (self.path, self.problem)


@dataclass
class EcgRecord:
    feats: np.ndarray
    sample_rate: float
    lead_present: np.ndarray = field(default_factory=lambda: np.ones(N_LEADS, dtype=bool))
    meta: Dict[str, Any] = field(default_factory=dict)
    # True when ``feats`` was stored standardised and restored to mV from the file's mean and std.
    restored_mv: bool = False

    @property
    def n_samples(self) -> int:
        return int(self.feats.shape[1])


def signal_problems(feats: np.ndarray, lead_present: np.ndarray | None = None) -> List[str]:
    """Reasons a [12, T] signal is unusable: non-finite values, flat present leads, no leads."""
    if feats.ndim != 2 or feats.shape[0] != N_LEADS:
        return [f"expected shape [{N_LEADS}, T], got {list(feats.shape)}"]
    if feats.shape[1] == 0:
        return ["no samples"]
    present = np.ones(N_LEADS, bool) if lead_present is None else np.asarray(lead_present, bool)
    problems = []
    if not present.any():
        problems.append("no ECG lead present")
    bad = ~np.isfinite(feats).all(axis=1) & present
    if bad.any():
        problems.append("NaN or inf in lead(s) " + ",".join(np.array(CANONICAL_LEADS)[bad]))
    finite = np.where(np.isfinite(feats), feats, 0.0)
    flat = (np.ptp(finite, axis=1) < FLAT_LEAD_MV) & present & ~bad
    if flat.any():
        problems.append("flat lead(s) " + ",".join(np.array(CANONICAL_LEADS)[flat]))
    return problems


# The header's free text (its first 116 bytes), where savemat writes the time; readers ignore it.
_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by fairseq_goodviews".ljust(116, b" ")


def write_record(path: str | Path, record: EcgRecord, *, durable: bool = True) -> None:
    """Write ``record`` atomically with ``scipy.io.savemat``; refuses unusable signals with :class:`RecordError`.

    ``durable=False`` leaves the flush to the disk to the caller
    (:func:`~fairseq_goodviews.io.atomic.make_durable`, once for many records)."""
    feats = np.asarray(record.feats, dtype=np.float32)
    problems = signal_problems(feats, record.lead_present)
    if problems:
        raise RecordError(path, "; ".join(problems))
    payload: Dict[str, Any] = {
        "feats": feats,
        "curr_sample_rate": float(record.sample_rate),
        "lead_present": np.asarray(record.lead_present, dtype=np.uint8),
    }
    for key, value in record.meta.items():
        payload[key] = "" if value is None else value
    # Serialised in memory and written with one call: savemat seeks back to finish every variable,
    # and on a file each seek is a flush (a write system call or more per variable).
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, payload, do_compression=False, oned_as="row")
    content = buffer.getbuffer()
    content[: len(_HEADER_TEXT)] = _HEADER_TEXT
    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as handle:
        handle.write(content)


# --- MAT-5 reader ---------------------------------------------------------------------------------
# Layout (MathWorks, "MAT-File Format", level 5): a 128-byte header (text, subsystem offset,
# version 0x0100, endian indicator "IM" when little-endian), then data elements. Each element has
# an 8-byte tag (uint32 type, uint32 byte count) and its data padded to 8 bytes; an element of at
# most 4 bytes may use the "small data element" form, where the first uint32 packs the byte count
# (high 16 bits) and the type (low 16 bits) and the data fills the second. A variable is an
# miMATRIX element holding sub-elements: array flags, dimensions, name, then the real data in
# column-major order.

_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED, _MI_UTF8 = 1, 5, 6, 14, 15, 16
_MI_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 18})  # 8, 10, 11 are reserved
_MI_DTYPES: Dict[int, np.dtype] = {
    code: np.dtype(spec)
    for code, spec in {
        1: "<i1",
        2: "<u1",
        3: "<i2",
        4: "<u2",
        5: "<i4",
        6: "<u4",
        7: "<f4",
        9: "<f8",
        12: "<i8",
        13: "<u8",
    }.items()
}
_MX_CLASSES = range(1, 18)  # cell, struct, object, char, sparse, 10 numeric, function, opaque
_MX_CHAR_CLASS, _MX_SPARSE_CLASS = 4, 5
_MX_NUMERIC_CLASSES = frozenset(range(6, 16))  # double, single, int8 ... uint64
_FLAG_COMPLEX, _FLAG_GLOBAL = 0x0800, 0x0400
_TAG = struct.Struct("<II")
# Every miMATRIX starts with the array-flags tag, flags, nzmax and the dimensions tag; for a 2-D
# array (nearly all) the two dimensions follow, so one unpack reads them all.
_MATRIX_HEAD = struct.Struct("<6I2i")
_MATRIX_MIN_BYTES = 40  # flags 16 + dimensions >= 16 + name >= 8
_HEADER_BYTES = 128
# numpy views of the file's bytes are only the values loadmat returns on a little-endian machine.
_FAST_PATH_POSSIBLE = sys.byteorder == "little"


class _Unsupported(Exception):
    """A valid MAT-5 construct the walker does not decode; ``scipy.io.loadmat`` reads the file."""


class _Damaged(Exception):
    """A layout no MAT-5 writer produces: cut short, impossible sizes, unknown types.

    Reported as unreadable instead of being handed to ``loadmat``: scipy 1.17 crashes the
    interpreter (segmentation fault) on some such files, e.g. a dimensions element whose byte
    count is not a multiple of 4, or an unknown data type.
    """


def _tag(buf: memoryview, pos: int, end: int) -> Tuple[int, int, int, int]:
    """``(type, byte count, data offset, offset of the next element)`` of the element at ``pos``."""
    if pos + 8 > end:
        raise _Damaged(f"element at byte {pos} runs past byte {end}")
    word, count = _TAG.unpack_from(buf, pos)
    if word >> 16:
        kind, count, data, after = word & 0xFFFF, word >> 16, pos + 4, pos + 8
        if count > 4:
            raise _Damaged(f"small element at byte {pos} claims {count} bytes")
    else:
        kind, data = word, pos + 8
        after = data + ((count + 7) & ~7)
        if data + count > end:
            raise _Damaged(f"element at byte {pos} needs {count} bytes, {end - data} left")
    if kind not in _MI_TYPES:
        raise _Damaged(f"unknown data type {kind} at byte {pos}")
    return kind, count, data, after


def _chars(buf: memoryview, dims: Tuple[int, ...], data: int, count: int) -> np.ndarray:
    """A char matrix as loadmat returns it by default: one string per row."""
    try:
        text = str(buf[data : data + count], "utf-8")
    except UnicodeDecodeError:
        raise _Damaged(f"text at byte {data} is not UTF-8") from None
    if dims == (0, 0) and not text:
        return np.empty(0, dtype="<U1")
    if len(dims) != 2 or 0 in dims or len(text) != dims[0] * dims[1]:
        raise _Unsupported
    rows = dims[0]
    return np.array([text[r::rows] for r in range(rows)], dtype=f"<U{dims[1]}")


def _check_sparse(buf: memoryview, dims: Tuple[int, ...], row_kind: int, pos: int, end: int) -> None:
    """Raise :class:`_Damaged` unless a sparse matrix has integer row and column indices and values.

    Like a complex one, a damaged sparse matrix can crash scipy instead of raising.
    """
    col_kind, col_count, _, pos = _tag(buf, pos, end)
    kind, _, _, _ = _tag(buf, pos, end)
    integer = (_MI_INT32, _MI_UINT32, 12, 13)  # int32, uint32, int64, uint64
    if len(dims) != 2 or row_kind not in integer or col_kind not in integer or kind not in _MI_DTYPES:
        raise _Damaged("sparse matrix without integer indices and values")
    if col_count != (dims[1] + 1) * _MI_DTYPES[col_kind].itemsize:
        raise _Damaged(f"sparse matrix with {dims[1]} columns has {col_count} bytes of column indices")


def _variable(buf: memoryview, pos: int, end: int, wanted: FrozenSet[str] | None) -> Tuple[str, Any]:
    """Name and value of the miMATRIX whose sub-elements span ``[pos, end)``; value None if unwanted."""
    if pos == end:
        raise _Unsupported  # an empty miMATRIX element
    if pos + _MATRIX_MIN_BYTES > end:
        raise _Damaged(f"variable at byte {pos - 8} has only {end - pos} bytes")
    flags_kind, flags_count, flags, _, dims_kind, dims_count, rows, cols = _MATRIX_HEAD.unpack_from(buf, pos)
    array_class = flags & 0xFF
    if (
        flags_kind != _MI_UINT32
        or flags_count != 8
        or array_class not in _MX_CLASSES
        or dims_kind != _MI_INT32
        or dims_count < 8
        or dims_count % 4
        or pos + 24 + dims_count > end
    ):
        raise _Damaged(f"variable at byte {pos - 8} has no valid array flags and dimensions")
    if dims_count == 8:
        dims: Tuple[int, ...] = (rows, cols)
    else:
        dims = struct.unpack_from(f"<{dims_count // 4}i", buf, pos + 24)
    if min(dims) < 0:
        raise _Damaged(f"variable at byte {pos - 8} has negative dimensions")
    name_kind, name_count, name_at, pos = _tag(buf, pos + 24 + ((dims_count + 7) & ~7), end)
    if name_kind != _MI_INT8:
        raise _Damaged(f"variable name at byte {name_at} has data type {name_kind}")
    if name_count == 0:
        raise _Unsupported  # MATLAB's function workspace
    name = str(buf[name_at : name_at + name_count], "latin1")
    if wanted is not None and name not in wanted:
        return name, None
    kind, count, data, pos = _tag(buf, pos, end)
    if array_class == _MX_SPARSE_CLASS:
        _check_sparse(buf, dims, kind, pos, end)
    if array_class == _MX_CHAR_CLASS and kind == _MI_UTF8 and not flags & (_FLAG_COMPLEX | _FLAG_GLOBAL):
        return name, _chars(buf, dims, data, count)
    dtype = _MI_DTYPES.get(kind)
    if array_class not in _MX_NUMERIC_CLASSES or dtype is None:
        raise _Unsupported
    size = math.prod(dims)
    if count != size * dtype.itemsize:
        raise _Damaged(f"{name!r} has {count} bytes of data for {size} values of {dtype.itemsize} bytes")
    if flags & _FLAG_COMPLEX:
        # scipy reads the imaginary part without checking that it is there (and crashes if not).
        kind, count, _, _ = _tag(buf, pos, end)
        dtype = _MI_DTYPES.get(kind)
        if dtype is None or count != size * dtype.itemsize:
            raise _Damaged(f"complex {name!r} has no imaginary part of {size} values")
    if flags & (_FLAG_COMPLEX | _FLAG_GLOBAL):
        raise _Unsupported
    # Column-major [d0, d1, ...] is row-major [..., d1, d0]; transposing gives loadmat's own view.
    return name, np.frombuffer(buf, dtype, size, data).reshape(dims[::-1]).T


def _read_mat5(
    buf: np.ndarray, wanted: FrozenSet[str] | None = None, also: FrozenSet[str] = frozenset()
) -> Dict[str, Any] | None:
    """The variables of a MAT-5 file held in ``buf`` (uint8), or None if ``loadmat`` must read it.

    This reader is kept beside ``loadmat`` on purpose: it reads a record several times faster
    (the training loop reads one per sample), and it reports a damaged file as unreadable where
    ``loadmat`` crashes the interpreter (see :class:`_Damaged`).

    Raises :class:`_Damaged` for a layout no writer produces, a truncated file included: every
    element must lie inside the file. With ``wanted``, the walk stops decoding once every wanted
    variable is found (our writer puts them first) and steps over the others, checking only their
    extent. (So a wanted name written twice would give the first where loadmat keeps the last;
    neither savemat nor MATLAB writes such files.) ``also`` names variables decoded when met before
    the walk stops; they do not keep it going (fairseq-signals' ``mean`` and ``std``: its files hold
    no ``lead_present``, so their walk reaches every variable, while ours stop after the signal).
    """
    if not _FAST_PATH_POSSIBLE or len(buf) < _HEADER_BYTES:
        return None
    end = len(buf)
    buf = memoryview(buf)  # slicing a memoryview is cheaper than slicing an ndarray
    header = bytes(buf[116:_HEADER_BYTES])
    # No subsystem data, version 0x0100 (v7.3 files are HDF5), little-endian.
    if header[:8] not in (b"\0" * 8, b" " * 8) or header[8:] != b"\0\x01IM":
        return None
    variables: Dict[str, Any] = {}
    decoded = None if wanted is None else wanted | also
    missing = len(wanted) if wanted is not None else -1
    pos = _HEADER_BYTES
    try:
        while pos < end:
            if pos + 8 > end:
                raise _Damaged(f"{end - pos} stray bytes at the end")
            kind, count = _TAG.unpack_from(buf, pos)
            if kind not in (_MI_MATRIX, _MI_COMPRESSED):
                raise _Damaged(f"data type {kind} at byte {pos} where a variable should start")
            if pos + 8 + count > end:
                raise _Damaged(f"cut short: the variable at byte {pos} needs {count} bytes, {end - pos - 8} left")
            if missing:
                if kind == _MI_COMPRESSED:
                    return None
                name, value = _variable(buf, pos + 8, pos + 8 + count, decoded)
                if value is not None:
                    if wanted is not None and name in wanted and name not in variables:
                        missing -= 1
                    variables[name] = value
            pos += 8 + count
    except (_Unsupported, ValueError, struct.error):
        return None
    return variables


def _read_fast(
    path: str | Path, wanted: FrozenSet[str] | None, also: FrozenSet[str] = frozenset()
) -> Dict[str, Any] | None:
    """Read ``path`` with one system call and walk it (:func:`_read_mat5`); None if ``loadmat`` has to read it.

    Raises :class:`RecordError` if the file does not exist, :class:`_Damaged` if it is damaged.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise RecordError(path, "file not found") from None
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        buf = np.empty(size, dtype=np.uint8)
        if os.readv(fd, (buf,)) != size:
            return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return _read_mat5(buf, wanted, also)


def _scalar(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return str(arr.item()) if arr.size == 1 else ""
    if arr.size == 1:
        return arr.item()
    return arr.squeeze()


def read_record(path: str | Path, with_meta: bool = True) -> EcgRecord:
    """Read a record written by :func:`write_record` (or by fairseq-signals' preparers).

    ``feats`` is float32 [12, T] in column-major order (as ``loadmat`` returns it); callers that
    need C order copy the part they use.
    """
    try:
        mat = _read_fast(path, None if with_meta else SIGNAL_KEYS, STANDARDISATION_KEYS)
    except _Damaged as exc:
        raise RecordError(path, f"unreadable .mat file (damaged MAT-5 layout: {exc})") from None
    if mat is None:
        try:
            mat = scipy.io.loadmat(str(path))
        except FileNotFoundError:
            raise RecordError(path, "file not found") from None
        except Exception as exc:  # scipy raises several types for truncated/garbled files
            raise RecordError(path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from None
    if "feats" not in mat:
        raise RecordError(path, "no 'feats' array in the .mat file")
    # loadmat turns a variable it cannot decode into a "Read error: ..." string instead of raising.
    feats = mat["feats"]
    if not isinstance(feats, np.ndarray) or feats.dtype.kind not in "biuf":
        raise RecordError(path, "unreadable .mat file ('feats' is not a numeric array)")
    if feats.ndim != 2 or feats.shape[0] != N_LEADS:
        raise RecordError(path, f"'feats' has shape {list(feats.shape)}, expected [{N_LEADS}, T]")
    statistics = _standardisation(mat)
    if statistics is not None:
        mean, std = statistics
        feats = feats * std + mean  # in float64, as the statistics were stored
    feats = feats.astype(np.float32, copy=False)
    sample_rate = 500.0
    if "curr_sample_rate" in mat:
        try:
            sample_rate = float(_scalar(mat["curr_sample_rate"]))
        except (TypeError, ValueError):
            raise RecordError(path, "'curr_sample_rate' is not a number") from None
    if "lead_present" in mat:
        lead_present = np.asarray(mat["lead_present"])
        if lead_present.dtype.kind not in "biuf" or lead_present.size != N_LEADS:
            raise RecordError(path, f"'lead_present' is not {N_LEADS} numbers")
        lead_present = lead_present.reshape(-1).astype(bool)
    else:
        lead_present = np.ones(N_LEADS, bool)
    consumed = SIGNAL_KEYS | (STANDARDISATION_KEYS if statistics is not None else frozenset())
    meta = {}
    if with_meta:
        meta = {k: _scalar(v) for k, v in mat.items() if not k.startswith("__") and k not in consumed}
    return EcgRecord(
        feats=feats, sample_rate=sample_rate, lead_present=lead_present, meta=meta, restored_mv=statistics is not None
    )


def _standardisation(mat: Dict[str, Any]) -> Tuple[np.ndarray, np.ndarray] | None:
    """fairseq-signals' per-lead ``mean`` and ``std`` as float64 [12, 1] columns, when the file
    holds both as 12 numbers each; None otherwise."""
    columns = []
    for key in ("mean", "std"):
        value = mat.get(key)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf" or value.size != N_LEADS:
            return None
        columns.append(value.reshape(N_LEADS, 1).astype(np.float64))
    return columns[0], columns[1]
