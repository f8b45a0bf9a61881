"""One process at a time in an output folder: an exclusive advisory lock on a file in it.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on the lock file: a second process asking for it fails at
once instead of waiting, and the kernel releases it when its holder exits, killed or not, so a
lock file left behind never blocks a later run.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(lock_file: str | Path, held: str, error: Callable[[str], Exception]) -> Iterator[None]:
    """Hold ``lock_file`` (created if missing) for the block, or raise ``error`` if another process holds it.

    The error's message is one line: ``<lock_file>: <held>``, where ``held`` says who holds it
    (e.g. ``another preparation is writing /data/out``).
    """
    with open(lock_file, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"{lock_file}: {held}") from None
        yield
