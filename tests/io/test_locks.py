"""One process at a time in an output folder (or shared holders together): one refused is one line naming the lock file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.locks import exclusive_lock, shared_lock
from fairseq_goodviews.table1.execute import exclusive
from fairseq_goodviews.table1.plan import BenchmarkError


class BusyError(GoodviewsError, RuntimeError):
    """The caller's own error type."""


def test_a_second_process_is_refused_until_the_holder_dies(tmp_path):
    lock_file = tmp_path / "lock"
    holder = textwrap.dedent(f"""
        import time
        from fairseq_goodviews.io.locks import exclusive_lock
        with exclusive_lock({str(lock_file)!r}, "busy", RuntimeError):
            print("held", flush=True)
            time.sleep(120)
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    try:
        assert process.stdout.readline() == "held\n"
        with pytest.raises(BusyError) as refused:
            with exclusive_lock(lock_file, f"another preparation is writing {tmp_path}", BusyError):
                pytest.fail("entered a lock another process holds")
        assert str(refused.value) == f"{lock_file}: another preparation is writing {tmp_path}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with exclusive_lock(lock_file, "busy", BusyError):  # a killed holder leaves the lock free
        pass


def test_the_lock_is_free_again_after_the_block(tmp_path):
    lock_file = tmp_path / "lock"
    with exclusive_lock(lock_file, "busy", BusyError):
        with pytest.raises(BusyError, match=rf"^{lock_file}: busy$"):
            with exclusive_lock(lock_file, "busy", BusyError):
                pass
    with pytest.raises(ValueError):
        with exclusive_lock(lock_file, "busy", BusyError):
            raise ValueError("the block failed")
    with exclusive_lock(lock_file, "busy", BusyError):
        pass


def test_a_second_benchmark_in_the_same_folder_is_refused(tmp_path):
    with exclusive(tmp_path / "out"):
        with pytest.raises(BenchmarkError) as refused:
            with exclusive(tmp_path / "out"):
                pass
    assert str(refused.value) == f"{tmp_path / 'out' / '.lock'}: another benchmark is running in {tmp_path / 'out'}"


def test_shared_holders_admit_each_other_and_keep_an_exclusive_one_out(tmp_path):
    lock_file = tmp_path / "lock"
    with shared_lock(lock_file, "a shard", BusyError), shared_lock(lock_file, "a shard", BusyError):
        with pytest.raises(BusyError, match=rf"^{lock_file}: shards are writing$"):
            with exclusive_lock(lock_file, "shards are writing", BusyError):
                pass
    with exclusive_lock(lock_file, "busy", BusyError):
        with pytest.raises(BusyError, match=rf"^{lock_file}: a merge is writing$"):
            with shared_lock(lock_file, "a merge is writing", BusyError):
                pass
    with exclusive_lock(lock_file, "busy", BusyError):  # free again once the shared holders left
        pass
