"""Atomic writes: a folder that cannot take the file is one clear error, and nothing is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from fairseq_goodviews.io.atomic import OutputPathError, atomic_open, ensure_writable_dir


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
