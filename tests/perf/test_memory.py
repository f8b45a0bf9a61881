"""The resident-memory figures the memory benchmarks report."""

import numpy as np

from fairseq_goodviews.perf.memory import peak_rss_mib, reset_peak_rss, rss_mib


def test_touched_memory_counts_in_the_current_and_the_peak_resident_size():
    before = rss_mib()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page written
    during = rss_mib()
    assert during - before > 48
    assert peak_rss_mib() > during - 4  # the kernel's two counters differ by a few cached pages
    del block


def test_a_reset_peak_forgets_memory_already_given_back():
    block = np.ones(64 * 2**20 // 8)
    del block
    if not reset_peak_rss():
        return  # no /proc/self/clear_refs here: the peak cannot be restarted
    assert peak_rss_mib() < rss_mib() + 32
