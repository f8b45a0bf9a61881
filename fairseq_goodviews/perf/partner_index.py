"""Partner index of the ``attributes`` strategy (radius mode) on 1,000,000 records.

Builds :func:`~fairseq_goodviews.strategies.attributes.build_partner_index` over ``--records``
standardised attribute vectors, as the strategy does for a training split, and reports the build
time and peak memory beside their targets (< 60 s on 2 cores, < 2 GB).

The vectors (``--distribution``): ``chapman`` (the default when the file exists) draws rows of the
real Chapman ``Diagnostics.xlsx`` (``--diagnostics``, default the shared data's) with replacement,
moves every value uniformly within half a unit (the GE MUSE measurements are integers: the draws
spread over their rounding cell instead of piling up as exact duplicates) and encodes them with the
strategy's own :class:`~fairseq_goodviews.strategies.attributes.AttributeScaler` (the default
attributes, angles as (cos, sin): 10 dimensions); ``normal`` is standard-normal vectors of
``--dim`` dimensions. Peak memory is the process's peak resident set size
(``resource.getrusage``), which includes the input vectors and the imported libraries; the
increase over the resident size before the build is reported too (``tracemalloc`` cannot see
torch's allocations, so it is not used). The build's CPU time (all threads) is printed beside the
wall time: on a shared machine the wall time depends on the load, the CPU time much less.

The index is approximate above ``exact_below`` records, so the run also measures, on
``--check`` random anchors compared with every record exactly, the recall of the stored
candidates (of the up to ``max_candidates`` nearest records within the radius, the share found),
the share of anchors with a partner within the radius (found vs true) and how often the
nearest-neighbour fallback is the true nearest neighbour.

    goodviews-perf partner-index --out DIR [--records 1000000] [--threads 2] [--distribution normal]
"""

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.perf.memory import peak_rss_mib
from fairseq_goodviews.preprocessing.chapman import read_diagnostics
from fairseq_goodviews.strategies.attributes import (
    DEFAULT_ATTRIBUTES,
    AttributeScaler,
    AttributesConfig,
    PartnerIndex,
    build_partner_index,
)

TARGET_SECONDS = 60.0
TARGET_MEMORY_MB = 2048.0


def default_diagnostics() -> Path | None:
    """The shared data's real Chapman ``Diagnostics.xlsx``, if ``$GOODVIEWS_SHARED_DATA`` has it."""
    shared = os.environ.get("GOODVIEWS_SHARED_DATA")
    path = Path(shared) / "chapman" / "Diagnostics.xlsx" if shared else None
    return path if path is not None and path.is_file() else None


def chapman_vectors(diagnostics: Path, records: int, rng: np.random.Generator) -> np.ndarray:
    """[records, 10] float32 standardised vectors of real Chapman rows drawn with replacement, each value
    moved uniformly within half a unit; rows without any attribute are left out."""

    real = read_diagnostics(diagnostics)
    values = np.stack(
        [pd.to_numeric(real[name], errors="coerce").to_numpy(dtype=np.float64) for name in DEFAULT_ATTRIBUTES], axis=1
    )
    drawn = values[rng.integers(0, len(values), records)] + rng.uniform(-0.5, 0.5, (records, len(DEFAULT_ATTRIBUTES)))
    table = pd.DataFrame(drawn, columns=[f"attr_{name}" for name in DEFAULT_ATTRIBUTES])
    vectors = AttributeScaler(DEFAULT_ATTRIBUTES, AttributesConfig().angle_attributes).fit(table).transform(table)
    return vectors[~np.isnan(vectors).any(axis=1)]


