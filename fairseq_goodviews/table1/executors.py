"""What runs a benchmark's runs: this process (``--executor direct``), or submitit jobs on this
machine (``local``) or on a SLURM cluster (``slurm``).

:func:`~fairseq_goodviews.table1.execute.run_plan` decides which run may start (its pretraining
has finished) and collects the results; an executor only starts a run when it has room for it and
returns a :class:`~concurrent.futures.Future` of its result. A run is a picklable call
``work(slot)`` (:func:`~fairseq_goodviews.table1.execute.execute_run` with its arguments bound),
so a submitit job runs exactly what this process would.

- :class:`DirectExecutor`: a thread per run in this process, each run on a slot of its
  :class:`~.placement.DevicePool` (its own GPUs, its share of the cores).
- :class:`SubmititExecutor`: each run one submitit job, its logs in ``runs/<id>/submitit/``. On
  SLURM the job asks the scheduler for its GPUs and cores, at most ``max_parallel`` jobs in
  flight; on this machine (submitit's ``LocalExecutor``) the pool places the jobs as it places
  direct runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import submitit
import torch
from submitit.slurm.slurm import _make_sbatch_string

from fairseq_goodviews.table1.placement import DevicePool, Slot, choose_gpus, job_slot, visible_gpus
from fairseq_goodviews.table1.plan import FINETUNE, PRETRAIN, SUPERVISED, BenchmarkError, RunSpec

#: Kinds of run that train a whole network and so take whole GPUs; the rest (linear probes on a
#: frozen encoder, identification) share a GPU up to ``runs_per_gpu``.
EXCLUSIVE_KINDS = (PRETRAIN, FINETUNE, SUPERVISED)
#: ``hydra`` override that sets a run's number of training processes.
WORLD_SIZE = "++distributed_training.distributed_world_size="

Work = Callable[[Slot], Dict[str, Any]]


def world_size(spec: RunSpec) -> int:
    """Training processes (GPUs) of ``spec``: its ``distributed_world_size`` override, else 1."""
    sizes = [int(o[len(WORLD_SIZE) :]) for o in spec.overrides if o.startswith(WORLD_SIZE)]
    return sizes[-1] if sizes else 1


def needs(spec: RunSpec) -> Tuple[int, bool]:
    """``(gpus, exclusive)`` of ``spec``: its processes' GPUs, and whether it fills them."""
    return world_size(spec), spec.kind in EXCLUSIVE_KINDS


class Executor(Protocol):
    """Starts runs where it has room and hands back the future of each result."""

    #: Whether a run's ``work`` is pickled to another process (it then calls nothing back here).
    remote: bool

    def check(self, spec: RunSpec) -> None:
        """Refuse ``spec`` before anything runs when it could never start (too few GPUs)."""

    def start(self, spec: RunSpec, work: Work) -> Optional[Future]:
        """The future of ``work``'s result, started now; None while there is no room for ``spec``."""

    def stop(self) -> None:
        """Stop what runs (an interrupted benchmark): its runs resume on the next invocation."""

    def close(self) -> None:
        """Wait for the runs' threads; the executor takes no more runs."""


class DirectExecutor:
    """Each run in a thread of this process, on its own slot of ``pool``."""

    remote = False

    def __init__(self, pool: DevicePool) -> None:
        self.pool = pool
        self._threads = ThreadPoolExecutor(max_workers=max(1, pool.capacity))

    def check(self, spec: RunSpec) -> None:
        self.pool.check(needs(spec)[0])

    def start(self, spec: RunSpec, work: Work) -> Optional[Future]:
        slot = self.pool.take(*needs(spec))
        if slot is None:
            return None
        return self._threads.submit(self._run, work, slot)

    def _run(self, work: Work, slot: Slot) -> Dict[str, Any]:
        try:
            return work(slot)
        finally:
            self.pool.give_back(slot)

    def stop(self) -> None:
        """Nothing to do: the signal handler of the benchmark stops the training subprocesses."""

    def close(self) -> None:
        self._threads.shutdown(wait=True)


@dataclass(frozen=True)
class JobSettings:
    """What a submitit job asks for."""

    #: ``slurm`` or ``local`` (submitit's ``AutoExecutor`` cluster).
    cluster: str
    #: The job's time limit in minutes (``--slurm-time``).
    time_min: int = 24 * 60
    partition: Optional[str] = None
    #: GPUs of a run's job (a multi-GPU pretraining asks for its own number).
    gpus_per_run: int = 1
    cpus_per_gpu: int = 8
    #: Jobs in flight at once on SLURM.
    max_parallel: int = 32


