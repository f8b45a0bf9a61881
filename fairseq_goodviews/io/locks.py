"""Who may write an output folder at the same time: advisory locks on a file in it.

A lock is ``flock`` on the lock file, asked without waiting (``LOCK_NB``): a process that cannot
have it fails at once instead of waiting, and the kernel releases it when its holder exits,
killed or not, so a lock file left behind never blocks a later run. An exclusive lock keeps every
other holder out; shared locks admit each other and keep an exclusive one out (the shards of a
preparation share the folder's lock, and its merge takes it exclusively).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def _locked(lock_file: str | Path, operation: int, held: str, error: Callable[[str], Exception]) -> Iterator[None]:
    with open(lock_file, "w") as handle:
        try:
            fcntl.flock(handle, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"{lock_file}: {held}") from None
        yield


def exclusive_lock(
    lock_file: str | Path, held: str, error: Callable[[str], Exception]
) -> contextlib.AbstractContextManager[None]:
    """Hold ``lock_file`` (created if missing) alone for the block, or raise ``error`` if another
    process holds it, shared or not.

    The error's message is one line: ``<lock_file>: <held>``, where ``held`` says who holds it
    (e.g. ``another preparation is writing /data/out``).
    """
    return _locked(lock_file, fcntl.LOCK_EX, held, error)


def shared_lock(
    lock_file: str | Path, held: str, error: Callable[[str], Exception]
) -> contextlib.AbstractContextManager[None]:
    """Hold ``lock_file`` (created if missing) beside other shared holders for the block, or raise
    ``error`` (one line, ``<lock_file>: <held>``) if a process holds it exclusively."""
    return _locked(lock_file, fcntl.LOCK_SH, held, error)
