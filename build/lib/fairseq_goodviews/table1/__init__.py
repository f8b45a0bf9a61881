"""The Table 1 benchmark of the Good Views paper (``goodviews-benchmark``): plan, execute, report, cli."""

from fairseq_goodviews.table1.cli import main, run_benchmark
from fairseq_goodviews.table1.plan import PRESETS, BenchmarkError, Preset

__all__ = ["PRESETS", "BenchmarkError", "Preset", "main", "run_benchmark"]
