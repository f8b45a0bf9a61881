"""The throughput benchmark's time slices: a stopped loop makes no progress, and a loop's rate
counts only its own running time."""

import re
import sys
import time

import pytest

from fairseq_goodviews.perf.training_throughput import _BARE_UPDATE, _TrainingProcess

# A stand-in training loop: one "update" every 20 ms of its own running time.
TICKING_LOOP = """
import time
n = 0
while True:
    time.sleep(0.02)
    n += 1
    print(f"bare_update {n}", flush=True)
"""


def test_time_slices_measure_each_loop_over_its_own_running_time(tmp_path):
    loops = [_TrainingProcess(name, [sys.executable, "-c", TICKING_LOOP], _BARE_UPDATE, tmp_path, {}) for name in "ab"]
    try:
        for loop in loops:
            loop.run_until(5, timeout=60)
        for _ in range(4):
            for loop in loops:
                loop.run_slice(0.5)
        paused_at = loops[0].updates
        time.sleep(0.5)
        assert loops[0].updates == paused_at, "a stopped loop makes no progress"
        loops[0].run_until(paused_at + 25, timeout=60, timed=True)  # a fixed number of updates, timed
    finally:
        for loop in loops:
            loop.close()
    for loop in loops:
        rate = loop.samples_per_second(range(4), batch_size=1)
        # 50 updates/s while running (a little less: printing and waking up cost time); with the
        # other loop's slices counted as its own it would be about half that
        assert 35 < rate <= 51, rate
    assert 35 < loops[0].samples_per_second(range(4, 5), batch_size=1) <= 51


def test_a_loop_that_exits_is_reported_with_its_output(tmp_path):
    loop = _TrainingProcess(
        "broken", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"], _BARE_UPDATE, tmp_path, {}
    )
    try:
        with pytest.raises(RuntimeError, match=re.escape("the broken loop exited (3)")) as error:
            loop.run_until(5, timeout=60)
        assert "bad config" in str(error.value)
    finally:
        loop.close()
