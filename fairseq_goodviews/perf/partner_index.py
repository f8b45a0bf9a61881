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
``--dim`` dimensions. Peak memory is the process's peak resident set size during the build
(``resource.getrusage``, restarted before it where the kernel allows), which includes the input
vectors and the imported libraries; the increase over the resident size before the build is
reported too (``tracemalloc`` cannot see
torch's allocations, so it is not used). The build's CPU time (all threads) is printed beside the
wall time: on a shared machine the wall time depends on the load, the CPU time much less.

The index is approximate above ``exact_below`` records, so the run also measures, on
``--check`` random anchors compared with every record exactly, the recall of the stored
candidates (of the up to ``max_candidates`` nearest records within the radius, the share found),
the share of anchors with a partner within the radius (found vs true) and how often the
nearest-neighbour fallback is the true nearest neighbour.

**Versus scikit-learn** (``--versus-sklearn``, on by default: it costs a tree build and queries of
a sample): the same vectors and radius go to ``sklearn.neighbors.NearestNeighbors(radius,
algorithm, n_jobs=threads)`` (``--sklearn-algorithm``, kd_tree and ball_tree by default), timed in
the same run after the index. Its ``radius_neighbors`` returns every record within the radius, of
which the index keeps the up to ``max_candidates`` nearest (ties: lower index) per record; both are
compared on ``--sklearn-anchors`` random anchors (the same sample for every algorithm): the recall
of sklearn's exact capped sets by the index and the share of anchors whose partner count agrees.
The full query over every record is run only where the output estimated from the sample (an
int64 index and a float64 distance per neighbour, two arrays per record) stays under
``--sklearn-max-output-mib``; otherwise its time is the sample's scaled to every record, and the
output says so. ``kneighbors(max_candidates + 1)`` filtered by the radius answers the capped
question without the full sets: its time is reported too, measured over every record where that
output fits the same bound and the sample's time scaled to every record is under
``--sklearn-max-query-s``, scaled from the sample otherwise. Each side's
peak memory is the increase of the peak resident size over the resident size before it (the peak is
restarted between them where the kernel allows, see :func:`~fairseq_goodviews.perf.memory.reset_peak_rss`).
The ratios are sklearn's seconds (fit and query of every record) over the index's build seconds.

    goodviews-perf partner-index --out DIR [--records 1000000] [--threads 2] [--distribution normal]
        [--no-versus-sklearn] [--sklearn-algorithm kd_tree] [--sklearn-anchors 2000]
"""

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import NearestNeighbors

from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.perf.memory import peak_rss_mib, reset_peak_rss, rss_mib
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
SKLEARN_ALGORITHMS = ("kd_tree", "ball_tree")
#: radius_neighbors' output: an int64 index and a float64 distance per neighbour, and per queried
#: record two small arrays (their headers, as numpy allocates them).
NEIGHBOUR_BYTES = 16
RECORD_BYTES = 2 * 112


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


def capped_set(distances: np.ndarray, indices: np.ndarray, anchor: int, k: int) -> np.ndarray:
    """The up to ``k`` nearest of one record's exact neighbours (ties: lower index), the record itself left out."""
    keep = indices != anchor
    distances, indices = distances[keep], indices[keep]
    return indices[np.lexsort((indices, distances))][:k]


def agreement_with_exact(
    index: PartnerIndex, anchors: np.ndarray, distances: np.ndarray, indices: np.ndarray
) -> dict[str, float]:
    """Recall by ``index`` of the exact capped sets of ``anchors`` (``radius_neighbors``' object arrays)."""
    k = index.candidates.shape[1]
    found = expected = counts_agree = with_partner = 0
    for anchor, anchor_distances, anchor_indices in zip(anchors, distances, indices, strict=True):
        exact = capped_set(anchor_distances, anchor_indices, anchor, k)
        stored = index.candidates[anchor, : index.n_within[anchor]]
        found += len(np.intersect1d(exact, stored))
        expected += len(exact)
        counts_agree += len(exact) == len(stored)
        with_partner += len(exact) > 0
    return {
        "candidate_recall_vs_sklearn": found / max(expected, 1),
        "partner_count_agreement": counts_agree / max(len(anchors), 1),
        "anchors_with_partner_sklearn": with_partner / max(len(anchors), 1),
    }


def _timed(call):
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def versus_sklearn(
    vectors: np.ndarray,
    index: PartnerIndex,
    build_s: float,
    radius: float,
    anchors: np.ndarray,
    algorithm: str,
    threads: int,
    max_output_mib: float,
    max_query_s: float = 120.0,
) -> dict[str, Any]:
    """sklearn's exact radius search over ``vectors``: fit and query times, memory, agreement, ratios to ``build_s``."""
    n, k = len(vectors), index.candidates.shape[1]
    whole = len(anchors) == n  # the sample is every record: its query is the full one
    restarted = reset_peak_rss()
    before = rss_mib()
    search, fit_s = _timed(lambda: NearestNeighbors(radius=radius, algorithm=algorithm, n_jobs=threads).fit(vectors))
    (distances, indices), sample_s = _timed(lambda: search.radius_neighbors(vectors[anchors], sort_results=True))
    _, knn_sample_s = _timed(lambda: search.kneighbors(vectors[anchors], n_neighbors=min(k + 1, n)))
    peak_increase = max(peak_rss_mib() - before, 0.0)  # the resident size may shrink below the one it started at
    within = float(np.mean([len(found) for found in indices])) - 1.0  # the anchor itself is among them
    output_mib = n * (max(within, 0.0) * NEIGHBOUR_BYTES + RECORD_BYTES) / 2**20
    checked = agreement_with_exact(index, anchors, distances, indices)
    del distances, indices
    full_s = full_peak_increase = None
    if not whole and output_mib <= max_output_mib:
        reset_peak_rss()
        before = rss_mib()
        (distances, indices), full_s = _timed(lambda: search.radius_neighbors(sort_results=True))
        full_peak_increase = max(peak_rss_mib() - before, 0.0)
        checked = agreement_with_exact(index, np.arange(n), distances, indices)
        del distances, indices
    scale = n / len(anchors)
    query_s = sample_s if whole else full_s if full_s is not None else sample_s * scale
    sklearn_s = fit_s + query_s
    knn_all_s = knn_sample_s * scale
    knn_measured, knn_peak_increase = whole, None
    knn_output_mib = n * k * NEIGHBOUR_BYTES / 2**20
    if not whole and knn_output_mib <= max_output_mib and knn_all_s <= max_query_s:
        reset_peak_rss()
        before = rss_mib()
        _, knn_all_s = _timed(lambda: search.kneighbors(n_neighbors=min(k, n - 1)))  # every record, itself left out
        knn_peak_increase = max(peak_rss_mib() - before, 0.0)
        knn_measured = True
    knn_s = fit_s + knn_all_s
    return {
        "algorithm": algorithm,
        "fit_s": fit_s,
        "sample_radius_query_s": sample_s,
        "full_radius_query_measured": whole or full_s is not None,
        "radius_query_all_s": query_s,
        "sklearn_s": sklearn_s,
        "ratio": sklearn_s / build_s,
        "sample_kneighbors_s": knn_sample_s,
        "kneighbors_all_s": knn_all_s,
        "full_kneighbors_measured": knn_measured,
        "full_kneighbors_peak_rss_increase_mb": knn_peak_increase,
        "sklearn_kneighbors_s": knn_s,
        "ratio_kneighbors": knn_s / build_s,
        "peak_rss_increase_mb": peak_increase,
        "full_query_peak_rss_increase_mb": full_peak_increase,
        "peak_restarted": restarted,
        "mean_within_radius": within,
        "estimated_full_output_mib": output_mib,
        "agreement_on": "every record" if whole or full_s is not None else f"{len(anchors)} sampled anchors",
        **checked,
    }


QUALITY = ("candidate_recall", "anchors_with_partner_true", "anchors_with_partner_found", "nearest_neighbour_recall")


def _check_sklearn_settings(algorithms: tuple[str, ...], anchors: int) -> None:
    """:class:`PerfSettingsError` for an unknown scikit-learn algorithm or a sample of no anchors."""
    unknown = [name for name in algorithms if name not in SKLEARN_ALGORITHMS]
    if unknown:
        raise PerfSettingsError(f"--sklearn-algorithm must be among {', '.join(SKLEARN_ALGORITHMS)}, got {unknown}")
    if algorithms and anchors < 1:
        raise PerfSettingsError(f"--sklearn-anchors must be positive, got {anchors}")


def _vectors(
    distribution: str, diagnostics: Path | None, records: int, dim: int, rng: np.random.Generator
) -> np.ndarray:
    """float32 [records, D]: attribute vectors of real Chapman rows (``chapman``) or standard normal ones."""
    if distribution != "chapman":
        return rng.standard_normal((records, dim), dtype=np.float32)
    if diagnostics is None or not diagnostics.is_file():
        raise PerfSettingsError(
            f"--distribution chapman needs --diagnostics (Chapman Diagnostics.xlsx), got {diagnostics}"
        )
    return chapman_vectors(diagnostics, records, rng)


def _sklearn_sample(n_records: int, anchors: int, seed: int) -> np.ndarray:
    """The sorted anchors both sides are queried on: every record when ``anchors`` covers them all."""
    if anchors >= n_records:
        return np.arange(n_records)
    return np.sort(np.random.default_rng([seed, 1]).choice(n_records, size=anchors, replace=False))


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
    sklearn_algorithms: tuple[str, ...] = SKLEARN_ALGORITHMS,
    sklearn_anchors: int = 2000,
    sklearn_max_output_mib: float = 1024.0,
    sklearn_max_query_s: float = 120.0,
) -> dict[str, Any]:
    """Build the index over ``records`` vectors (``chapman`` rows of ``diagnostics``, or ``normal`` of ``dim``
    dimensions); its build time and memory beside the targets, its recall on ``check`` anchors, and
    sklearn's exact search of the same vectors beside it (``sklearn_algorithms``; none: not run)."""
    settings = {name: str(value) for name, value in locals().items()}  # every parameter, as run
    _check_sklearn_settings(sklearn_algorithms, sklearn_anchors)
    rng = np.random.default_rng(seed)
    vectors = _vectors(distribution, diagnostics, records, dim, rng)
    reset_peak_rss()
    rss_before = rss_mib()
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
    sample = _sklearn_sample(len(vectors), sklearn_anchors, seed)
    sklearn_results = [
        versus_sklearn(
            vectors, index, build_s, radius, sample, name, threads, sklearn_max_output_mib, sklearn_max_query_s
        )
        for name in sklearn_algorithms
    ]
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
        "versus_sklearn": {"anchors": len(sample), "results": sklearn_results} if sklearn_results else None,
        "settings": settings,
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
    if result.get("versus_sklearn"):
        lines += ["", *format_versus_sklearn(result)]
    return "\n".join(lines)


