"""Atomic writes: a folder that cannot take the file is one clear error, and nothing is left behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from fairseq_goodviews.io import atomic
from fairseq_goodviews.io.atomic import (
    OutputPathError,
    atomic_open,
    atomic_path,
    ensure_writable_dir,
    make_durable,
    write_json,
)


def test_atomic_open_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with atomic_open(target) as handle:
        handle.write("a,b\n")
    assert target.read_text() == "a,b\n"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "a,b\n" and [p.name for p in target.parent.iterdir()] == ["table.csv"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_files_get_the_permissions_of_a_plain_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
        with atomic_open(tmp_path / "atomic.txt") as handle:
            handle.write("x")
        write_json(tmp_path / "atomic.json", {"a": 1})
    finally:
        os.umask(previous)
    plain = (tmp_path / "plain.txt").stat().st_mode
    assert (tmp_path / "atomic.txt").stat().st_mode == plain == 0o100666 & ~umask
    assert (tmp_path / "atomic.json").stat().st_mode == plain


def test_a_failed_write_leaves_no_target_and_no_temporary(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "result.json") as handle:
            handle.write('{"half": ')
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []

    def disk_error(fd):
        raise OSError(errno.EIO, "Input/output error")

    (tmp_path / "result.json").write_text("old")
    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError, match="Input/output error"):
        write_json(tmp_path / "result.json", {"new": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    assert (tmp_path / "result.json").read_text() == "old"


def test_the_file_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    target = tmp_path / "train.tsv"
    flushed = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        flushed.append((path, os.fstat(fd).st_size, target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    with atomic_open(target) as handle:
        handle.write("/data/records\n")
    (file_path, size, renamed), (folder, _, after_rename) = flushed
    assert file_path.parent == tmp_path and file_path.name.startswith(".train.tsv.") and not renamed
    assert size == len("/data/records\n")  # flushed once written in full
    assert folder == tmp_path and after_rename
    assert target.read_text() == "/data/records\n"


def _recording_fsync(monkeypatch) -> list[Path]:
    flushed: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        flushed.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return flushed


def test_a_write_left_to_make_durable_is_atomic_without_a_flush(tmp_path, monkeypatch):
    flushed = _recording_fsync(monkeypatch)
    target = tmp_path / "rec.mat"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, durable=False) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["rec.mat"] and target.read_text() == "old"
    with atomic_path(target, durable=False) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["rec.mat"]
    assert flushed == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs is Linux's")
def test_make_durable_flushes_the_file_system_once_on_linux(tmp_path, monkeypatch):
    flushed = _recording_fsync(monkeypatch)
    files = []
    for name in ("a.mat", "b.mat"):
        with atomic_path(tmp_path / name, durable=False) as tmp:
            tmp.write_text(name)
        files.append(tmp_path / name)
    assert atomic._syncfs() is not None
    make_durable(tmp_path, files)  # the real syncfs: no fsync of any file
    assert flushed == []


def test_make_durable_flushes_each_file_then_the_folder_without_syncfs(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_syncfs", lambda: None)  # as on macOS
    files = []
    for name in ("a.mat", "b.mat"):
        with atomic_path(tmp_path / name, durable=False) as tmp:
            tmp.write_text(name)
        files.append(tmp_path / name)
    flushed = _recording_fsync(monkeypatch)
    make_durable(tmp_path, files)
    assert flushed == [*files, tmp_path]


def test_write_json_writes_undefined_metrics_as_null(tmp_path):
    write_json(tmp_path / "m.json", {"auroc": float("nan"), "per_class": [0.5, float("nan")], "n": 3})
    assert json.loads((tmp_path / "m.json").read_text()) == {"auroc": None, "per_class": [0.5, None], "n": 3}


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match=rf"^{blocker}: the output folder is a file, not a folder$"):
        ensure_writable_dir(blocker)
    with pytest.raises(
        OutputPathError,
        match=rf"^{blocker / 'a' / 'b'}: the output folder is under {blocker}, "
        "which is a file, not a folder$",
    ):
        ensure_writable_dir(blocker / "a" / "b")
    with pytest.raises(OutputPathError, match=rf"^{blocker}: cannot write t\.csv: {blocker} is a file"):
        with atomic_open(blocker / "t.csv") as handle:
            handle.write("never")
    assert blocker.read_text() == "x" and sorted(tmp_path.iterdir()) == [blocker]
    assert isinstance(OutputPathError(blocker, "x"), OSError)  # callers catching OSError still do


def test_ensure_writable_dir_creates_and_leaves_no_probe(tmp_path):
    folder = ensure_writable_dir(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_read_only_folder_is_named_as_an_unprivileged_user():
    base = Path(tempfile.mkdtemp(prefix="goodviews-atomic-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        folder = base / "ro"
        folder.mkdir()
        os.chmod(folder, 0o555)
        script = (
            "import sys\nfrom fairseq_goodviews.io.atomic import OutputPathError, atomic_open\n"
            "try:\n    with atomic_open(sys.argv[1]) as h:\n        h.write('x')\n"
            "except OutputPathError as exc:\n    print(exc)\n"
        )
        command = [sys.executable, "-c", script, str(folder / "t.csv")]
        if os.geteuid() == 0:  # root writes anywhere: drop to nobody for the permission check to bite
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop privileges")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
            cwd=str(base),
        )
        assert done.stdout.strip() == f"{folder}: cannot write t.csv (permission denied)", done.stderr
        assert list(folder.iterdir()) == []
    finally:
        os.chmod(base / "ro", 0o755)
        shutil.rmtree(base)
