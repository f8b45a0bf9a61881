"""Host memory of training processes: glibc's malloc keeps freed blocks for reuse.

glibc serves a request of at least ``M_MMAP_THRESHOLD`` bytes with a fresh ``mmap`` and returns it
to the operating system when freed, and gives the top of its heap back once more than
``M_TRIM_THRESHOLD`` bytes there are free; memory taken back is faulted in again, page by page, at
the next use. Both thresholds start at 128 KiB and grow with the sizes of the blocks the process
has freed so far, so how many of a training step's tensors (a few to tens of MiB each on the CPU)
pay those page faults at every step depends on the process's allocation history: two identical
CPU training runs can differ in speed by several percent, and the kernel time of such a run is
several times that of a run whose tensors stay in the heap (README, "Performance").

:func:`keep_freed_host_memory` fixes the thresholds at glibc's largest mmap threshold (32 MiB on
64-bit systems) and a 1 GiB trim threshold, so a step's tensors are reused from the heap. Only
training processes call it: the training tasks when fairseq's training command sets them up
(:func:`training_process`), and the throughput benchmark's training loops. Evaluation commands
and a user's own Python session keep glibc's defaults. It changes nothing where the C library is
not glibc or another allocator is preloaded (an ``LD_PRELOAD`` naming ``malloc``), and the user
opts out with ``GOODVIEWS_GLIBC_MALLOC_TUNING=0``, with any environment variable whose name starts
with ``MALLOC_`` (glibc's own malloc settings, such as ``MALLOC_ARENA_MAX``) or with a
``GLIBC_TUNABLES`` that sets a ``glibc.malloc`` tunable.
"""

import ctypes
import logging
import os
import platform
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

OPT_OUT_VARIABLE = "GOODVIEWS_GLIBC_MALLOC_TUNING"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's maximum on 64-bit systems (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 2**30
USER_SETTINGS_PREFIX = "MALLOC_"  # glibc reads its malloc settings from MALLOC_* variables
# fairseq's training commands and goodviews-train: console scripts, and the modules run by
# ``python -m`` or torchrun (the last parts of their paths).
_TRAINING_SCRIPTS = frozenset({"fairseq-hydra-train", "fairseq-train", "goodviews-train"})
_TRAINING_MODULES = (
    ("fairseq_cli", "hydra_train.py"),
    ("fairseq_cli", "train.py"),
    ("fairseq_goodviews", "cli", "train.py"),
)

_applied: bool | None = None


def _reason_to_leave_alone() -> str | None:
    if os.environ.get(OPT_OUT_VARIABLE, "1") == "0":
        return f"{OPT_OUT_VARIABLE}=0"
    user = sorted(name for name in os.environ if name.startswith(USER_SETTINGS_PREFIX))
    if user:
        return f"{user[0]} is set"
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets a glibc.malloc tunable"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "another allocator is preloaded"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    return None


def training_process() -> bool:
    """Whether this process runs a training command (``fairseq-hydra-train``, ``fairseq-train``,
    ``goodviews-train``).

    Told by the program it was started as (``sys.argv[0]``), which is the console script, or
    ``fairseq_cli/hydra_train.py`` (``train.py``, or this package's ``cli/train.py``) under
    ``python -m`` or ``torchrun -m``; the processes fairseq spawns for distributed training inherit it.
    """
    program = Path(sys.argv[0] if sys.argv else "")
    return program.name in _TRAINING_SCRIPTS or any(program.parts[-len(m) :] == m for m in _TRAINING_MODULES)


def keep_freed_host_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (once); whether they are set."""
    global _applied
    if _applied is not None:
        return _applied
    reason = _reason_to_leave_alone()
    if reason is None:
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            reason = "libc.so.6 has no mallopt"
        else:
            if (
                mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1
                or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1
            ):
                reason = "mallopt refused the thresholds"
    _applied = reason is None
    if _applied:
        logger.info(
            "glibc malloc: freed blocks below 32 MiB stay in the heap for reuse "
            f"(set {OPT_OUT_VARIABLE}=0 for glibc's defaults)"
        )
    else:
        logger.info(f"glibc malloc left at its settings: {reason}")
    return _applied
