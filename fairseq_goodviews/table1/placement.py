"""Where each run of a benchmark runs: its own GPUs, a share of the CPU cores, its data workers.

A :class:`DevicePool` holds the GPUs a benchmark may use and hands out :class:`Slot` s: a
training that fills its GPUs (pretraining, fine-tuning, the supervised baseline) takes whole
GPUs, one or several (a multi-GPU pretraining under ``torchrun``); linear probes and
identification share a GPU, up to ``runs_per_gpu`` of them. Without GPUs the pool hands out
``cpu_jobs`` CPU slots (the runner's ``--jobs``). A slot is given back when its run ends,
finished or failed. The pool only counts; it starts nothing, so it is tested without a GPU.

GPUs are named by their index among the devices the benchmark process sees (``torch.cuda``'s
numbering); a run's ``CUDA_VISIBLE_DEVICES`` holds the ids those indices stand for in the
benchmark's own ``CUDA_VISIBLE_DEVICES`` (so ``--gpus 1`` under ``CUDA_VISIBLE_DEVICES=4,5``
gives the run device 5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from fairseq_goodviews.table1.plan import BenchmarkError


@dataclass(frozen=True)
class Slot:
    """The devices and CPU share of one run."""

    #: Indices of the run's GPUs among those the benchmark process sees (empty: a CPU run).
    devices: Tuple[int, ...]
    #: Their ``CUDA_VISIBLE_DEVICES`` ids (what the run's processes see as ``cuda:0``, ``cuda:1``, ...).
    visible: Tuple[str, ...]
    #: CPU cores of the run, all its processes together.
    cores: int
    #: Whether the run has its GPUs to itself (a training that fills them).
    exclusive: bool = False

    @property
    def processes(self) -> int:
        """Training processes of the run: one per GPU (``torchrun``), one on the CPU."""
        return max(1, len(self.devices))

    @property
    def threads(self) -> int:
        """OMP / torch threads of each training process: on a CPU run every core of the process's
        share; on a GPU the cores left after the data workers (at least 1)."""
        per_process = max(1, self.cores // self.processes)
        if not self.devices:
            return per_process
        return max(1, per_process - (self.data_workers or 0))

    @property
    def data_workers(self) -> Optional[int]:
        """``dataset.num_workers`` of each training process on a GPU (every core of its share but
        one, which feeds the GPU); None on the CPU, where the schedule's own setting stays."""
        if not self.devices:
            return None
        return max(0, self.cores // self.processes - 1)

    @property
    def scoring_device(self) -> str:
        """The torch device in the benchmark process that scores the run (its first GPU)."""
        return f"cuda:{self.devices[0]}" if self.devices else "cpu"

    def environment(self, base: Mapping[str, str]) -> Dict[str, str]:
        """``base`` with the run's GPUs and thread counts: the environment of its processes."""
        threads = str(self.threads)
        return {
            **base,
            "CUDA_VISIBLE_DEVICES": ",".join(self.visible),
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
        }

    def overrides(self) -> List[str]:
        """Hydra overrides of the run's training command that follow from the slot (its data
        workers); they say how the run is executed, not what it is (:mod:`~.resume` ignores them)."""
        workers = self.data_workers
        return [] if workers is None else [f"dataset.num_workers={workers}"]


def visible_gpus(environ: Mapping[str, str], device_count: int) -> List[str]:
    """The ``CUDA_VISIBLE_DEVICES`` ids of the GPUs this process sees, in torch's order: its own
    ``CUDA_VISIBLE_DEVICES`` (when set), else ``0 .. device_count - 1``."""
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(device_count)]
    ids = [item.strip() for item in listed.split(",") if item.strip()]
    return ids[:device_count] if device_count else []


def choose_gpus(requested: Optional[Sequence[int]], visible: Sequence[str]) -> List[Tuple[int, str]]:
    """``(index, id)`` of each GPU the benchmark may use: the ``requested`` indices (``--gpus``), or
    every visible one; an index that is not visible is a :class:`BenchmarkError`."""
    if requested is None:
        return list(enumerate(visible))
    missing = [i for i in requested if not 0 <= i < len(visible)]
    if missing:
        raise BenchmarkError(
            f"--gpus {','.join(map(str, requested))}: no GPU {', '.join(map(str, missing))} "
            f"(this process sees {len(visible)})"
        )
    if len(set(requested)) != len(requested):
        raise BenchmarkError(f"--gpus {','.join(map(str, requested))}: a GPU is named twice")
    return [(i, visible[i]) for i in requested]


