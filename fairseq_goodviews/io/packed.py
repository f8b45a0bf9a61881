"""Packs: each split's records in memory-mappable shards beside its manifest, int16 where exact.

``<split>.packed/`` beside the manifest ``<split>.tsv`` holds ``index.npy`` and the shards
``shard-<run><segment>-<k>.npy``. A shard is one flat little-endian int16 ``.npy`` array holding
whole records back to back, each as its own row-major [12, T] block (a record's 12 lead rows next to
each other: copying a crop out of per-record blocks is what lets a pack read at the speed of a
plain memory-mapped array). A record is stored either

* as int16 steps with a per-lead gain and baseline, ``mV = (steps - baseline) / gain``
  (:mod:`fairseq_goodviews.io.int16_codec`), when that decodes to its ``.mat`` file's float32
  values exactly: the 16-bit sources (PhysioNet 2021, PTB-XL, MIMIC-IV-ECG at their own
  rate), where the steps are the source's ADC values; or
* as float32 (two int16 slots a value, at an even offset) when it is not (resampled or
  standardised records, Chapman's decimal microvolts), or when the pack was asked for float32.

The writer reports how many records took each form. Shards are cut at a size in bytes (default
1 GiB) or in records, never inside a record, and at the end of each segment, the share of one
writing process (:func:`write_pack`). ``index.npy`` holds a single structured value: each
record's shard, offset, length, sample rate, lead-present mask, form and scale (a row of a
table of distinct per-lead gains and baselines, so 800,000 records sharing one gain store it
once), each shard's name, size, modification time and length, and the manifest's SHA-256 and
modification time. A reader maps a shard the first time it reads from it.

Every file is written atomically (:mod:`fairseq_goodviews.io.atomic`) under a name new to the
run, the index last: until the new index replaces the old one, the old pack is whole, and a
failed or killed run leaves it as it was (the new run's shards are removed on failure, and by the
next successful run after a kill). The shards the new index does not name are removed after it.

The ``.mat`` files stay the source of truth: a pack is only used while it matches its manifest,
and ``goodviews-pack MANIFEST_DIR`` rebuilds it. A preparer run with ``--pack`` packs every split
it writes; without it, a preparer removes the packs of the manifests it rewrites. A pack is
current when its index names the manifest's exact bytes (SHA-256), its modification time and
record count, and every shard's size and modification time. The manifest time matters because
re-running a preparer rewrites both the records and the manifest, possibly with identical
content. A directory copied without preserving times (``cp -r`` rather than ``cp -a``/``rsync
-a``) therefore needs a re-pack; the training log says so. Packs of the first format (one
float32 file, :mod:`fairseq_goodviews.io.packed_float32`) are still read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from fairseq_goodviews.io.atomic import OutputPathError, atomic_path, describe_os_error
from fairseq_goodviews.io.int16_codec import decode, encode_int16, shared_gain
from fairseq_goodviews.io.manifest import ManifestError, read_manifest
from fairseq_goodviews.io.packed_float32 import (
    Float32FilePack,
    float32_file_paths,
    float32_file_problem,
    manifest_mismatch,
)
from fairseq_goodviews.io.records import N_LEADS, RecordError, read_record, signal_problems

logger = logging.getLogger(__name__)

FOLDER_SUFFIX = ".packed"
INDEX_NAME = "index.npy"
FORMAT_VERSION = 2
DEFAULT_SPLITS = ("train", "valid", "test")
DEFAULT_SHARD_BYTES = 1 << 30
ENCODINGS = ("int16", "float32")
_SHARD_DTYPE = np.dtype("<i2")
_FLOAT_DTYPE = np.dtype("<f4")
_SHARD_NAME = re.compile(r"shard-[0-9a-f]+-\d+\.npy")  # shard-<run><segment>-<k>, or shard-<run>-<k> (before)
# Record forms in the index.
FLOAT32, INT16 = 0, 1


def pack_folder(manifest_path: str | Path) -> Path:
    """``<split>.packed`` beside the manifest ``<split>.tsv``."""
    manifest_path = Path(manifest_path)
    return manifest_path.parent / f"{manifest_path.stem}{FOLDER_SUFFIX}"


def _index_dtype(n_records: int, n_shards: int, n_scales: int) -> np.dtype:
    return np.dtype(
        [
            ("version", "<i8"),
            ("manifest_sha256", "S64"),
            ("manifest_mtime_ns", "<i8"),
            ("shard_names", "S64", (n_shards,)),
            ("shard_bytes", "<i8", (n_shards,)),
            ("shard_mtime_ns", "<i8", (n_shards,)),
            ("shard_values", "<i8", (n_shards,)),
            ("shards", "<i4", (n_records,)),
            ("offsets", "<i8", (n_records,)),
            ("lengths", "<i8", (n_records,)),
            ("sample_rates", "<f8", (n_records,)),
            ("lead_present", "u1", (n_records, N_LEADS)),
            ("forms", "u1", (n_records,)),
            ("scales", "<i4", (n_records,)),
            ("gains", "<f4", (n_scales, N_LEADS)),
            ("baselines", "<f4", (n_scales, N_LEADS)),
        ]
    )


def _manifest_fingerprint(manifest_path: Path) -> tuple[bytes, int]:
    """SHA-256 (hex) of the manifest's bytes and its modification time in ns."""
    mtime_ns = manifest_path.stat().st_mtime_ns
    return hashlib.sha256(manifest_path.read_bytes()).hexdigest().encode(), mtime_ns