def format_versus_sklearn(result: dict[str, Any]) -> list[str]:
    """The index and each sklearn algorithm side by side: seconds, memory, agreement, ratios."""
    versus = result["versus_sklearn"]
    columns = versus["results"]
    fmt = "{:<40}" + "{:>12}" * (1 + len(columns))

    def row(label: str, ours: str, values: list[str]) -> str:
        return fmt.format(label, ours, *values)

    def each(key: str, spec: str) -> list[str]:
        return ["-" if column[key] is None else format(column[key], spec) for column in columns]

    lines = [
        row("versus scikit-learn", "ours", [column["algorithm"] for column in columns]),
        row("build / fit, s", f"{result['build_s']:.2f}", each("fit_s", ".2f")),
        row("radius query of every record, s", "(in build)", each("radius_query_all_s", ".2f")),
        row(
            "  measured (m) or scaled from sample (s)",
            "",
            ["m" if column["full_radius_query_measured"] else "s" for column in columns],
        ),
        row("total, s", f"{result['build_s']:.2f}", each("sklearn_s", ".2f")),
        row("ratio sklearn / ours", "1", each("ratio", ".2f")),
        row("kneighbors(k+1) instead, total, s", "", each("sklearn_kneighbors_s", ".2f")),
        row(
            "  measured (m) or scaled from sample (s)",
            "",
            ["m" if column["full_kneighbors_measured"] else "s" for column in columns],
        ),
        row("  ratio sklearn / ours", "", each("ratio_kneighbors", ".2f")),
        row(
            "peak memory increase (fit, sample), MiB",
            f"{result['build_rss_increase_mb']:.0f}",
            each("peak_rss_increase_mb", ".0f"),
        ),
        row("  full radius query, MiB", "", each("full_query_peak_rss_increase_mb", ".0f")),
        row("  full kneighbors query, MiB", "", each("full_kneighbors_peak_rss_increase_mb", ".0f")),
        row("mean records within radius", "", each("mean_within_radius", ".1f")),
        row("recall of sklearn's capped sets", "", each("candidate_recall_vs_sklearn", ".3f")),
        row("partner count agreement", "", each("partner_count_agreement", ".3f")),
    ]
    agreement = sorted({column["agreement_on"] for column in columns})
    scaled = not all(column["full_radius_query_measured"] for column in columns)
    note = f"compared on {', '.join(agreement)}"
    if scaled:
        output = max(column["estimated_full_output_mib"] for column in columns)
        note += (
            f"; sklearn's radius query of every record not run (its output, estimated {output:,.0f} MiB, is over"
            f" --sklearn-max-output-mib): its time is the {versus['anchors']} anchors' scaled to every record"
        )
    return [*lines, note]
