"""Speed and memory benchmarks ("perf"; the Table 1 experiment is ``goodviews-benchmark``).

Each module measures one thing against a reference in the same run and returns its figures as a
JSON-ready dict, side by side as ratios where there is a reference; the ``goodviews-perf``
command (:mod:`fairseq_goodviews.cli.perf`) prints them and writes the JSON.
"""

from fairseq_goodviews.errors import GoodviewsError


class PerfSettingsError(GoodviewsError, ValueError):
    """A benchmark's settings that cannot be measured together, or an input it cannot read, named."""
