"""Atomic file writes: write to a temporary name in the same folder, then rename over the target.

A written file is durable once the write returns: its data are flushed to the disk (``fsync``)
before the rename, and its folder after it, so a power loss leaves the previous file or the new
one, never an empty or partial one, and a manifest, journal or result that says "done" is on the
disk. Many small files written in a row (a preparation's records) can be written with
``durable=False`` and flushed together afterwards (:func:`make_durable`): a kill still leaves
the previous file or the new one, a power loss before the flush possibly neither. The temporary file is created with mode ``0o666`` less the process's umask, as by a plain
``open``.

A folder that cannot take the file (the path of a folder is a file, no permission, read-only
file system) raises :class:`OutputPathError`, an :class:`OSError` whose message is one line
naming the folder and the problem, before anything is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from fairseq_goodviews.errors import GoodviewsError


class OutputPathError(GoodviewsError, OSError):
    """An output folder that cannot be created or written; the message names it."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # raised in a worker process, re-raised here
        return type(self), (self.path, self.problem)


def describe_os_error(exc: OSError) -> str:
    """A few words on why a write failed (``permission denied``, ``no space left on the device``)."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or type(exc).__name__


def _blocking_file(folder: Path) -> Path | None:
    """The file (not folder) at ``folder`` or at one of its parents, if any."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def ensure_writable_dir(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) if needed and check that files can be created in it.

    The check creates and removes a temporary file, so it holds for every user (root included)
    and file system. Raises :class:`OutputPathError` naming the folder otherwise.
    """
    folder = Path(folder)
    blocking = _blocking_file(folder)
    if blocking is not None:
        where = "is a file" if blocking == folder else f"is under {blocking}, which is a file"
        raise OutputPathError(folder, f"the output folder {where}, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(folder, f"cannot write to the output folder ({describe_os_error(exc)})") from None
    return folder


def _create_temporary(folder: Path, name: str) -> Path:
    """Create an empty, new file beside ``folder / name``; the kernel applies the umask to ``0o666``."""
    tmp = folder / f".{name}.{secrets.token_hex(8)}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666))
    return tmp


def _fsync(path: Path, flags: int) -> None:
    """Flush the data of the file or folder at ``path``, opened with ``flags``, to the disk."""
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename in it) to the disk; a file system that cannot is left as is."""
    try:
        _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path``, durably, only if the block succeeds.

    A crash (or kill) inside the block leaves ``path`` untouched and no partial file under its
    name; the temporary file is removed on error. After the block the file is flushed to the
    disk, renamed over ``path``, and the rename flushed too; with ``durable=False`` it is renamed
    without either flush, and the caller makes it durable later (:func:`make_durable`). A folder
    that cannot take the file raises :class:`OutputPathError` before the block runs.
    """
    path = Path(path)
    folder = path.parent
    blocking = _blocking_file(folder)
    if blocking is not None:
        raise OutputPathError(folder, f"cannot write {path.name}: {blocking} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(folder, path.name)
    except OSError as exc:
        raise OutputPathError(folder, f"cannot write {path.name} ({describe_os_error(exc)})") from None
    try:
        yield tmp
        if durable:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_folder(folder)


@functools.lru_cache(maxsize=1)
def _syncfs() -> Callable[[int], int] | None:
    """Linux's ``syncfs`` (flush one file system, waiting for it) from the C library, or None."""
    if not sys.platform.startswith("linux"):
        return None
    return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)


def make_durable(folder: str | Path, files: Iterable[str | Path]) -> None:
    """Flush ``files``, written in ``folder`` with ``atomic_path(..., durable=False)``, and their
    renames to the disk: with one ``syncfs`` of the folder's file system on Linux (one flush
    however many files), else with an ``fsync`` of each file and then of the folder."""
    syncfs = _syncfs()
    if syncfs is not None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        _fsync(Path(path), os.O_RDONLY)
    _fsync_folder(Path(folder))


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open`` that writes through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle


def json_safe(value: Any) -> Any:
    """``value`` with every NaN (an undefined metric) replaced by None, so the JSON is standard."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: json_safe(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, payload) -> None:
    """Write ``payload`` as JSON atomically; undefined metrics (NaN) become null."""
    with atomic_open(path) as handle:
        json.dump(json_safe(payload), handle, indent=2, sort_keys=True, default=float)