def _npy_header(n_values: int) -> bytes:
    """The ``.npy`` header of a flat little-endian int16 array of ``n_values``: 128 bytes for any
    count below 10**40, so a shard's header is written first and rewritten in place at its end."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(_SHARD_DTYPE), "fortran_order": False, "shape": (n_values,)}
    )
    return header.getvalue()


class _ShardWriter:
    """Writes records' blocks into shards of at most ``shard_bytes`` (or ``shard_records``), each
    atomically, named by the ``run`` and the ``segment`` of the pack they belong to; ``close``
    finishes the open shard, ``abort`` removes every shard it wrote."""

    def __init__(self, folder: Path, shard_bytes: int | None, shard_records: int | None, run: str, segment: int):
        self.folder = folder
        self.prefix = f"shard-{run}{segment:05d}-"
        self.shard_bytes = shard_bytes
        self.shard_records = shard_records
        self.names: List[str] = []
        self.values: List[int] = []
        self._stack: contextlib.ExitStack | None = None
        self._handle: Any = None
        self._records = 0

    def add(self, block: np.ndarray) -> tuple[int, int]:
        """Append ``block`` (int16 or float32, C-contiguous); its shard and offset in int16 values."""
        slots = block.nbytes // _SHARD_DTYPE.itemsize
        if self._handle is not None:
            pad = self.values[-1] % 2 if block.dtype == _FLOAT_DTYPE else 0
            full_bytes = self.shard_bytes is not None and (self.values[-1] + pad + slots) * 2 > self.shard_bytes
            full_records = self.shard_records is not None and self._records >= self.shard_records
            if full_bytes or full_records:
                self.close()
        if self._handle is None:
            self._open()
        if block.dtype == _FLOAT_DTYPE and self.values[-1] % 2:  # float32 values at 4-byte offsets
            self._handle.write(np.zeros(1, _SHARD_DTYPE).data)
            self.values[-1] += 1
        offset = self.values[-1]
        self._handle.write(block.data)
        self.values[-1] += slots
        self._records += 1
        return len(self.names) - 1, offset

    def _open(self) -> None:
        name = f"{self.prefix}{len(self.names):05d}.npy"
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.folder / name))
        self._handle = self._stack.enter_context(open(tmp, "wb"))
        self._handle.write(_npy_header(0))
        self.names.append(name)
        self.values.append(0)
        self._records = 0

    def close(self) -> None:
        """Finish the open shard (its header, then the atomic rename), if any."""
        if self._handle is not None:
            self._handle.seek(0)
            self._handle.write(_npy_header(self.values[-1]))
            stack, self._stack, self._handle = self._stack, None, None
            stack.close()

    def abort(self) -> None:
        """Drop the open shard's temporary file and every shard this run finished."""
        if self._stack is not None:
            stack, self._stack, self._handle = self._stack, None, None
            with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                stack.__exit__(*sys.exc_info())
        for name in self.names:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()


