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
64-bit systems) and a 1 GiB trim threshold, so a step's tensors are reused from the heap. The
training tasks call it when fairseq sets them up. It changes nothing where the C library is not
glibc, where the user set glibc's ``MALLOC_*`` variables or preloads another allocator, or when
``GOODVIEWS_GLIBC_MALLOC_TUNING=0``.
"""

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

OPT_OUT_VARIABLE = "GOODVIEWS_GLIBC_MALLOC_TUNING"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's maximum on 64-bit systems (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD_BYTES = 2**30
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_applied: bool | None = None


def _reason_to_leave_alone() -> str | None:
    if os.environ.get(OPT_OUT_VARIABLE, "1") == "0":
        return f"{OPT_OUT_VARIABLE}=0"
    user = [name for name in _USER_SETTINGS if name in os.environ]
    if user:
        return f"{user[0]} is set"
    if "malloc" in os.environ.get("LD_PRELOAD", ""):
        return "another allocator is preloaded"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    return None


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
