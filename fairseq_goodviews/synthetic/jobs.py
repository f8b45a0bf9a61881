"""What every synthetic generator shares: the checks of a multi-visit request and the running of
its chunks of work, in this process or in a pool of forked workers (the files do not depend on it)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

import numpy as np

from fairseq_goodviews.synthetic.errors import SyntheticDataError

Job = TypeVar("Job")


def check_multi_visit(count_name: str, count: int, visits: tuple[int, int], seconds: float) -> None:
    """A one-line :class:`SyntheticDataError` unless ``count`` (``count_name``: patients, subjects)
    is at least 1, ``visits`` is (min, max) with 1 <= min <= max and ``seconds`` is at least 1."""
    if count < 1:
        raise SyntheticDataError(f"{count_name} must be at least 1, got {count}")
    if not 1 <= visits[0] <= visits[1]:
        raise SyntheticDataError(f"visits must be (min, max) with 1 <= min <= max, got {visits}")
    if seconds < 1.0:
        raise SyntheticDataError(f"seconds must be at least 1, got {seconds}")


def check_workers(workers: int) -> None:
    if workers < 1:
        raise SyntheticDataError(f"workers must be >= 1, got {workers}")


def chunk_size(n_items: int, workers: int, largest: int) -> int:
    """Items in a chunk: about four chunks a worker, at most ``largest``."""
    return max(1, min(largest, math.ceil(n_items / (4 * workers))))


def visit_chunks(
    seed: int, n_persons: int, visits: tuple[int, int], first: int, workers: int
) -> list[list[tuple[int, int, int]]]:
    """The persons of a multi-visit set as chunks of work (:func:`chunk_size`, at most 50): each
    person as ``(person, number of its first visit, its visits)``, the visit count drawn from
    generator ``[seed, person, 1]`` between ``visits[0]`` and ``visits[1]``, visits numbered from
    ``first`` in person order."""
    counts = [
        int(np.random.default_rng([seed, person, 1]).integers(visits[0], visits[1] + 1)) for person in range(n_persons)
    ]
    firsts = np.cumsum([first, *counts[:-1]])
    persons = [(person, int(firsts[person]), counts[person]) for person in range(n_persons)]
    size = chunk_size(n_persons, workers, largest=50)
    return [persons[k : k + size] for k in range(0, n_persons, size)]


def run_jobs(function: Callable[[Job], list[Any]], jobs: Sequence[Job], workers: int) -> list[Any]:
    """``function`` of every job, in order, their lists concatenated: in this process with one
    worker (or one job), else in a pool of ``workers`` forked processes."""
    if workers == 1 or len(jobs) <= 1:
        results = [function(job) for job in jobs]
    else:
        # fork: workers inherit the imported modules (the package imports fairseq when present).
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(function, jobs))
    return [row for chunk in results for row in chunk]
