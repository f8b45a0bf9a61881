"""glibc keeps a training step's freed tensors for reuse instead of faulting them in again, in
training processes only, unless the user opts out."""

import os
import platform
import subprocess
import sys

import pytest

from fairseq_goodviews import host_memory
from fairseq_goodviews.host_memory import OPT_OUT_VARIABLE

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

# A "training step" of thirty 5 MiB tensors, allocated, written and freed five times; the page
# faults of steps 3-5 are printed.
STEPS = """
import resource
import numpy as np
faults = []
for step in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [np.ones(5 * 2**20 // 8) for _ in range(30)]
    del tensors
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[2:]))
"""
TUNE = "from fairseq_goodviews.host_memory import keep_freed_host_memory\nprint(keep_freed_host_memory())\n"
BUILD_TASK = (
    "from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask\n"
    "EcgPretrainingTask(EcgPretrainingConfig())\n"
)
PAGES_PER_STEP = 30 * 5 * 2**20 // os.sysconf("SC_PAGE_SIZE")
# What a user may have set that changes glibc's allocation: none of it reaches the child unless given.
USER_SETTINGS = ("MALLOC_", OPT_OUT_VARIABLE, "GLIBC_TUNABLES", "LD_PRELOAD")


def _run(command: list[str], **environment: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(USER_SETTINGS)}
    out = subprocess.run(command, env={**env, **environment}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _tuned_steps(**environment: str) -> tuple[bool, int]:
    applied, faults = _run([sys.executable, "-c", TUNE + STEPS], **environment)
    return applied == "True", int(faults)


def test_freed_tensors_are_reused_without_page_faults():
    applied, tuned = _tuned_steps()
    left_alone, defaults = _tuned_steps(**{OPT_OUT_VARIABLE: "0"})
    assert applied and not left_alone
    assert defaults > PAGES_PER_STEP, "glibc's defaults give memory back and fault it in again"
    assert tuned < 0.01 * PAGES_PER_STEP


@pytest.mark.parametrize(
    "setting",
    [
        {OPT_OUT_VARIABLE: "0"},
        {"MALLOC_ARENA_MAX": "2"},
        {"MALLOC_MMAP_MAX_": "65536"},
        {"MALLOC_TRIM_THRESHOLD_": "131072"},
        {"MALLOC_TOP_PAD_": "0"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
        {"LD_PRELOAD": "libjemalloc.so.2"},  # another allocator (glibc warns if it is not installed)
    ],
    ids=lambda setting: "=".join(*setting.items()),
)
def test_each_opt_out_leaves_glibc_alone(setting):
    applied, _ = _tuned_steps(**setting)
    assert not applied


def test_other_glibc_tunables_do_not_opt_out():
    applied, _ = _tuned_steps(GLIBC_TUNABLES="glibc.rtld.optional_static_tls=1024")
    assert applied


def test_building_a_task_outside_training_leaves_glibc_alone():
    """Evaluation commands and a user's Python session build tasks too."""
    (faults,) = _run([sys.executable, "-c", BUILD_TASK + STEPS])
    assert int(faults) > 0.1 * PAGES_PER_STEP


def test_building_a_task_in_the_training_command_keeps_freed_memory(tmp_path):
    script = tmp_path / "fairseq-hydra-train"  # as the console script runs it, or torchrun its workers
    script.write_text(BUILD_TASK + STEPS)
    (faults,) = _run([sys.executable, str(script)])
    assert int(faults) < 0.01 * PAGES_PER_STEP


@pytest.mark.parametrize(
    "program, training",
    [
        ("/venv/bin/fairseq-hydra-train", True),
        ("/venv/bin/fairseq-train", True),
        ("/venv/lib/python3.11/site-packages/fairseq_cli/hydra_train.py", True),  # python -m, torchrun -m
        ("/venv/lib/python3.11/site-packages/fairseq_cli/train.py", True),
        ("/venv/bin/goodviews-train", True),
        ("/venv/lib/python3.11/site-packages/fairseq_goodviews/cli/train.py", True),  # python -m
        ("/home/me/cli/train.py", False),
        ("/venv/bin/goodviews-evaluate", False),
        ("/venv/lib/python3.11/site-packages/fairseq_cli/validate.py", False),
        ("/home/me/train.py", False),
        ("-c", False),
        ("", False),  # the interactive interpreter
    ],
)
def test_training_process_is_told_by_the_program_run(monkeypatch, program, training):
    monkeypatch.setattr(sys, "argv", [program, "--config-dir", "x"])
    assert host_memory.training_process() is training


def test_no_program_is_not_training(monkeypatch):
    monkeypatch.setattr(sys, "argv", [])  # an interpreter embedded in another program
    assert not host_memory.training_process()
