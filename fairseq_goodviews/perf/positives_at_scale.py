"""Positive relation + contrastive loss of one worker at cluster scale, whole relation against local rows.

Simulates one worker of ``--world`` workers (64 GPUs by default) whose global batch holds N views
(N = 8,192 and 16,384: 64 x 64 records x 2 views, and twice that) on the CPU. Per step it builds
the relation for the worker's n = N / world anchors and computes the multi-positive InfoNCE loss of
those anchors against the N gathered embeddings, forward and backward:

* ``old``: the whole [N, N] relation (for ``attributes``, the [N, N] float64 distance matrix),
  then the worker's rows of it, as every worker did before;
* ``new``: only the worker's [n, N] rows (``positive_mask(meta, rows)``).

Each (strategy, N, variant) runs in a fresh process, so its peak memory is its own: reported as
the increase of the process's peak resident set size over the resident size with the inputs
built (``resource.getrusage``; torch's CPU allocations are invisible to ``tracemalloc``). The
time is the median of ``--repeats`` steps. The ``attributes`` vectors are the standardised GE MUSE
measurements of the real Chapman ``Diagnostics.xlsx`` when ``--diagnostics`` (or
``$GOODVIEWS_SHARED_DATA/chapman/Diagnostics.xlsx``) exists, drawn with replacement; else
standard-normal vectors (the JSON says which).

    goodviews-perf positives-at-scale --out DIR [--views 8192 16384] [--world 64]
"""

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce
from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.perf.memory import peak_rss_mib, rss_mib
from fairseq_goodviews.preprocessing.chapman import read_diagnostics
from fairseq_goodviews.strategies import build_strategy
from fairseq_goodviews.strategies.attributes import DEFAULT_ATTRIBUTES
from fairseq_goodviews.strategies.base import ALL, PositiveStrategy

STRATEGIES = ("attributes", "cmsc")
EMBEDDING_DIM = 128
TEMPERATURE = 0.07


def attribute_table(diagnostics: Path | None, records: int, rng: np.random.Generator) -> pd.DataFrame:
    """``records`` rows with the strategy's ``attr_*`` columns: real Chapman rows drawn with replacement, or N(0, 1)."""
    if diagnostics is not None:
        real = read_diagnostics(diagnostics)
        rows = rng.integers(0, len(real), records)
        return pd.DataFrame(
            {f"attr_{name}": pd.to_numeric(real[name], errors="coerce").to_numpy()[rows] for name in DEFAULT_ATTRIBUTES}
        )
    return pd.DataFrame({f"attr_{name}": rng.normal(size=records) for name in DEFAULT_ATTRIBUTES})


def _meta(
    strategy_name: str, views: int, diagnostics: Path | None, seed: int
) -> tuple[PositiveStrategy, dict[str, torch.Tensor]]:
    """The strategy and the gathered metadata of ``views`` views (two per record, as a batch has them)."""
    rng = np.random.default_rng(seed)
    records = views // 2
    record = torch.arange(records).repeat_interleave(2)
    meta: dict[str, torch.Tensor] = {
        "record": record,
        "item": record,
        "segment": torch.arange(2).repeat(records),
        "lead_group": torch.zeros(views, dtype=torch.long),
    }
    table = (
        attribute_table(diagnostics, records, rng)
        if strategy_name == "attributes"
        else pd.DataFrame(index=range(records))
    )
    # Partner draws are not timed: a small exact index is enough to build the strategy.
    strategy = build_strategy(
        {"_name": strategy_name, **({"max_candidates": 4} if strategy_name == "attributes" else {})}, table, table, seed
    )
    for key, values in strategy.record_keys().items():
        meta[key] = torch.as_tensor(values)[record]
    return strategy, meta


def measure(
    strategy_name: str, views: int, world: int, variant: str, repeats: int, diagnostics: Path | None
) -> dict[str, Any]:
    """Median step time and peak memory increase of one (strategy, N, variant), in this process."""
    torch.manual_seed(0)
    strategy, meta = _meta(strategy_name, views, diagnostics, seed=0)
    local = views // world
    offset = (world // 2) * local  # a worker in the middle of the global batch
    candidates = torch.randn(views, EMBEDDING_DIM, requires_grad=True)
    rows = slice(offset, offset + local)
    baseline = rss_mib()
    times: list[float] = []
    positives = 0
    for _ in range(repeats):
        start = time.perf_counter()
        relation = strategy.positive_mask(meta, ALL)[rows] if variant == "old" else strategy.positive_mask(meta, rows)
        loss, n_positive = multi_positive_info_nce(candidates[rows], candidates, relation, offset, TEMPERATURE)
        loss.sum().backward()
        times.append(time.perf_counter() - start)
        positives = int(n_positive.sum())
        del relation, loss
        candidates.grad = None
    return {
        "strategy": strategy_name,
        "views": views,
        "local_views": local,
        "variant": variant,
        "seconds_per_step": statistics.median(times),
        "peak_memory_increase_mib": peak_rss_mib() - baseline,
        "positives": positives,
    }


def _measure_in_child(
    strategy_name: str, views: int, variant: str, world: int, repeats: int, diagnostics: Path | None
) -> dict[str, Any]:
    """:func:`measure` in a fresh process (``goodviews-perf positives-at-scale --one``), so its peak memory is its own."""
    cmd = [sys.executable, "-m", "fairseq_goodviews.cli.perf", "positives-at-scale", "--one", strategy_name]
    cmd += [str(views), variant, "--world", str(world), "--repeats", str(repeats)]
    if diagnostics is not None:
        cmd += ["--diagnostics", str(diagnostics)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(
    *,
    strategies: Sequence[str],
    views: Sequence[int],
    world: int,
    repeats: int,
    diagnostics: Path | None,
    report: Callable[[str], None],
) -> dict[str, Any]:
    """Old against new relation for every strategy and N, each measurement in its own process.

    ``report`` receives a header line, then one line per (strategy, N) as soon as both are measured.
    """
    if any(n % world or n // world < 1 for n in views):
        raise PerfSettingsError(f"every --views value must be a positive multiple of --world ({world})")
    rows = []
    report(
        f"{'strategy':<12}{'N':>7}{'n':>5}  {'old s/step':>11}{'new s/step':>11}{'speed-up':>9}"
        f"  {'old MiB':>9}{'new MiB':>9}"
    )
    for strategy_name in strategies:
        for n in views:
            old, new = (
                _measure_in_child(strategy_name, n, variant, world, repeats, diagnostics) for variant in ("old", "new")
            )
            if old["positives"] != new["positives"]:
                raise RuntimeError(
                    f"{strategy_name} N={n}: old and new relations differ "
                    f"({old['positives']} vs {new['positives']} positives)"
                )
            rows += [old, new]
            report(
                f"{strategy_name:<12}{n:>7}{old['local_views']:>5}  {old['seconds_per_step']:>11.4f}"
                f"{new['seconds_per_step']:>11.4f}{old['seconds_per_step'] / new['seconds_per_step']:>8.1f}x"
                f"  {old['peak_memory_increase_mib']:>9.0f}{new['peak_memory_increase_mib']:>9.0f}"
            )
    return {
        "measurements": rows,
        "attribute_vectors": f"real: {diagnostics}" if diagnostics else "synthetic: standard normal",
        "settings": {
            "world": world,
            "repeats": repeats,
            "embedding_dim": EMBEDDING_DIM,
            "torch_threads": torch.get_num_threads(),
        },
    }