def _parse_encoding(encoding: str) -> bool:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    return encoding == "int16"


def _plan_segments(
    lengths: np.ndarray, value_bytes: int, shard_bytes: int | None, shard_records: int | None
) -> List[tuple[int, int]]:
    """The pack's segments: (first, stop) ranges of records, each what one shard would hold if
    every record took ``value_bytes`` a value. A segment is written by one process, and cut into
    shards by the records' actual sizes; when every record takes its planned form, a segment is
    exactly one shard."""
    segments, first, values = [], 0, 0
    for i, n_samples in enumerate(lengths.tolist()):
        size = n_samples * N_LEADS * value_bytes
        full_bytes = shard_bytes is not None and values + size > shard_bytes
        full_records = shard_records is not None and i - first >= shard_records
        if i > first and (full_bytes or full_records):
            segments.append((first, i))
            first, values = i, 0
        values += size
    segments.append((first, len(lengths)))
    return segments


@dataclass(frozen=True)
class _Segment:
    """One process's share of a pack: the manifest's ``entries`` (path under ``root``, samples)
    from one segment's first record to its last."""

    manifest_path: Path
    root: Path
    entries: Sequence[tuple[str, int]]
    folder: Path
    run: str
    number: int
    as_int16: bool
    shard_bytes: int | None
    shard_records: int | None


def _write_segment(segment: _Segment) -> Dict[str, Any]:
    """Read, encode and write the records of ``segment`` into its shards; their names and lengths
    and every record's shard (in the segment), offset, rate, lead mask, form, gain and baseline."""
    root, entries = segment.root, segment.entries
    n = len(entries)
    out: Dict[str, Any] = {
        "shards": np.empty(n, dtype=np.int32),
        "offsets": np.empty(n, dtype=np.int64),
        "sample_rates": np.empty(n, dtype=np.float64),
        "lead_present": np.empty((n, N_LEADS), dtype=np.uint8),
        "forms": np.empty(n, dtype=np.uint8),
        "gains": np.full((n, N_LEADS), np.nan, dtype=np.float32),
        "baselines": np.zeros((n, N_LEADS), dtype=np.float32),
    }
    previous_gain = None
    writer = _ShardWriter(segment.folder, segment.shard_bytes, segment.shard_records, segment.run, segment.number)
    try:
        for i, (rel, n_samples) in enumerate(entries):
            record = read_record(root / rel, with_meta=False)
            if record.n_samples != n_samples:
                raise RecordError(
                    root / rel, f"{record.n_samples} samples, but {segment.manifest_path} says {n_samples}"
                )
            encoded = encode_int16(record.feats, previous_gain) if segment.as_int16 else None
            if encoded is None:  # an int16 record is finite: it decoded to the record's values
                out["forms"][i] = FLOAT32
                block = np.ascontiguousarray(record.feats, dtype=_FLOAT_DTYPE)
                if not np.isfinite(block).all():
                    problems = signal_problems(block, record.lead_present) or ["NaN or inf in a lead marked absent"]
                    raise RecordError(root / rel, "; ".join(problems))
            else:
                out["forms"][i] = INT16
                previous_gain = out["gains"][i] = encoded.gain
                out["baselines"][i] = encoded.baseline
                block = encoded.steps
            out["shards"][i], out["offsets"][i] = writer.add(block.reshape(-1))
            out["sample_rates"][i] = record.sample_rate
            out["lead_present"][i] = record.lead_present
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {**out, "names": writer.names, "values": writer.values}


