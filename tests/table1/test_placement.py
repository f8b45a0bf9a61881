"""The device pool of a benchmark, on stand-in GPU lists (no GPU needed): whole GPUs for trainings,
shared GPUs for probes, slots back after a run, and the environment each run's processes get."""

from __future__ import annotations

import pytest

from fairseq_goodviews.table1 import BenchmarkError
from fairseq_goodviews.table1.executors import DirectExecutor
from fairseq_goodviews.table1.placement import (
    DevicePool,
    choose_gpus,
    job_slot,
    split_update_freq,
    visible_gpus,
)
from fairseq_goodviews.table1.plan import PRETRAIN, RunSpec


def eight_gpus(cpus: int = 64, runs_per_gpu: int = 2) -> DevicePool:
    return DevicePool(list(enumerate(str(i) for i in range(8))), cpus, runs_per_gpu=runs_per_gpu)


def test_no_two_pretraining_runs_share_a_gpu():
    pool = DevicePool([(0, "0"), (1, "1")], cpus=16)
    first, second = pool.take(exclusive=True), pool.take(exclusive=True)
    assert first.devices == (0,) and second.devices == (1,)
    assert pool.take(exclusive=True) is None  # both GPUs hold a pretraining
    assert pool.take() is None  # and no probe squeezes in beside one
    pool.give_back(first)
    assert pool.take(exclusive=True).devices == (0,)


def test_probes_are_packed_up_to_the_limit_least_loaded_gpu_first():
    pool = DevicePool([(0, "0"), (1, "1")], cpus=16, runs_per_gpu=3)
    slots = [pool.take() for _ in range(6)]
    assert [s.devices for s in slots] == [(0,), (1,), (0,), (1,), (0,), (1,)]
    assert pool.load() == {0: 3, 1: 3}
    assert pool.take() is None
    assert pool.take(exclusive=True) is None  # a pretraining needs a GPU no probe uses
    for slot in slots[::2]:
        pool.give_back(slot)
    assert pool.load() == {0: 0, 1: 3}
    assert pool.take(exclusive=True).devices == (0,)


def test_a_multi_gpu_pretraining_takes_whole_free_gpus():
    pool = eight_gpus()
    probe = pool.take()
    wide = pool.take(gpus=4, exclusive=True)
    assert probe.devices == (0,) and wide.devices == (1, 2, 3, 4) and wide.processes == 4
    assert pool.take(gpus=4, exclusive=True) is None  # 3 free GPUs left
    pool.give_back(wide)
    assert pool.load() == {0: 1, **{i: 0 for i in range(1, 8)}}
    with pytest.raises(BenchmarkError, match="needs 9 GPUs; the benchmark may use 8"):
        pool.take(gpus=9, exclusive=True)


def test_a_failed_runs_slot_comes_back_through_the_executor():
    pool = DevicePool([(0, "0")], cpus=4)
    executor = DirectExecutor(pool)
    spec = RunSpec(run_id="x", kind=PRETRAIN, method="m", seed=1, stage="pretraining", config_name="m", overrides=[])

    def broken(slot):
        assert pool.load() == {0: 2}  # the run holds the whole GPU while it runs
        raise BenchmarkError("run x failed")

    future = executor.start(spec, broken)
    with pytest.raises(BenchmarkError, match="run x failed"):
        future.result()
    executor.close()
    assert pool.load() == {0: 0}


def test_cores_and_data_workers_are_divided_among_the_runs():
    pool = eight_gpus(cpus=64, runs_per_gpu=2)  # 8 cores per GPU
    probe = pool.take()
    assert (probe.cores, probe.data_workers, probe.threads) == (4, 3, 1)
    wide = pool.take(gpus=2, exclusive=True)
    assert (wide.cores, wide.data_workers, wide.threads) == (16, 7, 1)  # per training process
    assert wide.overrides() == ["dataset.num_workers=7"]
    cpu = DevicePool([], cpus=8, cpu_jobs=2)
    slots = [cpu.take(), cpu.take()]
    assert cpu.take() is None
    assert [(s.cores, s.threads, s.data_workers, s.overrides()) for s in slots] == [(4, 4, None, [])] * 2
    with pytest.raises(BenchmarkError, match="has none"):
        cpu.take(gpus=2, exclusive=True)


def test_each_run_sees_only_its_own_gpus():
    # the benchmark itself runs on devices 4-7 of the node: --gpus 1,3 are devices 5 and 7
    visible = visible_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, device_count=4)
    pool = DevicePool(choose_gpus([1, 3], visible), cpus=8, runs_per_gpu=1)
    first, second = pool.take(), pool.take()
    base = {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "4,5,6,7", "OMP_NUM_THREADS": "8"}
    assert first.environment(base) == {
        "PATH": "/bin",
        "CUDA_VISIBLE_DEVICES": "5",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    assert second.environment(base)["CUDA_VISIBLE_DEVICES"] == "7"
    assert (first.scoring_device, second.scoring_device) == ("cuda:1", "cuda:3")  # the benchmark's numbering
    cpu = DevicePool([], cpus=2).take()
    assert cpu.environment(base)["CUDA_VISIBLE_DEVICES"] == "" and cpu.scoring_device == "cpu"
    assert cpu.environment(base)["OMP_NUM_THREADS"] == "2"


def test_visible_and_chosen_gpus():
    assert visible_gpus({}, 3) == ["0", "1", "2"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, 0) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a1,GPU-b2"}, 2) == ["GPU-a1", "GPU-b2"]
    assert choose_gpus(None, ["3", "4"]) == [(0, "3"), (1, "4")]
    assert choose_gpus([], ["3", "4"]) == []  # --gpus none: the CPU
    with pytest.raises(BenchmarkError, match="no GPU 2 "):
        choose_gpus([0, 2], ["3", "4"])
    with pytest.raises(BenchmarkError, match="named twice"):
        choose_gpus([1, 1], ["3", "4"])


def test_a_job_slot_is_everything_the_job_was_given():
    slot = job_slot({"CUDA_VISIBLE_DEVICES": "2,3"}, device_count=2, cores=16)
    assert (slot.devices, slot.visible, slot.processes, slot.data_workers) == ((0, 1), ("2", "3"), 2, 7)
    assert job_slot({"CUDA_VISIBLE_DEVICES": ""}, device_count=0, cores=3).threads == 3


def test_the_effective_batch_stays_the_schedules():
    assert split_update_freq(8, 4) == (4, 2)  # w2v_paper: 64 x 1 x 8 = 64 x 4 x 2
    assert split_update_freq(8, 8) == (8, 1)
    assert split_update_freq(8, 3) == (2, 4)  # 3 does not divide 8: two GPUs
    assert split_update_freq(1, 4) == (1, 1)  # the ResNet schedules stay on one GPU
    with pytest.raises(BenchmarkError):
        split_update_freq(8, 0)