@dataclass(frozen=True)
class Launch:
    """Where a benchmark's runs run (``goodviews-benchmark``'s placement and cluster options)."""

    #: ``direct`` (this process starts them), ``local`` or ``slurm`` (submitit jobs).
    executor: str = "direct"
    #: Indices of the GPUs this machine's runs may use (``--gpus``); None: every visible one.
    gpus: Optional[Tuple[int, ...]] = None
    #: Linear probes (and identification) that share one GPU.
    runs_per_gpu: int = 2
    #: GPUs a pretraining may take (``torchrun``), as many as divide its ``update_freq``.
    gpus_per_pretrain: int = 1
    #: The jobs' settings under ``local`` and ``slurm``.
    jobs: JobSettings = JobSettings(cluster="slurm")
    #: Write each unfinished run's sbatch script, submit nothing.
    slurm_dry_run: bool = False
    #: Start every run as a ``fairseq-hydra-train`` process of its own, CPU runs included (else
    #: those fork from a server that has fairseq imported: :mod:`~.preloaded`).
    fresh_processes: bool = False

    def describe(self) -> Dict[str, Any]:
        """The settings as recorded in ``results.json``."""
        return {
            "executor": self.executor,
            "gpus": None if self.gpus is None else list(self.gpus),
            "runs_per_gpu": self.runs_per_gpu,
            "gpus_per_pretrain": self.gpus_per_pretrain,
            "fresh_processes": self.fresh_processes,
            **({"jobs": {**asdict(self.jobs), "cluster": self.executor}} if self.executor != "direct" else {}),
        }


def device_pool(launch: Launch, cpu_jobs: int) -> DevicePool:
    """The pool of this machine: the GPUs of ``launch`` (every visible one by default), its cores,
    ``cpu_jobs`` runs at once where it has no GPU."""
    visible = visible_gpus(os.environ, torch.cuda.device_count())
    return DevicePool(
        choose_gpus(launch.gpus, visible),
        os.cpu_count() or 1,
        runs_per_gpu=launch.runs_per_gpu,
        cpu_jobs=max(1, cpu_jobs),
    )


def build_executor(launch: Launch, runs: Path, cpu_jobs: int) -> Executor:
    """The executor of ``launch`` whose runs live in ``runs``; ``cpu_jobs``: runs at once on a
    machine without GPUs (``--jobs``)."""
    if launch.executor == "direct":
        return DirectExecutor(device_pool(launch, cpu_jobs))
    if launch.executor == "local":
        return SubmititExecutor(replace(launch.jobs, cluster="local"), runs, pool=device_pool(launch, cpu_jobs))
    if launch.executor == "slurm":
        if shutil.which("sbatch") is None:
            raise BenchmarkError("--executor slurm: no sbatch on PATH (run it on the cluster's login node)")
        return SubmititExecutor(replace(launch.jobs, cluster="slurm"), runs)
    raise BenchmarkError(f"unknown executor {launch.executor!r}; choose direct, local or slurm")


def run_job(work: Work, cores: Optional[int]) -> Tuple[str, Any]:
    """What a submitit job runs: ``work`` on every GPU and core of the job (``cores``: the share
    the local executor gave it; None: the job's CPU affinity). A :class:`BenchmarkError` comes
    back as ``("error", message)`` so the benchmark reports its one line, not a traceback."""
    slot = job_slot(os.environ, torch.cuda.device_count(), cores or len(os.sched_getaffinity(0)))
    try:
        return "ok", work(slot)
    except BenchmarkError as exc:
        return "error", str(exc)


