"""CPU training runs started from a process that has fairseq imported already.

A ``fairseq-hydra-train`` process spends seconds importing before it reads its config: torch,
fairseq with every one of its tasks, models and criterions (scikit-learn among their imports),
and torch's compiler front end, which building a torch optimiser imports. On a CPU those seconds
are a large share of a linear probe's run, and a benchmark has hundreds of runs.

On the CPU, the benchmark therefore starts each single-process run in a process forked from a
:mod:`multiprocessing` fork server that did those imports once (:data:`PRELOAD`). The run
executes ``fairseq_cli.hydra_train.cli_main``, the function the ``fairseq-hydra-train`` console
script calls, with the same arguments, in the run's folder, with the run's environment and
thread count, its output appended to the run's log; fairseq seeds every generator at the start
of training, so the run trains as a process of its own would. GPU runs (whose processes must
initialise CUDA with their own ``CUDA_VISIBLE_DEVICES``) and ``torchrun`` runs start as processes
of their own, and so does every run of ``goodviews-benchmark --fresh-processes``.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_ready
from pathlib import Path
from typing import Mapping, Sequence

#: What the fork server imports before it forks any run.
PRELOAD = ("fairseq_goodviews.table1.training_imports", __name__)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _train_in_child(argv: Sequence[str], cwd: str, env: Mapping[str, str], log: str, report: Connection) -> None:
    """The forked run: ``fairseq-hydra-train`` ``argv[1:]`` in ``cwd`` with ``env``, output to ``log``;
    sends its CPU time on ``report`` and exits with the training's exit code."""
    code = 1
    try:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        handle = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
        os.close(handle)
        import torch

        threads = env.get("OMP_NUM_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        from fairseq_cli.hydra_train import cli_main

        sys.argv = list(argv)
        try:
            cli_main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # reported in the run's log, as the process's own traceback would be
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        report.send(_cpu_seconds())
        report.close()
    os._exit(code)


_CONTEXT: multiprocessing.context.ForkServerContext | None = None
#: multiprocessing's bookkeeping of started processes is not safe to use from several threads at
#: once: starting a process polls every earlier one, and so does reading a finished run's exit code.
_START_LOCK = threading.Lock()


def _context() -> multiprocessing.context.ForkServerContext:
    global _CONTEXT
    with _START_LOCK:
        if _CONTEXT is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(PRELOAD))
            _CONTEXT = context
    return _CONTEXT


class PreloadedRun:
    """``argv`` (a ``fairseq-hydra-train`` command) running in a process forked from the fork
    server, stopped like a :class:`subprocess.Popen` (``terminate``, ``kill``)."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path):
        context = _context()
        self._report, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_train_in_child, args=(list(argv), str(cwd), dict(env), str(log), sender), daemon=False
        )
        with _START_LOCK:
            self._process.start()
        sender.close()

    def wait(self) -> tuple[int, float]:
        """Wait for the run: its exit code (negative: the signal that ended it) and its CPU time
        (s; NaN when the run died before reporting it)."""
        cpu_time = float("nan")
        try:
            cpu_time = float(self._report.recv())
        except EOFError:
            pass
        wait_for_ready([self._process.sentinel])
        # Reading the exit code consumes the fork server's message: multiprocessing's start() reads
        # it for every finished child too, so two threads reading at once leave one with 255.
        with _START_LOCK:
            self._process.join()
        self._report.close()
        return int(self._process.exitcode), cpu_time

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()
