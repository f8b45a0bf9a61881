"""Resident memory of this process, as the memory benchmarks report it.

``tracemalloc`` cannot see torch's CPU allocations, so the benchmarks read the kernel's figures.
"""

import os
import resource


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mib() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> bool:
    """Restart the peak resident size (``peak_rss_mib``) from the current one; False where the kernel cannot.

    Writing 5 to ``/proc/self/clear_refs`` (Linux) resets the high-water mark ``ru_maxrss`` reads,
    so two measurements in one process each get their own peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True