class SubmititExecutor:
    """Each run one submitit job whose folder is ``runs/<id>/submitit``; a thread per job waits on it."""

    remote = True

    def __init__(self, settings: JobSettings, runs: Path, pool: Optional[DevicePool] = None, poll_s: float = 2.0):
        if settings.cluster not in ("slurm", "local"):
            raise BenchmarkError(f"unknown submitit cluster {settings.cluster!r}")
        if settings.cluster == "local" and pool is None:
            raise BenchmarkError("the local executor places its jobs with a device pool")
        self.settings = settings
        self.runs = runs
        self.pool = pool
        self.poll_s = poll_s
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._jobs: Dict[str, Any] = {}
        width = pool.capacity if pool is not None else settings.max_parallel
        self._threads = ThreadPoolExecutor(max_workers=max(1, width))

    def check(self, spec: RunSpec) -> None:
        if self.pool is not None:
            self.pool.check(needs(spec)[0])

    def start(self, spec: RunSpec, work: Work) -> Optional[Future]:
        slot = None
        if self.pool is not None:
            slot = self.pool.take(*needs(spec))
            if slot is None:
                return None
        else:
            with self._lock:
                if self._in_flight >= self.settings.max_parallel:
                    return None
                self._in_flight += 1
        return self._threads.submit(self._run, spec, work, slot)

    def _executor(self, spec: RunSpec, slot: Optional[Slot]) -> submitit.Executor:
        folder = self.runs / spec.run_id / "submitit"
        if self.settings.cluster == "local":
            executor = submitit.LocalExecutor(folder=folder)
        else:
            executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executor.update_parameters(**job_parameters(self.settings, spec, slot))
        return executor

    def _run(self, spec: RunSpec, work: Work, slot: Optional[Slot]) -> Dict[str, Any]:
        try:
            job = self._executor(spec, slot).submit(run_job, work, None if slot is None else slot.cores)
            self._jobs[spec.run_id] = job
            while not job.done():
                if self._stopping.wait(self.poll_s):
                    raise BenchmarkError(f"run {spec.run_id}: job {job.job_id} cancelled")
            try:
                status, value = job.result()
            except submitit.core.utils.UncompletedJobError as exc:  # timed out, cancelled, killed
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise BenchmarkError(
                    f"run {spec.run_id}: job {job.job_id} did not finish ({first}); its logs are in {job.paths.folder}"
                ) from None
        finally:
            self._jobs.pop(spec.run_id, None)
            if slot is not None:
                self.pool.give_back(slot)
            else:
                with self._lock:
                    self._in_flight -= 1
        if status == "error":
            raise BenchmarkError(value)
        return value

    def stop(self) -> None:
        self._stopping.set()
        for job in list(self._jobs.values()):
            job.cancel(check=False)

    def close(self) -> None:
        self._threads.shutdown(wait=True)


def job_parameters(settings: JobSettings, spec: RunSpec, slot: Optional[Slot]) -> Dict[str, Any]:
    """submitit's parameters of ``spec``'s job: on the local executor (``LocalExecutor``) the GPUs
    of ``slot`` and the time limit; on SLURM (``AutoExecutor``) the GPUs a run needs, cores per GPU, the
    partition and time limit."""
    if settings.cluster == "local":
        try:
            visible = [int(device) for device in slot.visible]
        except ValueError:
            raise BenchmarkError(
                f"--executor local names GPUs by number; CUDA_VISIBLE_DEVICES holds {','.join(slot.visible)}"
            ) from None
        return {"timeout_min": settings.time_min, "gpus_per_node": len(visible), "visible_gpus": visible}
    processes = world_size(spec)
    gpus = 0 if settings.gpus_per_run == 0 and processes == 1 else max(settings.gpus_per_run, processes)
    parameters: Dict[str, Any] = {
        "name": f"goodviews-{spec.run_id}",
        "timeout_min": settings.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": gpus,
        "cpus_per_task": max(1, gpus) * settings.cpus_per_gpu,
    }
    if settings.partition:
        parameters["slurm_partition"] = settings.partition
    return parameters


def sbatch_script(settings: JobSettings, spec: RunSpec, folder: Path, command: List[str], env: Dict[str, str]) -> str:
    """The sbatch script of ``spec``'s job as submitit renders it (its ``_make_sbatch_string``,
    the function every SLURM submission of submitit uses; submitit has no public dry run) around
    the run's training command ``command`` with the variables ``env``."""
    parameters = job_parameters(settings, spec, None)
    slurm = {
        "job_name": parameters["name"],
        "time": parameters["timeout_min"],
        "nodes": 1,
        "ntasks_per_node": 1,
        "gpus_per_node": parameters["gpus_per_node"],
        "cpus_per_task": parameters["cpus_per_task"],
        "partition": settings.partition,
    }
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in sorted(env.items()))
    line = f"env {exports} {shlex.join(command)}" if exports else shlex.join(command)
    return _make_sbatch_string(command=line, folder=folder, **slurm)