def split_update_freq(update_freq: int, wanted: int) -> Tuple[int, int]:
    """``(gpus, update_freq)`` of a pretraining offered ``wanted`` GPUs whose schedule accumulates
    ``update_freq`` batches per update: the most GPUs, up to ``wanted``, that divide
    ``update_freq``, so that batch x GPUs x update_freq stays the schedule's (``w2v_paper``:
    64 x 1 x 8 becomes 64 x 4 x 2 on 4 GPUs; a schedule of 64 x 1 x 1 stays on one GPU)."""
    if wanted < 1 or update_freq < 1:
        raise BenchmarkError(f"GPUs per pretraining ({wanted}) and update_freq ({update_freq}) must be at least 1")
    gpus = max(k for k in range(1, min(wanted, update_freq) + 1) if update_freq % k == 0)
    return gpus, update_freq // gpus


class DevicePool:
    """The GPUs (or CPU slots) of a benchmark, handed out to runs and taken back; thread-safe."""

    def __init__(self, gpus: Sequence[Tuple[int, str]], cpus: int, runs_per_gpu: int = 2, cpu_jobs: int = 1) -> None:
        if runs_per_gpu < 1 or cpu_jobs < 1:
            raise BenchmarkError("--runs-per-gpu and --jobs must be at least 1")
        self.gpus = list(gpus)
        self.cpus = max(1, cpus)
        self.runs_per_gpu = runs_per_gpu
        self.cpu_jobs = cpu_jobs
        self._lock = threading.Lock()
        #: GPU index -> runs on it (an exclusive run counts as ``runs_per_gpu``)
        self._load: Dict[int, int] = {index: 0 for index, _ in self.gpus}
        self._cpu_busy = 0

    @property
    def capacity(self) -> int:
        """How many runs can hold a slot at once (shared runs only)."""
        return len(self.gpus) * self.runs_per_gpu if self.gpus else self.cpu_jobs

    def _cores_per_gpu(self) -> int:
        return max(1, self.cpus // len(self.gpus))

    def check(self, gpus: int) -> None:
        """Refuse a run that needs more GPUs than the pool has (it would wait forever)."""
        if self.gpus and gpus > len(self.gpus):
            raise BenchmarkError(f"a run needs {gpus} GPUs; the benchmark may use {len(self.gpus)} (--gpus)")
        if not self.gpus and gpus > 1:
            raise BenchmarkError(f"a run needs {gpus} GPUs; this benchmark has none (--gpus-per-pretrain 1 on the CPU)")

    def take(self, gpus: int = 1, exclusive: bool = False) -> Optional[Slot]:
        """A slot of ``gpus`` GPUs (``exclusive``: whole GPUs no other run uses; else a share of
        one GPU), or None while none is free. On the CPU every run takes one of the CPU slots."""
        self.check(gpus)
        with self._lock:
            if not self.gpus:
                if self._cpu_busy >= self.cpu_jobs:
                    return None
                self._cpu_busy += 1
                return Slot(devices=(), visible=(), cores=max(1, self.cpus // self.cpu_jobs))
            if exclusive:
                free = [index for index, _ in self.gpus if self._load[index] == 0][:gpus]
                if len(free) < gpus:
                    return None
                for index in free:
                    self._load[index] = self.runs_per_gpu
                return self._slot(free, gpus * self._cores_per_gpu(), exclusive=True)
            if gpus != 1:
                raise BenchmarkError(f"a shared run takes one GPU, not {gpus}")
            room = [index for index, _ in self.gpus if self._load[index] < self.runs_per_gpu]
            if not room:
                return None
            index = min(room, key=lambda i: (self._load[i], i))  # the least loaded GPU first
            self._load[index] += 1
            return self._slot([index], max(1, self._cores_per_gpu() // self.runs_per_gpu), exclusive=False)

    def _slot(self, indices: Sequence[int], cores: int, exclusive: bool) -> Slot:
        ids = dict(self.gpus)
        return Slot(devices=tuple(indices), visible=tuple(ids[i] for i in indices), cores=cores, exclusive=exclusive)

    def give_back(self, slot: Slot) -> None:
        """Return ``slot``'s GPUs (or CPU slot) to the pool."""
        with self._lock:
            if not slot.devices:
                self._cpu_busy = max(0, self._cpu_busy - 1)
                return
            for index in slot.devices:
                self._load[index] = 0 if slot.exclusive else max(0, self._load[index] - 1)

    def load(self) -> Dict[int, int]:
        """GPU index -> runs on it now (an exclusive run counts as ``runs_per_gpu``)."""
        with self._lock:
            return dict(self._load)


def job_slot(environ: Mapping[str, str], device_count: int, cores: int) -> Slot:
    """The slot of a run that is a scheduler's job: every GPU and core the job was given."""
    ids = visible_gpus(environ, device_count)
    return Slot(devices=tuple(range(len(ids))), visible=tuple(ids), cores=max(1, cores), exclusive=True)
