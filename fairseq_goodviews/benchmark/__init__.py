"""The Good Views benchmark: every strategy x seed, pretrained and probed through fairseq-hydra-train."""
from fairseq_goodviews.benchmark.runner import PRESETS, BenchmarkError, Preset, main, run_benchmark

__all__ = ["PRESETS", "BenchmarkError", "Preset", "main", "run_benchmark"]