def _write_segments(segments: Sequence[_Segment], workers: int) -> List[Dict[str, Any]]:
    """:func:`_write_segment` of each, in order: in this process, or in ``workers`` forked ones."""
    if workers == 1 or len(segments) == 1:
        return [_write_segment(segment) for segment in segments]
    pool = ProcessPoolExecutor(max_workers=min(workers, len(segments)), mp_context=get_context("fork"))
    try:
        futures = [pool.submit(_write_segment, segment) for segment in segments]
        return [future.result() for future in futures]
    finally:  # on a failure, the segments not started are not written
        pool.shutdown(wait=True, cancel_futures=True)


def write_pack(
    manifest_path: str | Path,
    *,
    encoding: str = "int16",
    shard_bytes: int | None = DEFAULT_SHARD_BYTES,
    shard_records: int | None = None,
    workers: int = 1,
) -> Dict[str, Any]:
    """Pack every record of ``manifest_path`` into ``<split>.packed/``; returns a summary (records,
    samples, bytes, seconds, shards, records in each form, the folder).

    ``encoding="int16"`` stores each record as int16 where that is exact, else float32;
    ``"float32"`` stores every record as float32. A shard ends before the record that would take
    it past ``shard_bytes`` or after ``shard_records`` records (None: no limit), and at the end of
    a segment: the records one shard would hold if each took its encoding's size (int16: 2 bytes
    a value), so a pack whose records all take that form is cut where one writer would cut it.
    ``workers`` processes write the segments at once; the pack is the same for any number of
    them. Records are read with :func:`read_record`, so unreadable ones raise
    :class:`RecordError` naming the file; a record whose length differs from its manifest line is
    refused the same way.

    Shards are written sequentially, not through a memory map (a full disk would kill the process
    with SIGBUS there): a folder without room for the pack (checked first, against the free space,
    with every int16-eligible record counted as int16) or a write that fails raises
    :class:`OutputPathError`, one line naming the folder. A failure leaves the previous pack as
    it was.
    """
    as_int16 = _parse_encoding(encoding)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    start = time.perf_counter()
    manifest_path = Path(manifest_path)
    # Fingerprint before reading records: a manifest rewritten meanwhile leaves the pack stale.
    sha, manifest_mtime_ns = _manifest_fingerprint(manifest_path)
    root, entries = read_manifest(manifest_path)
    lengths = np.array([n for _, n in entries], dtype=np.int64)
    if (lengths <= 0).any():
        raise ManifestError(f"{manifest_path}: a record with no samples cannot be packed")
    folder = pack_folder(manifest_path)
    parent = folder.parent
    value_bytes = 2 if as_int16 else 4
    needed = int(lengths.sum()) * N_LEADS * value_bytes
    free = shutil.disk_usage(parent).free
    if free < needed:
        at_least = "at least " if as_int16 else ""
        raise OutputPathError(
            parent,
            f"cannot write {folder.name}: it needs {at_least}{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free",
        )
    run = secrets.token_hex(4)
    segments = [
        _Segment(manifest_path, root, entries[first:stop], folder, run, number, as_int16, shard_bytes, shard_records)
        for number, (first, stop) in enumerate(_plan_segments(lengths, value_bytes, shard_bytes, shard_records))
    ]
    names: List[str] = []
    try:
        parts = _write_segments(segments, workers)
        names = [name for part in parts for name in part["names"]]
        shard_values = [values for part in parts for values in part["values"]]
        first_shards = np.cumsum([0, *[len(part["names"]) for part in parts[:-1]]])
        shards = np.concatenate([part["shards"] + first for part, first in zip(parts, first_shards, strict=True)])

        def joined(key: str) -> np.ndarray:
            return np.concatenate([part[key] for part in parts])

        forms, gains_of, baselines_of = joined("forms"), joined("gains"), joined("baselines")
        scales = np.full(len(entries), -1, dtype=np.int32)
        scale_rows: Dict[bytes, int] = {}
        gains: List[np.ndarray] = []
        baselines: List[np.ndarray] = []
        for i in np.flatnonzero(forms == INT16):
            key = gains_of[i].tobytes() + baselines_of[i].tobytes()
            if key not in scale_rows:
                scale_rows[key] = len(gains)
                gains.append(gains_of[i])
                baselines.append(baselines_of[i])
            scales[i] = scale_rows[key]
        stats = [os.stat(folder / name) for name in names]
        index = np.zeros((), dtype=_index_dtype(len(entries), len(names), len(gains)))
        index["version"] = FORMAT_VERSION
        index["manifest_sha256"] = sha
        index["manifest_mtime_ns"] = manifest_mtime_ns
        index["shard_names"] = [name.encode() for name in names]
        index["shard_bytes"] = [stat.st_size for stat in stats]
        index["shard_mtime_ns"] = [stat.st_mtime_ns for stat in stats]
        index["shard_values"] = shard_values
        index["shards"] = shards
        index["offsets"] = joined("offsets")
        index["lengths"] = lengths
        index["sample_rates"] = joined("sample_rates")
        index["lead_present"] = joined("lead_present")
        index["forms"] = forms
        index["scales"] = scales
        if gains:
            index["gains"] = np.stack(gains)
            index["baselines"] = np.stack(baselines)
        with atomic_path(folder / INDEX_NAME) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, index, allow_pickle=False)
    except BaseException as exc:
        _remove_run_shards(folder, run)
        if isinstance(exc, OSError) and not isinstance(exc, OutputPathError):
            raise OutputPathError(folder, f"cannot write the pack ({describe_os_error(exc)})") from None
        raise
    _remove_other_shards(folder, set(names))
    for path in float32_file_paths(manifest_path):  # a pack of the first format is outdated now
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return {
        "records": len(entries),
        "samples": int(lengths.sum()),
        "bytes": sum(stat.st_size for stat in stats),
        "seconds": time.perf_counter() - start,
        "shards": len(names),
        "int16_records": int((forms == INT16).sum()),
        "float32_records": int((forms == FLOAT32).sum()),
        "data": str(folder),
    }


