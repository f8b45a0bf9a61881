"""The Table 1 benchmark of the Good Views paper: plan, execute, data, stats, report, run.

Its command, ``goodviews-benchmark``, is :mod:`fairseq_goodviews.cli.benchmark`.
"""

from fairseq_goodviews.table1.plan import PRESETS, BenchmarkError, Preset
from fairseq_goodviews.table1.run import run_benchmark

__all__ = ["PRESETS", "BenchmarkError", "Preset", "run_benchmark"]
