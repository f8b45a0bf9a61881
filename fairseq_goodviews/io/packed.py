"""Optional packed split: every record of a manifest in one memory-mapped array.

``<split>.packed.npy`` is one flat float32 array holding each record's ``feats`` in manifest
order, each as its own row-major [12, T] block: record ``i`` is
``data[offsets[i]:offsets[i] + 12 * lengths[i]].reshape(12, lengths[i])``.
``<split>.packed_index.npy`` holds a single structured value with each record's offset, length,
sample rate and lead-present mask, plus what the pack was built from. A training process then
reads a crop with one slice copy out of the page cache instead of opening and parsing a ``.mat``
file (target: at least 0.9x the records/s of a plain memory-mapped array).

Why per-record blocks rather than one [12, total_samples] array: a record's 12 lead rows then lie
next to each other instead of ``total_samples`` apart. Copying 2,000 [12, 5000] records out of
a [12, total_samples] array measured 1.3-1.5x slower than out of per-record blocks (0.7-0.8x the
reference of ``fairseq_goodviews.perf.record_loading``, whose array has this same layout):
the difference between missing and meeting the 0.9 target.

The ``.mat`` files stay the source of truth (a pack takes as much disk again): a pack is only
used while it matches its manifest, and ``goodviews-pack MANIFEST_DIR`` rebuilds it.
A preparer run with ``--pack`` packs every split it writes; without it, a preparer removes the
packs of the manifests it rewrites (they no longer match).

A pack is current when its index names the manifest's exact bytes (SHA-256), its modification
time and record count, and the data file's size and modification time. The manifest time
matters because re-running a preparer rewrites both the records and the manifest, possibly with
identical content (same paths and lengths, different filtering). A directory copied without
preserving times (``cp -r`` rather than ``cp -a``/``rsync -a``) therefore needs a re-pack; the
training log says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from fairseq_goodviews.io.atomic import OutputPathError, atomic_path, describe_os_error
from fairseq_goodviews.io.manifest import ManifestError, read_manifest
from fairseq_goodviews.io.records import N_LEADS, RecordError, read_record

logger = logging.getLogger(__name__)

PACK_SUFFIX = ".packed.npy"
INDEX_SUFFIX = ".packed_index.npy"
FORMAT_VERSION = 1
DEFAULT_SPLITS = ("train", "valid", "test")
_DATA_DTYPE = np.dtype("<f4")


def pack_paths(manifest_path: str | Path) -> tuple[Path, Path]:
    """``(<split>.packed.npy, <split>.packed_index.npy)`` beside the manifest ``<split>.tsv``."""
    manifest_path = Path(manifest_path)
    stem = manifest_path.parent / manifest_path.stem
    return Path(f"{stem}{PACK_SUFFIX}"), Path(f"{stem}{INDEX_SUFFIX}")


def _index_dtype(n_records: int) -> np.dtype:
    return np.dtype(
        [
            ("version", "<i8"),
            ("manifest_sha256", "S64"),
            ("manifest_mtime_ns", "<i8"),
            ("data_size", "<i8"),
            ("data_mtime_ns", "<i8"),
            ("offsets", "<i8", (n_records,)),
            ("lengths", "<i8", (n_records,)),
            ("sample_rates", "<f8", (n_records,)),
            ("lead_present", "u1", (n_records, N_LEADS)),
        ]
    )


def _manifest_fingerprint(manifest_path: Path) -> tuple[bytes, int]:
    """SHA-256 (hex) of the manifest's bytes and its modification time in ns."""
    mtime_ns = manifest_path.stat().st_mtime_ns
    return hashlib.sha256(manifest_path.read_bytes()).hexdigest().encode(), mtime_ns


