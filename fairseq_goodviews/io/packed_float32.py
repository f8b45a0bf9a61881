"""The first pack format, read only: one float32 file per split (packs written before 2026-12-07).

``<split>.packed.npy`` is one flat float32 array holding each record's ``feats`` in manifest
order, each as its own row-major [12, T] block: record ``i`` is
``data[offsets[i]:offsets[i] + 12 * lengths[i]].reshape(12, lengths[i])``.
``<split>.packed_index.npy`` holds a single structured value with each record's offset, length,
sample rate and lead-present mask, plus what the pack was built from: the manifest's SHA-256 and
modification time, and the data file's size and modification time. Such a pack is still read
while it matches its manifest; ``goodviews-pack`` replaces it with the sharded format of
:mod:`fairseq_goodviews.io.packed`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import numpy as np

from fairseq_goodviews.io.records import N_LEADS, RecordError

PACK_SUFFIX = ".packed.npy"
INDEX_SUFFIX = ".packed_index.npy"
FORMAT_VERSION = 1


def float32_file_paths(manifest_path: str | Path) -> tuple[Path, Path]:
    """``(<split>.packed.npy, <split>.packed_index.npy)`` beside the manifest ``<split>.tsv``."""
    manifest_path = Path(manifest_path)
    stem = manifest_path.parent / manifest_path.stem
    return Path(f"{stem}{PACK_SUFFIX}"), Path(f"{stem}{INDEX_SUFFIX}")


def float32_file_problem(manifest_path: Path, sha: bytes, mtime_ns: int, n_records: int) -> str | None:
    """Why this format's pack beside ``manifest_path`` (whose SHA-256 hex, modification time and
    record count are given) cannot be used, or None if it is current."""
    data_path, index_path = float32_file_paths(manifest_path)
    if not data_path.is_file() or not index_path.is_file():
        return f"{data_path.name} and {index_path.name} do not both exist"
    try:
        index = np.load(index_path, allow_pickle=False)
        fields = index.dtype.names or ()
        if index.shape != () or "version" not in fields or int(index["version"]) != FORMAT_VERSION:
            return f"{index_path.name} is not a version-{FORMAT_VERSION} pack index"
        stat = data_path.stat()
    except (OSError, ValueError, EOFError) as exc:
        return f"cannot read the pack ({type(exc).__name__}: {exc})"
    mismatch = manifest_mismatch(index, manifest_path, n_records, sha, mtime_ns)
    if mismatch:
        return mismatch
    if int(index["data_size"]) != stat.st_size or int(index["data_mtime_ns"]) != stat.st_mtime_ns:
        return f"{data_path.name} does not belong to {index_path.name}"
    return None


def manifest_mismatch(index: np.ndarray, manifest_path: Path, n_records: int, sha: bytes, mtime_ns: int) -> str | None:
    """Why a pack index (either format) does not belong to the manifest as it is now, or None:
    another record count, other content (``sha``) or a rewrite (``mtime_ns``)."""
    if index["lengths"].shape[0] != n_records:
        return f"it holds {index['lengths'].shape[0]} records, the manifest {n_records}"
    if index["manifest_sha256"].item() != sha:
        return f"{manifest_path.name} changed since it was packed"
    if int(index["manifest_mtime_ns"]) != mtime_ns:
        return f"{manifest_path.name} was rewritten since it was packed"
    return None


class Float32FilePack:
    """Read-only access to a current pack of this format: ``read(i)`` and ``crop(i, start, length)``
    return float32 copies. The data file is memory-mapped lazily and left out of pickles."""

    def __init__(self, manifest_path: str | Path):
        self.data_path, index_path = float32_file_paths(manifest_path)
        self.location = self.data_path
        index = np.load(index_path, allow_pickle=False)
        self.offsets: np.ndarray = index["offsets"]
        self.lengths: np.ndarray = index["lengths"]
        self.sample_rates: np.ndarray = index["sample_rates"]
        self.lead_present: np.ndarray = index["lead_present"].astype(bool)
        self._data_stat = (int(index["data_size"]), int(index["data_mtime_ns"]))
        self._data: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None
        return state

    @property
    def data(self) -> np.ndarray:
        """The flat array, mapped on first use; a pack rebuilt since its index was read is refused."""
        if self._data is None:
            stat = os.stat(self.data_path)
            if (stat.st_size, stat.st_mtime_ns) != self._data_stat:
                raise RecordError(self.data_path, "the pack was rebuilt after its index was read; restart the run")
            self._data = np.asarray(np.load(self.data_path, mmap_mode="r", allow_pickle=False))
        return self._data

    def crop(self, index: int, start: int, length: int) -> np.ndarray:
        """A C-contiguous float32 [12, length] copy of samples ``[start, start + length)`` of record ``index``."""
        n_samples = self.lengths.item(index)
        if start < 0 or length < 0 or start + length > n_samples:
            raise IndexError(
                f"samples [{start}, {start + length}) outside record {index} of {self.data_path} ({n_samples} samples)"
            )
        offset = self.offsets.item(index)
        record = self.data[offset : offset + N_LEADS * n_samples].reshape(N_LEADS, n_samples)
        return np.array(record[:, start : start + length])

    def read(self, index: int) -> np.ndarray:
        """Record ``index`` whole, as a C-contiguous float32 [12, T] copy."""
        return self.crop(index, 0, self.lengths.item(index))
