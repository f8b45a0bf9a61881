"""The executors of a benchmark: what a SLURM job asks for, the command of a run on several GPUs,
a run failing inside a submitit job, the sbatch scripts of a dry run, and the tiny benchmark through
submitit's local executor giving the summary the in-process runner gives."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from fairseq_goodviews.cli.benchmark import main
from fairseq_goodviews.table1 import BenchmarkError
from fairseq_goodviews.table1.execute import TORCHRUN_OVERRIDES, Context, execute_run, training_command
from fairseq_goodviews.table1.executors import JobSettings, SubmititExecutor, job_parameters, world_size
from fairseq_goodviews.table1.placement import DevicePool, Slot
from fairseq_goodviews.table1.plan import DEFAULT_CONFIG_ROOT, PRETRAIN, PROBE, RunSpec

SLURM = JobSettings(cluster="slurm", time_min=90, partition="gpu", cpus_per_gpu=8)


def spec(kind: str = PROBE, overrides=(), stage: str = "finetuning", config: str = "linear_probe") -> RunSpec:
    return RunSpec(
        run_id=f"{kind}-run",
        kind=kind,
        method="simclr",
        seed=1,
        stage=stage,
        config_name=config,
        overrides=[*overrides],
    )


WIDE = spec(
    PRETRAIN,
    ["preset=w2v_paper", "++distributed_training.distributed_world_size=4", "++optimization.update_freq=[2]"],
    stage="pretraining",
    config="w2v_cmsc_rlm",
)


def test_a_slurm_job_asks_for_the_gpus_its_run_trains_on():
    assert world_size(WIDE) == 4 and world_size(spec()) == 1
    assert job_parameters(SLURM, spec(), None) == {
        "name": "goodviews-pretrain+probe-run",
        "timeout_min": 90,
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": 1,
        "cpus_per_task": 8,
        "slurm_partition": "gpu",
    }
    wide = job_parameters(SLURM, WIDE, None)
    assert (wide["gpus_per_node"], wide["cpus_per_task"]) == (4, 32)
    cpu = job_parameters(replace(SLURM, gpus_per_run=0, partition=None), spec(), None)
    assert (cpu["gpus_per_node"], cpu["cpus_per_task"]) == (0, 8) and "slurm_partition" not in cpu


def test_a_local_job_gets_the_gpus_of_its_slot():
    local = replace(SLURM, cluster="local")
    slot = Slot(devices=(1,), visible=("5",), cores=4)
    assert job_parameters(local, spec(), slot) == {"timeout_min": 90, "gpus_per_node": 1, "visible_gpus": [5]}
    with pytest.raises(BenchmarkError, match="--executor local names GPUs by number"):
        job_parameters(local, spec(), Slot(devices=(0,), visible=("GPU-a1",), cores=4))


def test_a_run_on_several_gpus_is_launched_by_torchrun_with_nccl(tmp_path):
    ctx = Context(data={1: tmp_path / "data"}, out=tmp_path / "out", config_root=DEFAULT_CONFIG_ROOT)
    slot = Slot(devices=(2, 3, 4, 5), visible=("2", "3", "4", "5"), cores=32, exclusive=True)
    cmd, env = training_command(WIDE, ctx, slot)
    assert Path(cmd[0]).name == "torchrun" and cmd[1:3] == ["--standalone", "--nproc_per_node=4"]
    assert Path(cmd[3]).name == "fairseq-hydra-train"
    assert "++optimization.update_freq=[2]" in cmd and "dataset.num_workers=7" in cmd
    assert cmd[-len(TORCHRUN_OVERRIDES) :] == list(TORCHRUN_OVERRIDES)
    assert (env["CUDA_VISIBLE_DEVICES"], env["OMP_NUM_THREADS"]) == ("2,3,4,5", "1")
    single, _ = training_command(spec(), ctx, Slot(devices=(), visible=(), cores=2))
    assert Path(single[0]).name == "fairseq-hydra-train" and not any("num_workers" in c for c in single)
    with pytest.raises(BenchmarkError, match="trains on 4 GPUs; its slot has 1"):
        training_command(WIDE, ctx, Slot(devices=(0,), visible=("0",), cores=8))


@pytest.mark.slow
def test_a_run_failing_in_a_local_job_is_one_line_and_gives_its_slot_back(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ctx = Context(data={1: empty}, out=tmp_path / "out", config_root=DEFAULT_CONFIG_ROOT)
    pretrain = spec(PRETRAIN, ["preset=cpu_small", "schedule=tiny"], stage="pretraining", config="simclr")
    pool = DevicePool([], cpus=2, cpu_jobs=1)
    executor = SubmititExecutor(replace(SLURM, cluster="local", time_min=5), ctx.out / "runs", pool=pool, poll_s=0.2)
    future = executor.start(pretrain, partial(execute_run, pretrain, ctx, {}))
    assert executor.start(pretrain, None) is None  # the one CPU slot is taken
    with pytest.raises(BenchmarkError) as failed:
        future.result(timeout=300)
    executor.close()
    assert str(failed.value).startswith(f"run {pretrain.run_id} failed (exit 1); log {ctx.out / 'runs'}")
    assert "Traceback (most recent call last)" not in str(failed.value).splitlines()[0]
    assert pool.take() is not None  # the slot came back
    assert list((ctx.out / "runs" / pretrain.run_id / "submitit").glob("*_log.out"))  # the job's own log


def test_a_slurm_dry_run_writes_each_runs_sbatch_script_and_submits_nothing(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "out"
    argv = ["--preset", "paper", "--seeds", "1", "--strategies", "w2v_cmsc_rlm", "--label-fractions", "1.0"]
    argv += ["--data", str(tiny_dataset), "--out", str(out), "--gpus-per-pretrain", "4", "--slurm-dry-run"]
    assert main([*argv, "--slurm-partition", "gpu", "--slurm-time", "600", "--lead-sets", "12,1"]) == 0
    assert "sbatch scripts written" in capsys.readouterr().out
    scripts = {p.parent.parent.name: p.read_text() for p in out.glob("runs/*/submitit/dry-run.sbatch")}
    downstream = {"w2v_cmsc_rlm-s1-probe", "random_init-s1", "random_init_w2v-s1", "supervised-s1"}
    assert set(scripts) == {"w2v_cmsc_rlm-s1-pretrain", *downstream, *(f"{run}-leads_II" for run in downstream)}
    assert (
        "task.leads=[II]" in scripts["w2v_cmsc_rlm-s1-probe-leads_II"] and "task.leads" not in scripts["supervised-s1"]
    )
    wide = scripts["w2v_cmsc_rlm-s1-pretrain"]
    for line in ("#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=32", "#SBATCH --partition=gpu"):
        assert line in wide
    assert "#SBATCH --time=600" in wide and "--nproc_per_node=4" in wide and "'++optimization.update_freq=[2]'" in wide
    probe = scripts["w2v_cmsc_rlm-s1-probe"]
    assert "#SBATCH --gpus-per-node=1" in probe and "torchrun" not in probe
    assert f"model.model_path={out / 'runs' / 'w2v_cmsc_rlm-s1-pretrain' / 'ckpt' / 'checkpoint_last.pt'}" in probe
    assert not list(out.glob("runs/*/result.json")) and not list(out.glob("runs/*/train.log"))


def test_the_plan_prints_every_run_and_its_gpu_hours(capsys):
    argv = ["--plan", "--preset", "paper", "--seeds", "1", "--records", "1000", "--strategies", "simclr,w2v_cmsc_rlm"]
    assert main([*argv, "--gpus-per-pretrain", "4", "--step-rate", "100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {fields[0]: fields for fields in map(str.split, lines) if len(fields) == 7}
    # 1000 records re-split 600 / 200 / 200; 100 records/s
    simclr = rows["simclr-s1-pretrain"]
    assert simclr[2:] == ["-", "1", "50", str(50 * math.ceil(600 / 64)), f"{50 * 800 / 100 / 3600:.2f}"]
    w2v = rows["w2v_cmsc_rlm-s1-pretrain"]  # 4 GPUs x 64 x update_freq 2 records an update
    assert w2v[2:] == ["-", "4", "200", str(200 * math.ceil(600 / 512)), f"{200 * 800 / 100 / 3600:.2f}"]
    summary = "\n".join(lines[-4:])
    # per seed: 3 pretrainings (two SimCLR columns, W2V) x 3 fractions, 2 random inits x 3, supervised;
    # and on each of the paper's 5 other lead sets a probe of every encoder, random init and supervised
    assert (
        f"{19 + 5 * (3 + 2 + 1)} runs (" in summary
        and "step rate (records/s per GPU): resnet1d 100, wav2vec2_ecg 100" in summary
    )


def test_the_plan_needs_the_datas_size(capsys):
    assert main(["--plan", "--preset", "paper"]) == 2
    assert "--plan needs the data's size: give --data MANIFEST_DIR or --records N" in capsys.readouterr().err


@pytest.mark.slow
def test_the_local_executor_writes_the_summary_of_the_in_process_runner(tmp_path, tiny_dataset):
    argv = ["--preset", "tiny", "--seeds", "1", "--strategies", "simclr", "--lead-masking", "none"]
    argv += ["--label-fractions", "1.0", "--task", "rhythm4", "--data", str(tiny_dataset)]
    assert main([*argv, "--out", str(tmp_path / "direct")]) == 0
    assert main([*argv, "--out", str(tmp_path / "local"), "--executor", "local"]) == 0
    direct, local = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("direct", "local"))
    for name in ("direct", "local"):
        runs = tmp_path / name / "runs"
        assert (list(runs.glob("*/submitit/*_log.out")) != []) == (name == "local")
    assert len(direct["table"]) == len(local["table"]) == 3  # simclr, random init, supervised

    def summary(payload):  # every field of the summary rows but the wall time, which no two runs share
        return {(row["method"], row["protocol"]): {**row, "wall_time_s": None} for row in payload["table"]}

    assert summary(local) == summary(direct)  # the trainings are deterministic given the seed: equal metrics
    assert summary(local)[("simclr", "linear_probe")]["macro_auroc"]["n"] == 1
    assert {r["run_id"]: r["metrics"] for r in local["runs"]} == {r["run_id"]: r["metrics"] for r in direct["runs"]}