def _remove_run_shards(folder: Path, run: str) -> None:
    """Delete every shard a failed run ``run`` finished (each writer removed its own temporary)."""
    if folder.is_dir():
        for path in folder.glob(f"shard-{run}*.npy"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _remove_other_shards(folder: Path, keep: set[str]) -> None:
    """Delete the shards (and leftover temporaries of killed runs) that the index does not name."""
    for path in folder.iterdir():
        stale_temporary = path.name.startswith(".shard-") and path.name.endswith(".tmp")
        if (_SHARD_NAME.fullmatch(path.name) and path.name not in keep) or stale_temporary:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def remove_pack(manifest_path: str | Path) -> bool:
    """Delete the pack beside ``manifest_path`` (either format); whether there was anything to delete."""
    removed = False
    folder = pack_folder(manifest_path)
    if folder.is_dir():
        shutil.rmtree(folder)
        removed = True
    for path in float32_file_paths(manifest_path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed = True
    return removed


def pack_line(split: str, summary: Mapping[str, Any]) -> str:
    """The line printed for each packed split: records, samples, size, time, forms, shards and the folder."""
    shards = summary["shards"]
    return (
        f"{split}: {summary['records']} records, {summary['samples']} samples, "
        f"{summary['bytes'] / 2**20:.1f} MiB in {summary['seconds']:.1f} s "
        f"({summary['int16_records']} int16, {summary['float32_records']} float32; "
        f"{shards} shard{'s' if shards != 1 else ''}) -> {summary['data']}"
    )


def _sharded_problem(manifest_path: Path, sha: bytes, mtime_ns: int, n_records: int) -> str | None:
    folder = pack_folder(manifest_path)
    index_path = folder / INDEX_NAME
    if not index_path.is_file():
        return f"{folder.name}/{INDEX_NAME} does not exist"
    try:
        index = np.load(index_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        return f"cannot read {index_path} ({type(exc).__name__}: {exc})"
    fields = index.dtype.names or ()
    if index.shape != () or "version" not in fields or int(index["version"]) != FORMAT_VERSION:
        return f"{index_path} is not a version-{FORMAT_VERSION} pack index"
    mismatch = manifest_mismatch(index, manifest_path, n_records, sha, mtime_ns)
    if mismatch:
        return mismatch
    for name, size, shard_mtime_ns in zip(
        index["shard_names"], index["shard_bytes"], index["shard_mtime_ns"], strict=True
    ):
        path = folder / name.decode()
        try:
            stat = path.stat()
        except OSError:
            return f"{path}: shard not found"
        if stat.st_size != size:
            return f"{path}: {stat.st_size} bytes, the index says {size} (a truncated or replaced shard)"
        if stat.st_mtime_ns != shard_mtime_ns:
            return f"{path}: modified since it was packed"
    return None


def pack_problem(manifest_path: str | Path) -> str | None:
    """Why the pack beside ``manifest_path`` cannot be used, or None if it is current."""
    manifest_path = Path(manifest_path)
    try:
        sha, mtime_ns = _manifest_fingerprint(manifest_path)
        _, entries = read_manifest(manifest_path)
    except (OSError, ValueError) as exc:  # ManifestError is a ValueError
        return f"cannot read {manifest_path} ({type(exc).__name__}: {exc})"
    if pack_folder(manifest_path).exists() or not any(p.exists() for p in float32_file_paths(manifest_path)):
        return _sharded_problem(manifest_path, sha, mtime_ns, len(entries))
    return float32_file_problem(manifest_path, sha, mtime_ns, len(entries))


class ShardedPack:
    """Read-only access to a current pack: ``read(i)`` and ``crop(i, start, length)`` return
    C-contiguous float32 copies in millivolts, equal to the values of the ``.mat`` files.

    Each shard is memory-mapped the first time a record in it is read, and the mappings are left
    out of pickles, so a dataset holding this object goes to data-loader workers without them. A
    shard that is missing, truncated, rewritten or not an int16 array is a :class:`RecordError`
    naming the shard.
    """

    def __init__(self, manifest_path: str | Path):
        self.location = pack_folder(manifest_path)
        index_path = self.location / INDEX_NAME
        try:
            index = np.load(index_path, allow_pickle=False)
            self.shard_names = [name.decode() for name in index["shard_names"]]
        except (OSError, ValueError, EOFError, KeyError) as exc:
            raise RecordError(index_path, f"unreadable pack index ({type(exc).__name__}: {exc})") from None
        self._shard_stats = list(zip(index["shard_bytes"].tolist(), index["shard_mtime_ns"].tolist(), strict=True))
        self._shard_values = index["shard_values"].tolist()
        self.shards: np.ndarray = index["shards"]
        self.offsets: np.ndarray = index["offsets"]
        self.lengths: np.ndarray = index["lengths"]
        self.sample_rates: np.ndarray = index["sample_rates"]
        self.lead_present: np.ndarray = index["lead_present"].astype(bool)
        self.forms: np.ndarray = index["forms"]
        self.scales: np.ndarray = index["scales"]
        self.gains: np.ndarray = index["gains"]
        # Each scale as decode takes it fastest: one gain for all leads where they share it, and
        # no baseline where its baselines are all zero (the usual case: one subtraction less).
        self._decode_scales: List[tuple[np.ndarray | np.float32, np.ndarray | None]] = [
            (shared_gain(gain), baseline if baseline.any() else None)
            for gain, baseline in zip(index["gains"], index["baselines"], strict=True)
        ]
        self._maps: List[np.ndarray | None] = [None] * len(self.shard_names)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = [None] * len(self.shard_names)
        return state

    def shard(self, k: int) -> np.ndarray:
        """Shard ``k`` as a flat int16 array (a plain ndarray over its memory map), mapped on first use."""
        data = self._maps[k]
        if data is None:
            path = self.location / self.shard_names[k]
            try:
                stat = os.stat(path)
            except OSError as exc:
                raise RecordError(path, f"pack shard unreadable ({describe_os_error(exc)}); restart the run") from None
            size, mtime_ns = self._shard_stats[k]
            if stat.st_size != size:
                raise RecordError(
                    path, f"pack shard truncated or replaced: {stat.st_size} bytes, the index says {size}"
                )
            if stat.st_mtime_ns != mtime_ns:
                raise RecordError(path, "the pack was rebuilt after its index was read; restart the run")
            try:
                data = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise RecordError(path, f"unreadable pack shard ({type(exc).__name__}: {exc})") from None
            if data.dtype != _SHARD_DTYPE or data.shape != (self._shard_values[k],):
                raise RecordError(
                    path, f"not a pack shard: {data.dtype} {list(data.shape)}, expected int16 [{self._shard_values[k]}]"
                )
            self._maps[k] = data
        return data

    def crop(self, index: int, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start + length)`` of record ``index``: a C-contiguous float32 [12, length]."""
        n_samples = self.lengths.item(index)
        if start < 0 or length < 0 or start + length > n_samples:
            raise IndexError(
                f"samples [{start}, {start + length}) outside record {index} of {self.location} ({n_samples} samples)"
            )
        data = self._maps[self.shards.item(index)]
        if data is None:
            data = self.shard(self.shards.item(index))
        offset = self.offsets.item(index)
        if self.forms.item(index) == FLOAT32:
            values = data[offset : offset + 2 * N_LEADS * n_samples].view(_FLOAT_DTYPE)
            return np.array(values.reshape(N_LEADS, n_samples)[:, start : start + length])
        steps = data[offset : offset + N_LEADS * n_samples].reshape(N_LEADS, n_samples)
        gain, baseline = self._decode_scales[self.scales.item(index)]
        return decode(steps[:, start : start + length], gain, baseline)

    def read(self, index: int) -> np.ndarray:
        """Record ``index`` whole, as a C-contiguous float32 [12, T] copy."""
        return self.crop(index, 0, self.lengths.item(index))


#: Either format's reader: ``lengths``, ``sample_rates``, ``lead_present``, ``crop``, ``read``, ``location``.
Pack = ShardedPack | Float32FilePack


def open_pack(manifest_path: str | Path) -> Pack | None:
    """The current pack beside ``manifest_path``; None (with a warning if one is stale) otherwise."""
    manifest_path = Path(manifest_path)
    sharded = pack_folder(manifest_path).exists()
    if not sharded and not any(p.exists() for p in float32_file_paths(manifest_path)):
        return None
    problem = pack_problem(manifest_path)
    if problem is not None:
        logger.warning(
            "not using the pack of %s: %s; reading the .mat files instead (rebuild it with: goodviews-pack %s)",
            manifest_path,
            problem,
            manifest_path.parent,
        )
        return None
    return ShardedPack(manifest_path) if sharded else Float32FilePack(manifest_path)


def parse_size(text: str) -> int:
    """Bytes of ``text``: a whole number with an optional K, M, G or T (powers of 1024), e.g. ``512M``."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"not a size: {text!r} (a positive whole number of bytes, or with K, M, G or T)")
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")


def split_manifests(manifest_dir: Path, splits: Sequence[str] | None) -> List[Path]:
    if splits:
        paths = [manifest_dir / f"{split}.tsv" for split in splits]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise ManifestError(f"{missing[0]}: manifest not found")
        return paths
    paths = [manifest_dir / f"{split}.tsv" for split in DEFAULT_SPLITS]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise ManifestError(f"{manifest_dir}: no {', '.join(s + '.tsv' for s in DEFAULT_SPLITS)}")
    return paths
