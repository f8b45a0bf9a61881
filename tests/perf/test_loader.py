"""The loader benchmark: records/s of the training loader alone, and its ratio to a GPU's rate."""

import pytest

from fairseq_goodviews.perf import PerfSettingsError, loader


def test_loader_rate_and_ratio_to_the_gpu(tiny_dataset, one_thread):
    options = {"preset": "cpu_small", "batch_size": 8, "sample_size": 500, "warmup": 1, "batches": 7}
    result = loader.run(tiny_dataset, workers=1, gpu_records_per_s=100.0, **options)
    assert (result["batch_size"], result["sample_size"], result["workers"], result["batches_timed"]) == (8, 500, 1, 7)
    assert result["records_per_s"] > 0 and result["ratio"] == result["records_per_s"] / 100.0
    text = loader.format_result(result)
    assert "1 workers" in text and "(goal >= 1.5x)" in text
    # the preset's workers by default; no GPU rate, no ratio
    alone = loader.run(tiny_dataset, **options)
    assert alone["workers"] == 1 and alone["ratio"] is None and "consumes" not in loader.format_result(alone)


def test_a_batch_larger_than_the_data_is_refused(tiny_dataset):
    with pytest.raises(PerfSettingsError, match="48 training records, fewer than one batch of 64"):
        loader.run(tiny_dataset, preset="cpu_small", batch_size=64, workers=0)
