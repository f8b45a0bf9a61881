"""The step rate: training steps on fixed batches, records/s with their TFLOP/s, per batch size."""

import pytest

from fairseq_goodviews.perf import PerfSettingsError, step_rate


def test_each_batch_size_gets_a_row_scored_with_the_models_flops(tiny_dataset, one_thread):
    lines = []
    result = step_rate.run(
        tiny_dataset, "simclr", "cpu_small", [4, 6], "cpu", False, True, False, 1, 2, 500, report=lines.append
    )
    assert [row["batch_size"] for row in result["rows"]] == [4, 6]
    assert (result["views_per_record"], result["view_samples"]) == (2, 500)
    for row in result["rows"]:
        assert row["tflops"] == pytest.approx(row["records_per_s"] * result["gflop_per_record"] / 1e3)
        assert row["share_of_peak"] is None and row["peak_memory_gib"] is None  # the CPU
    assert lines[0].startswith("simclr (cpu_small)") and "cudnn.benchmark" in lines[0] and len(lines) == 3


@pytest.mark.slow
def test_w2v_cmsc_rlm_steps_with_its_own_criterion(tiny_dataset, one_thread):
    result = step_rate.run(tiny_dataset, "w2v_cmsc_rlm", "w2v_cpu_small", [4], "cpu", False, False, False, 1, 1)
    assert result["views_per_record"] == 2 and result["rows"][0]["records_per_s"] > 0


def test_no_timed_steps_is_refused(tiny_dataset):
    with pytest.raises(PerfSettingsError, match="--steps"):
        step_rate.run(tiny_dataset, "simclr", "cpu_small", [4], "cpu", False, False, False, 1, 0)
