"""A preparation worker computes with one BLAS / OpenMP thread: several workers must not each
start a thread per core (two workers on 2 cores prepared slower than one before)."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy  # noqa: F401  (its BLAS is one of the thread pools)
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_info

from fairseq_goodviews.preprocessing import workers


def _thread_counts(_: int) -> list[int]:
    return sorted({pool["num_threads"] for pool in threadpool_info()})


def test_a_worker_process_runs_its_thread_pools_with_one_thread():
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(1, mp_context=context, initializer=workers._init_worker, initargs=(None, None)) as pool:
        assert pool.submit(_thread_counts, 0).result() == [1]