def _npy_header(n_values: int) -> bytes:
    """The ``.npy`` header of a flat little-endian float32 array of ``n_values``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(_DATA_DTYPE), "fortran_order": False, "shape": (n_values,)}
    )
    return header.getvalue()


def write_pack(manifest_path: str | Path) -> Dict[str, Any]:
    """Pack every record of ``manifest_path``; returns a summary (records, samples, bytes, seconds).

    Both files are written atomically, data first, and the index records the data file's size and
    time, so a crash (or a concurrent re-pack) never pairs an index with the wrong data. Records
    are read with :func:`read_record`, so unreadable ones raise :class:`RecordError` naming the
    file; a record whose length differs from its manifest line is refused the same way.

    The data file is written sequentially, not through a memory map (a full disk would kill the
    process with SIGBUS there): a folder without room for the pack (checked first, against the
    free space) or a write that fails raises :class:`OutputPathError`, one line naming the folder.
    A failed data write leaves the previous pack as it was; a failed index write removes both
    files, so no half-written pack remains.
    """
    start = time.perf_counter()
    manifest_path = Path(manifest_path)
    # Fingerprint before reading records: a manifest rewritten meanwhile leaves the pack stale.
    sha, manifest_mtime_ns = _manifest_fingerprint(manifest_path)
    root, entries = read_manifest(manifest_path)
    lengths = np.array([n for _, n in entries], dtype=np.int64)
    if (lengths <= 0).any():
        raise ManifestError(f"{manifest_path}: a record with no samples cannot be packed")
    offsets = np.concatenate([[0], np.cumsum(lengths * N_LEADS)[:-1]]).astype(np.int64)
    total = int(lengths.sum()) * N_LEADS
    sample_rates = np.empty(len(entries), dtype=np.float64)
    lead_present = np.empty((len(entries), N_LEADS), dtype=np.uint8)
    data_path, index_path = pack_paths(manifest_path)
    folder = data_path.parent
    header = _npy_header(total)
    needed = len(header) + total * _DATA_DTYPE.itemsize
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OutputPathError(
            folder, f"cannot write {data_path.name}: it needs {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free"
        )
    try:
        with atomic_path(data_path) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(header)
                for i, (rel, n_samples) in enumerate(entries):
                    record = read_record(root / rel, with_meta=False)
                    if record.n_samples != n_samples:
                        raise RecordError(
                            root / rel, f"{record.n_samples} samples, but {manifest_path} says {n_samples}"
                        )
                    handle.write(np.ascontiguousarray(record.feats, dtype=_DATA_DTYPE).data)
                    sample_rates[i] = record.sample_rate
                    lead_present[i] = record.lead_present
            stat = os.stat(tmp)
    except OutputPathError:
        raise
    except OSError as exc:  # read_record raises RecordError only: this is the write failing
        raise OutputPathError(folder, f"cannot write {data_path.name} ({describe_os_error(exc)})") from None
    index = np.zeros((), dtype=_index_dtype(len(entries)))
    index["version"] = FORMAT_VERSION
    index["manifest_sha256"] = sha
    index["manifest_mtime_ns"] = manifest_mtime_ns
    index["data_size"] = stat.st_size
    index["data_mtime_ns"] = stat.st_mtime_ns  # os.replace keeps it
    index["offsets"] = offsets
    index["lengths"] = lengths
    index["sample_rates"] = sample_rates
    index["lead_present"] = lead_present
    try:
        with atomic_path(index_path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, index, allow_pickle=False)
    except BaseException as exc:
        remove_pack(manifest_path)  # the new data file without its index, or the old index without its data
        if isinstance(exc, OSError) and not isinstance(exc, OutputPathError):
            raise OutputPathError(folder, f"cannot write {index_path.name} ({describe_os_error(exc)})") from None
        raise
    return {
        "records": len(entries),
        "samples": int(lengths.sum()),
        "bytes": stat.st_size,
        "seconds": time.perf_counter() - start,
        "data": str(data_path),
        "index": str(index_path),
    }


def remove_pack(manifest_path: str | Path) -> bool:
    """Delete the pack beside ``manifest_path`` (both files); whether there was anything to delete."""
    removed = False
    for path in pack_paths(manifest_path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed = True
    return removed


def pack_line(split: str, summary: Mapping[str, Any]) -> str:
    """The line printed for each packed split: records, samples, size, time and the data file."""
    return (
        f"{split}: {summary['records']} records, {summary['samples']} samples, "
        f"{summary['bytes'] / 2**20:.1f} MiB in {summary['seconds']:.1f} s -> {summary['data']}"
    )


def pack_problem(manifest_path: str | Path) -> str | None:
    """Why the pack beside ``manifest_path`` cannot be used, or None if it is current."""
    manifest_path = Path(manifest_path)
    data_path, index_path = pack_paths(manifest_path)
    if not data_path.is_file() or not index_path.is_file():
        return f"{data_path.name} and {index_path.name} do not both exist"
    try:
        index = np.load(index_path, allow_pickle=False)
        fields = index.dtype.names or ()
        if index.shape != () or "version" not in fields or int(index["version"]) != FORMAT_VERSION:
            return f"{index_path.name} is not a version-{FORMAT_VERSION} pack index"
        sha, mtime_ns = _manifest_fingerprint(manifest_path)
        _, entries = read_manifest(manifest_path)
        stat = data_path.stat()
    except (OSError, ValueError, EOFError) as exc:  # ManifestError is a ValueError
        return f"cannot read the pack ({type(exc).__name__}: {exc})"
    if index["lengths"].shape[0] != len(entries):
        return f"it holds {index['lengths'].shape[0]} records, the manifest {len(entries)}"
    if index["manifest_sha256"].item() != sha:
        return f"{manifest_path.name} changed since it was packed"
    if int(index["manifest_mtime_ns"]) != mtime_ns:
        return f"{manifest_path.name} was rewritten since it was packed"
    if int(index["data_size"]) != stat.st_size or int(index["data_mtime_ns"]) != stat.st_mtime_ns:
        return f"{data_path.name} does not belong to {index_path.name}"
    return None


class PackedRecords:
    """Read-only access to a current pack: ``read(i)`` and ``crop(i, start, length)`` return copies.

    The data file is memory-mapped lazily and left out of pickles, so a dataset holding this
    object can be sent to data-loader workers without copying the array.
    """

    def __init__(self, data_path: str | Path, index_path: str | Path):
        self.data_path = Path(data_path)
        index = np.load(index_path, allow_pickle=False)
        self.offsets: np.ndarray = index["offsets"]
        self.lengths: np.ndarray = index["lengths"]
        self.sample_rates: np.ndarray = index["sample_rates"]
        self.lead_present: np.ndarray = index["lead_present"].astype(bool)
        self._data_stat = (int(index["data_size"]), int(index["data_mtime_ns"]))
        self._data: np.ndarray | None = None

    @classmethod
    def for_manifest(cls, manifest_path: str | Path) -> PackedRecords | None:
        """The current pack beside ``manifest_path``; None (with a warning if one is stale) otherwise."""
        data_path, index_path = pack_paths(manifest_path)
        if not data_path.exists() and not index_path.exists():
            return None
        problem = pack_problem(manifest_path)
        if problem is not None:
            logger.warning(
                "not using the pack of %s: %s; reading the .mat files instead (rebuild it with: goodviews-pack %s)",
                manifest_path,
                problem,
                Path(manifest_path).parent,
            )
            return None
        return cls(data_path, index_path)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None
        return state

    @property
    def data(self) -> np.ndarray:
        """The flat array of every record's block, mapped on first use (as a plain ndarray:
        slicing an ``np.memmap`` runs Python code per slice).

        A data-loader worker maps it long after the index was checked; a pack rebuilt meanwhile
        is refused rather than read with the old index.
        """
        if self._data is None:
            stat = os.stat(self.data_path)
            if (stat.st_size, stat.st_mtime_ns) != self._data_stat:
                raise RecordError(self.data_path, "the pack was rebuilt after its index was read; restart the run")
            self._data = np.asarray(np.load(self.data_path, mmap_mode="r", allow_pickle=False))
        return self._data

    def crop(self, index: int, start: int, length: int) -> np.ndarray:
        """A C-contiguous float32 copy of samples ``[start, start + length)`` of record ``index``."""
        n_samples = self.lengths.item(index)
        if start < 0 or length < 0 or start + length > n_samples:
            raise IndexError(
                f"samples [{start}, {start + length}) outside record {index} of {self.data_path} ({n_samples} samples)"
            )
        if length == n_samples:
            return self.read(index)
        offset = self.offsets.item(index)
        record = self.data[offset : offset + N_LEADS * n_samples].reshape(N_LEADS, n_samples)
        return np.array(record[:, start : start + length])

    def read(self, index: int) -> np.ndarray:
        """Record ``index`` whole, as a C-contiguous float32 [12, T] copy."""
        offset, n_samples = self.offsets.item(index), self.lengths.item(index)
        return np.array(self.data[offset : offset + N_LEADS * n_samples]).reshape(N_LEADS, n_samples)


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
