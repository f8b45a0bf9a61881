"""Percentile bootstrap intervals of metrics, over records or over patients as units.

A replicate draws as many units as the sample has, with replacement, with a generator seeded by
``seed`` (the same seed gives the same intervals). A unit is a record, or a patient where the
caller gives each record's patient: all records of a drawn patient enter the replicate together,
so records of one patient are never treated as independent. A replicate is a weight per record
(how often it was drawn), and the metrics are computed from those weights, vectorised over the
replicates (the ``*_replicates`` functions of :mod:`~fairseq_goodviews.scoring.classification`,
:mod:`~fairseq_goodviews.scoring.cinc2021` and :mod:`~fairseq_goodviews.scoring.retrieval`), so
no record is copied. The interval of a metric is the 2.5th and 97.5th percentile of its
replicates (95 %); replicates where the metric is undefined (e.g. no positive record of a class
drawn) are left out and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: Default number of bootstrap replicates of the scoring commands.
DEFAULT_REPLICATES = 1000
#: Fewer records (or patients) than this draws a warning from the scoring commands.
MIN_RECORDS = 30
#: Replicates computed at once (bounds the [chunk, n] weight matrices).
CHUNK = 100


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval ``[low, high]`` of one metric."""

    low: float
    high: float
    #: ``bootstrap_records`` (every record its own unit) or ``bootstrap_patients`` (patients given;
    #: a record without one is a unit of its own).
    method: str
    #: Units resampled (records or patients).
    n: int
    replicates: int
    #: Replicates in which the metric was undefined (left out of the percentiles).
    undefined: int

    def as_json(self) -> dict[str, Any]:
        return {
            "interval": [self.low, self.high],
            "method": self.method,
            "n": self.n,
            "replicates": self.replicates,
            "undefined_replicates": self.undefined,
        }


def unit_codes(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """Integer unit of each of ``n`` records [n]: its patient's (``groups``), or its own where
    ``groups`` is None or the record's entry is missing (None, NaN, empty)."""
    if groups is None:
        return np.arange(n, dtype=np.int64)
    ids = pd.Series(list(groups), dtype=object)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} patient ids for {n} records")
    known = ids.notna() & (ids.astype(str).str.strip() != "")
    codes = np.full(n, -1, dtype=np.int64)
    codes[known.to_numpy()] = pd.factorize(ids[known].astype(str))[0]
    unknown = ~known.to_numpy()
    codes[unknown] = codes.max(initial=-1) + 1 + np.arange(int(unknown.sum()))
    return codes


def resampling_weights(units: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """How often each record is drawn in each replicate, [replicates, n], when the units
    ``units`` [n] (integer codes 0..U-1) are drawn U times with replacement."""
    n_units = int(units.max(initial=-1)) + 1
    draws = rng.integers(n_units, size=(replicates, n_units))
    flat = (draws + n_units * np.arange(replicates)[:, None]).ravel()
    per_unit = np.bincount(flat, minlength=replicates * n_units).reshape(replicates, n_units)
    return per_unit[:, units].astype(np.float64)


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
    n: int,
    groups: Sequence[Any] | None = None,
    replicates: int = DEFAULT_REPLICATES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """Percentile bootstrap intervals of every metric ``statistic`` returns.

    ``statistic`` maps record weights [b, n] (how often each of the ``n`` records is in each of
    b replicates) to ``{metric: values [b]}`` (NaN where undefined in a replicate). ``groups``
    [n] gives each record's patient (None: records are the units).
    """
    if replicates < 1:
        raise ValueError(f"replicates must be positive, got {replicates}")
    units = unit_codes(groups, n)
    n_units = int(units.max(initial=-1)) + 1
    method = "bootstrap_records" if groups is None else "bootstrap_patients"
    rng = np.random.default_rng(seed)
    values: dict[str, list[np.ndarray]] = {}
    for start in range(0, replicates, CHUNK):
        weights = resampling_weights(units, min(CHUNK, replicates - start), rng)
        for name, value in statistic(weights).items():
            values.setdefault(name, []).append(np.asarray(value, dtype=np.float64))
    tail = 100 * (1 - level) / 2
    intervals = {}
    for name, chunks in values.items():
        replicate_values = np.concatenate(chunks)
        defined = replicate_values[np.isfinite(replicate_values)]
        low, high = np.percentile(defined, [tail, 100 - tail]) if defined.size else (np.nan, np.nan)
        intervals[name] = Interval(
            float(low), float(high), method, n_units, replicates, int(replicate_values.size - defined.size)
        )
    return intervals


def with_interval(value: float, intervals: Mapping[str, Mapping[str, Any]], key: str) -> str:
    """``value`` as ``0.8123 [0.7901, 0.8302]`` where ``intervals`` (JSON form, by metric) has
    ``key``'s interval, else ``0.8123``."""
    if key not in intervals:
        return f"{value:.4f}"
    low, high = intervals[key]["interval"]
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def intervals_note(intervals: Mapping[str, Mapping[str, Any]]) -> str:
    """How the intervals were made, e.g. ``95 % percentile bootstrap, 1000 replicates over 42 patients``."""
    first = next(iter(intervals.values()))
    units = "patients" if first["method"] == "bootstrap_patients" else "records"
    return f"95 % percentile bootstrap, {first['replicates']} replicates over {first['n']} {units}"
