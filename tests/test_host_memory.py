"""glibc keeps a training step's freed tensors for reuse instead of faulting them in again."""

import os
import platform
import subprocess
import sys

import pytest

from fairseq_goodviews.host_memory import OPT_OUT_VARIABLE

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

# A "training step" of thirty 5 MiB tensors, allocated, written and freed five times; the page
# faults of steps 3-5 are printed with whether the thresholds were set.
STEPS = """
import resource
import numpy as np
from fairseq_goodviews.host_memory import keep_freed_host_memory
applied = keep_freed_host_memory()
faults = []
for step in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [np.ones(5 * 2**20 // 8) for _ in range(30)]
    del tensors
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, sum(faults[2:]))
"""


def _run(**environment: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != OPT_OUT_VARIABLE}
    out = subprocess.run([sys.executable, "-c", STEPS], env={**env, **environment}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


def test_freed_tensors_are_reused_without_page_faults():
    applied, tuned = _run()
    left_alone, defaults = _run(**{OPT_OUT_VARIABLE: "0"})
    assert applied and not left_alone
    pages_per_step = 30 * 5 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert defaults > pages_per_step, "glibc's defaults give memory back and fault it in again"
    assert tuned < 0.01 * pages_per_step


def test_the_users_own_malloc_settings_are_left_alone():
    applied, _ = _run(MALLOC_TRIM_THRESHOLD_="131072")
    assert not applied