def check_against_brute_force(
    vectors: np.ndarray, index: PartnerIndex, radius: float, anchors: np.ndarray
) -> dict[str, float]:
    """Recall of the stored candidates and of the nearest neighbour on ``anchors``, by exact comparison."""
    k = index.candidates.shape[1]
    x = torch.from_numpy(vectors).double()
    found = expected = with_true = with_found = nearest_right = 0
    for anchor in anchors:
        distance = torch.cdist(x[anchor : anchor + 1], x, compute_mode="donot_use_mm_for_euclid_dist")[0].numpy()
        distance[anchor] = np.inf
        within = np.flatnonzero(distance <= radius)
        true_candidates = within[np.lexsort((within, distance[within]))][:k]
        stored = index.candidates[anchor, : index.n_within[anchor]]
        found += len(np.intersect1d(true_candidates, stored))
        expected += len(true_candidates)
        with_true += len(within) > 0
        with_found += len(stored) > 0
        nearest_right += distance[index.nearest[anchor]] == distance.min()
    return {
        "candidate_recall": found / max(expected, 1),
        "anchors_with_partner_true": with_true / len(anchors),
        "anchors_with_partner_found": with_found / len(anchors),
        "nearest_neighbour_recall": nearest_right / len(anchors),
    }


QUALITY = ("candidate_recall", "anchors_with_partner_true", "anchors_with_partner_found", "nearest_neighbour_recall")


def run(
    *,
    records: int,
    distribution: str,
    diagnostics: Path | None,
    dim: int,
    radius: float,
    max_candidates: int,
    exact_below: int,
    cell_size: int,
    probes: int,
    threads: int,
    check: int,
    seed: int,
) -> dict[str, Any]:
    """Build the index over ``records`` vectors (``chapman`` rows of ``diagnostics``, or ``normal`` of ``dim``
    dimensions); its build time and memory beside the targets, and its recall on ``check`` anchors."""
    rng = np.random.default_rng(seed)
    if distribution == "chapman":
        if diagnostics is None or not diagnostics.is_file():
            raise PerfSettingsError(
                f"--distribution chapman needs --diagnostics (Chapman Diagnostics.xlsx), got {diagnostics}"
            )
        vectors = chapman_vectors(diagnostics, records, rng)
    else:
        vectors = rng.standard_normal((records, dim), dtype=np.float32)
    rss_before = peak_rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    index = build_partner_index(
        vectors,
        radius,
        max_candidates,
        exact_below=exact_below,
        cell_size=cell_size,
        probes=probes,
        seed=seed,
        threads=threads,
    )
    build_s = time.perf_counter() - start
    build_cpu_s = time.process_time() - cpu_start
    peak_mb = peak_rss_mib()
    anchors = rng.choice(len(vectors), size=min(check, len(vectors)), replace=False)
    settings = {
        "records": records,
        "distribution": distribution,
        "diagnostics": diagnostics,
        "dim": dim,
        "radius": radius,
        "max_candidates": max_candidates,
        "exact_below": exact_below,
        "cell_size": cell_size,
        "probes": probes,
        "threads": threads,
        "check": check,
        "seed": seed,
    }
    return {
        "records": len(vectors),
        "distribution": f"real Chapman rows from {diagnostics}" if distribution == "chapman" else "standard normal",
        "build_s": build_s,
        "target_build_s": TARGET_SECONDS,
        "build_cpu_s": build_cpu_s,
        "peak_rss_mb": peak_mb,
        "rss_before_build_mb": rss_before,
        "build_rss_increase_mb": peak_mb - rss_before,
        "target_memory_mb": TARGET_MEMORY_MB,
        "exact_index": index.exact,
        "records_with_partner_within_radius": float((index.n_within > 0).mean()),
        **check_against_brute_force(vectors, index, radius, anchors),
        "settings": {key: str(value) for key, value in settings.items()},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
    }


def format_result(result: dict[str, Any]) -> str:
    """Build time and peak memory beside their targets, then the recall figures."""
    records, peak_mb = result["records"], result["peak_rss_mb"]
    lines = [
        f"{'partner index, ' + format(records, ',') + ' records':<40}{'measured':>12}{'target':>12}",
        f"{'build time, s':<40}{result['build_s']:>12.1f}{'< ' + format(result['target_build_s'], 'g'):>12}",
        f"{'  CPU time, all threads, s':<40}{result['build_cpu_s']:>12.1f}",
        f"{'peak memory (process RSS), MiB':<40}{peak_mb:>12.0f}{'< ' + format(result['target_memory_mb'], 'g'):>12}",
        f"{'  of which the build, MiB':<40}{result['build_rss_increase_mb']:>12.0f}",
    ]
    lines += [f"{key.replace('_', ' '):<40}{result[key]:>12.3f}" for key in QUALITY]
    return "\n".join(lines)
