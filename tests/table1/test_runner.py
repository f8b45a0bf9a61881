"""The benchmark runner: the tiny preset end to end (killed, then resumed), the plan, the report."""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pytest

from conftest import add_dx_column
from fairseq_goodviews.cli.benchmark import main
from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.table1 import PRESETS, BenchmarkError, run_benchmark
from fairseq_goodviews.table1.data import prepare_synthetic
from fairseq_goodviews.table1.execute import Outcome
from fairseq_goodviews.table1.plan import (
    DEFAULT_CONFIG_ROOT,
    IDENTIFICATION,
    LABEL_FRACTION,
    MULTI_LABEL,
    PRETRAIN,
    PROBE,
    RANDOM_INIT,
    SUPERVISED,
    build_plan,
    check_applicable,
    describe_method,
)
from fairseq_goodviews.table1.report import DAGGER, label_efficiency, markdown, mean_std, summary_rows
from fairseq_goodviews.table1.resume import ChangedRunsError, planned_settings
from fairseq_goodviews.table1.stats import mean_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@dataclass
class TinyBenchmark:
    out: Path
    #: runs finished when the command-line benchmark was killed
    finished_before_kill: set[str]
    outcome: Outcome
    #: commands launched by the invocation that finished the benchmark
    launched: list[list[str]]


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory, tiny_dataset) -> TinyBenchmark:
    """The tiny preset as a user runs it: ``goodviews-benchmark`` killed (SIGTERM) after its first
    finished run, then finished by a second invocation."""
    out = tmp_path_factory.mktemp("bench")
    cmd = [
        sys.executable,
        "-m",
        "fairseq_goodviews.cli.benchmark",
        "--preset",
        "tiny",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("runs/*/result.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(out.glob("runs/*/result.json")), proc.stderr.read() if proc.poll() is not None else "timed out"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "run the same command again to resume" in proc.stderr.read()
    assert _processes_mentioning(str(out)) == [], "the killed benchmark left training processes behind"
    finished = {p.parent.name for p in out.glob("runs/*/result.json")}
    launched: list[list[str]] = []
    outcome = run_benchmark(out, "tiny", data=tiny_dataset, on_launch=launched.append)
    return TinyBenchmark(out, finished, outcome, launched)


@pytest.mark.slow
def test_tiny_preset_runs_everything_and_reports(tiny_benchmark):
    out, outcome, launched = tiny_benchmark.out, tiny_benchmark.outcome, tiny_benchmark.launched
    assert outcome.failed == {}
    preset = PRESETS["tiny"]
    n_fractions = len(set(preset.label_fractions) | {1.0})
    # every strategy without and with random lead masking; + random init, supervised
    per_seed = len(preset.strategies) * len(preset.lead_masking) * (1 + n_fractions) + n_fractions + 1
    assert len(outcome.results) == preset.seeds * per_seed
    # the second invocation ran exactly the runs the killed one had not finished
    assert tiny_benchmark.finished_before_kill and len(launched) == len(outcome.launched)
    assert set(outcome.launched) == set(outcome.results) - tiny_benchmark.finished_before_kill
    assert all(cmd[0].endswith("fairseq-hydra-train") for cmd in launched)

    payload = json.loads((out / "results.json").read_text())
    runs = payload["runs"]
    assert {r["kind"] for r in runs} == {PRETRAIN, PROBE, LABEL_FRACTION, RANDOM_INIT, SUPERVISED}
    for run in runs:
        assert {"run_id", "strategy", "seed", "kind", "overrides", "wall_time_s", "checkpoint", "uses_labels"} <= set(
            run
        )
        assert Path(run["checkpoint"]).is_file()
        assert finite(run["wall_time_s"])
        assert (out / "runs" / run["run_id"] / "result.json").is_file()
        if run["kind"] == PRETRAIN:
            continue
        for key in ("macro_auroc", "macro_auprc", "accuracy", "macro_f1"):
            assert finite(run["metrics"][key]) and 0.0 <= run["metrics"][key] <= 1.0, (run["run_id"], key)
        assert f"common.seed={run['seed']}" in run["overrides"]
    by_id = {r["run_id"]: r for r in runs}
    assert by_id["rhythm-s1-pretrain"]["uses_labels"] is True
    assert by_id["rhythm-s1-probe"]["uses_labels"] is True
    assert by_id["simclr-s2-probe"]["uses_labels"] is False
    assert by_id["simclr-s2-probe"]["pretrain"]["run_id"] == "simclr-s2-pretrain"
    assert any(o.startswith("model.model_path=") for o in by_id["simclr-s1-probe"]["overrides"])
    assert not any(o.startswith("model.model_path=") for o in by_id["random_init-s1"]["overrides"])
    assert by_id["supervised-s1"]["config"] == "finetuning/finetune"
    assert by_id["simclr-s1-pretrain"]["lead_mask_prob"] == 0.0 and by_id["simclr-s1-probe"]["lead_mask_prob"] == 0.0
    assert by_id["simclr+rlm-s1-pretrain"]["lead_mask_prob"] == 0.5
    assert "lead_masking=rlm" in by_id["simclr+rlm-s1-pretrain"]["overrides"]
    assert by_id["simclr+rlm-s1-probe"]["pretrain"]["run_id"] == "simclr+rlm-s1-pretrain"

    # each seed its own patient-wise split of the same records, none of its test records pretrained on
    splits = payload["benchmark"]["split_data"]
    assert len(set(splits.values())) == preset.seeds
    tests = [set(pd.read_csv(by_id[f"simclr-s{seed}-probe"]["predictions"])["record"]) for seed in (1, 2)]
    assert tests[0] != tests[1] and len(tests[0]) == len(tests[1])
    for seed, test_records in zip((1, 2), tests, strict=True):
        pretrained_on = {
            rel for split in ("train", "valid") for rel, _ in read_manifest(Path(splits[str(seed)]) / f"{split}.tsv")[1]
        }
        assert pretrained_on and test_records and not test_records & pretrained_on
    # every run records what it was; the random init is probed as the ResNet runs it is compared with
    for run in runs:
        assert run["settings"]["run.encoder"] == run["encoder"] == "resnet1d"
    assert (
        by_id["random_init-s1"]["settings"]["model.encoder._name"]
        == by_id["simclr-s1-pretrain"]["settings"]["model._name"]
    )
    probe_schedule = {k: v for k, v in by_id["simclr-s1-probe"]["schedule"].items()}
    assert by_id["random_init-s1"]["schedule"] == probe_schedule and probe_schedule["max_epoch"] == 1

    rows = {(row["method"], row["lead_mask_prob"] or 0.0, row["protocol"]): row for row in payload["table"]}
    assert set(rows) == {
        ("simclr", 0.0, "linear_probe"),
        ("simclr", 0.5, "linear_probe"),
        ("rhythm", 0.0, "linear_probe"),
        ("rhythm", 0.5, "linear_probe"),
        ("random_init", 0.0, "linear_probe"),
        ("supervised", 0.0, "finetune"),
    }
    for row in rows.values():
        assert row["status"] == "ok" and row["strategy"] == row["method"]
        assert row["macro_auroc"]["n"] == preset.seeds
        assert finite(row["macro_auroc"]["mean"]) and finite(row["macro_auroc"]["std"])
        low, high = row["ci95"]
        assert low <= row["macro_auroc"]["mean"] <= high
    for key in [k for k in rows if k[2] == "linear_probe" and k[0] != "random_init"]:
        compared = rows[key]["vs_random_init"]
        assert (compared["seeds"], compared["n_seeds"], compared["interval"]) == ([1, 2], 2, "t_over_seeds")
        assert compared["ci95"] == pytest.approx(mean_interval(compared["per_seed"]))
        assert rows[key]["encoder"] == rows[("random_init", 0.0, "linear_probe")]["encoder"] == "resnet1d"
        assert rows[key]["schedule"]["lr"] > 0 and rows[key]["pretrain_schedule"]["max_epoch"] >= 1
    assert rows[("rhythm", 0.5, "linear_probe")]["vs_simclr"]["seeds"] == [1, 2]
    assert rows[("rhythm", 0.0, "linear_probe")]["name"].endswith(DAGGER)
    assert rows[("simclr", 0.0, "linear_probe")]["paper_auroc"]["mean"] == pytest.approx(0.896)
    assert rows[("simclr", 0.5, "linear_probe")]["paper_auroc"] is None  # the paper used no lead masking
    efficiency = payload["label_efficiency"]
    assert set(efficiency) == {"simclr", "simclr+rlm", "rhythm", "rhythm+rlm", "random_init"}
    assert all(set(by_fraction) == {"0.1", "1"} for by_fraction in efficiency.values())

    markdown = (out / "results.md").read_text()
    assert "| Strategy 2 (SimCLR) |" in markdown and f"Strategy 4 (Rhythms){DAGGER}" in markdown
    assert "No lead masking (paper's protocol) | With random lead masking" in markdown
    assert "89.6 ± 0.6" in markdown and "Label efficiency" in markdown and "Paired differences" in markdown
    for name in ("auroc.png", "label_efficiency.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_second_invocation_runs_nothing(tiny_benchmark, tiny_dataset):
    out, first = tiny_benchmark.out, tiny_benchmark.outcome
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    launched: list[list[str]] = []
    again = run_benchmark(out, "tiny", data=tiny_dataset, on_launch=launched.append)
    assert launched == [] and again.launched == [] and again.failed == {}
    assert set(again.results) == set(first.results)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_unfinished_runs_are_redone_and_dependents_resume(tiny_benchmark, tiny_dataset):
    out, first = tiny_benchmark.out, tiny_benchmark.outcome
    # A probe killed before it was scored: no result.json, its checkpoints are still there.
    (out / "runs" / "simclr-s1-probe" / "result.json").unlink()
    launched: list[list[str]] = []
    again = run_benchmark(out, "tiny", data=tiny_dataset, on_launch=launched.append)
    assert again.launched == ["simclr-s1-probe"] and len(launched) == 1
    redone = json.loads((out / "runs" / "simclr-s1-probe" / "result.json").read_text())
    assert redone["resumed"] is True
    assert redone["metrics"]["macro_auroc"] == pytest.approx(first.results["simclr-s1-probe"]["metrics"]["macro_auroc"])


def _methods(*names: str):
    return [describe_method(DEFAULT_CONFIG_ROOT, name) for name in names]


def _composed(spec):
    return compose(DEFAULT_CONFIG_ROOT, spec.stage, spec.config_name, spec.overrides)


def test_plan_orders_dependencies_and_follows_the_preset():
    preset = replace(PRESETS["tiny"], task="rhythm4")
    plan = build_plan(preset, _methods("simclr", "rhythm"), DEFAULT_CONFIG_ROOT)
    position = {spec.run_id: i for i, spec in enumerate(plan)}
    assert len(position) == len(plan)
    for spec in plan:
        if spec.depends_on:
            assert position[spec.depends_on] < position[spec.run_id]
    fractions = {spec.label_fraction for spec in plan if spec.kind == LABEL_FRACTION}
    assert fractions == {0.1}
    probe = next(s for s in plan if s.run_id == "simclr-s2-probe-f0.1")
    assert "task.train_fraction=0.1" in probe.overrides and "common.seed=2" in probe.overrides
    composed = _composed(probe)
    assert composed.task.train_fraction == 0.1 and composed.common.seed == 2
    assert composed.optimization.max_epoch == 1 and composed.dataset.required_batch_size_multiple == 1


def test_every_downstream_run_learns_the_benchmarks_task():
    preset = replace(PRESETS["tiny"], task="cinc2021", seeds=1, lead_masking=("none",))
    plan = build_plan(preset, _methods("simclr"), DEFAULT_CONFIG_ROOT, ptbxl=True)
    downstream = [spec for spec in plan if spec.kind not in (PRETRAIN, IDENTIFICATION)]
    assert {spec.kind for spec in downstream} == {PROBE, LABEL_FRACTION, RANDOM_INIT, SUPERVISED, MULTI_LABEL}
    for spec in downstream:
        task = _composed(spec).task
        expected = "ptbxl_superdiagnostic" if spec.protocol == "ptbxl_probe" else "cinc2021"
        assert (task.label_type, task.label_set) == ("multi", expected), spec.run_id
    paper = build_plan(replace(preset, task="rhythm4"), _methods("simclr"), DEFAULT_CONFIG_ROOT)
    probe = _composed(next(spec for spec in paper if spec.kind == PROBE)).task
    assert (probe.label_type, probe.label_set, probe.classes) == ("single", None, "AFIB,GSVT,SB,SR")
    with pytest.raises(BenchmarkError, match="names no downstream task"):
        build_plan(PRESETS["tiny"], _methods("simclr"), DEFAULT_CONFIG_ROOT)


def test_a_task_the_data_cannot_support_is_one_line_before_any_training(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--synthetic", "40", "--preset", "tiny", "--seeds", "1", "--strategies", "simclr", "--out", str(out)]
    assert main([*argv, "--task", "cinc2021"]) == 2
    *progress, error = capsys.readouterr().err.splitlines()  # progress: the synthetic data prepared
    assert not any("error" in line or "Traceback" in line for line in progress)
    assert error.startswith(f"goodviews-benchmark: error: {out / 'data' / 'chapman'} cannot support --task cinc2021 (")
    assert "no 'dx' column" in error and error.endswith("; it supports rhythm4")
    assert not (out / "runs").exists() and not (out / "data" / "ptbxl").exists()


def test_runs_of_one_task_are_not_reported_as_anothers(tmp_path, tiny_dataset):
    with_dx = add_dx_column(shutil.copytree(tiny_dataset, tmp_path / "dx"))
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)  # runs of a benchmark from before --task: all rhythm4
    with pytest.raises(BenchmarkError, match=rf"^{out} holds runs of task rhythm4, not cinc2021: use another --out"):
        run_benchmark(out, "tiny", data=with_dx)


def test_time_segment_strategies_pretrain_on_longer_crops():
    cmsc, simclr = _methods("cmsc", "simclr")
    assert cmsc.crop_segments == 2 and simclr.crop_segments == 1
    plan = {
        spec.run_id: _composed(spec)
        for spec in build_plan(replace(PRESETS["demo"], task="rhythm4"), [cmsc, simclr], DEFAULT_CONFIG_ROOT)
    }
    size = plan["simclr-s1-pretrain"].task.sample_size
    assert size == 1250
    assert plan["cmsc-s1-pretrain"].task.sample_size == 2 * size
    assert plan["cmsc-s1-probe"].task.sample_size == size


def test_paper_preset_has_the_papers_settings():
    paper = replace(PRESETS["paper"], task="rhythm4")
    (simclr,) = _methods("simclr")
    plan = {spec.run_id: _composed(spec) for spec in build_plan(paper, [simclr], DEFAULT_CONFIG_ROOT)}
    pretrain, probe = plan["simclr-s1-pretrain"], plan["simclr-s1-probe"]
    assert (pretrain.optimization.max_epoch, pretrain.dataset.batch_size, list(pretrain.optimization.lr)) == (
        50,
        64,
        [1e-4],
    )
    assert (pretrain.model.base_width, list(pretrain.model.layers), pretrain.model.embedding_dim) == (
        64,
        [2, 2, 2, 2],
        128,
    )
    assert (probe.optimization.max_epoch, list(probe.optimization.lr), paper.seeds) == (10, [0.01], 5)
    assert probe.model.encoder.base_width == 64 and paper.hydra_preset == "paper"
    tiny = PRESETS["tiny"]
    assert (len(tiny.strategies), tiny.seeds) == (2, 2)


def test_summary_statistics_skip_undefined_metrics():
    assert mean_std([0.5, None, float("nan"), 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1414213, "n": 2})
    assert mean_std([]) == {"mean": None, "std": None, "n": 0}
    results = [
        {
            "strategy": "simclr",
            "protocol": "linear_probe",
            "kind": PROBE,
            "seed": seed,
            "label_fraction": fraction,
            "uses_labels": False,
            "wall_time_s": 1.0,
            "metrics": {"macro_auroc": auroc, "accuracy": 0.5, "macro_f1": 0.4, "macro_auprc": None},
        }
        for seed, fraction, auroc in ((1, 1.0, 0.8), (2, 1.0, 0.9), (1, 0.01, 0.6))
    ]
    (row,) = summary_rows(results, "rhythm4")
    assert row["macro_auroc"]["mean"] == pytest.approx(0.85) and row["seeds"] == [1, 2]
    assert row["macro_auprc"]["n"] == 0
    assert label_efficiency(results)["simclr"]["0.01"]["mean"] == pytest.approx(0.6)


def test_cli_needs_data_or_synthetic(tmp_path, capsys):
    assert main(["--preset", "tiny", "--out", str(tmp_path / "out")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["--preset", "tiny", "--out", str(tmp_path / "out"), "--data", str(tmp_path)]) == 2
    assert "not a prepared manifest folder" in capsys.readouterr().err


def test_cli_rejects_unknown_strategy(tmp_path, tiny_dataset, capsys):
    code = main(
        ["--preset", "tiny", "--out", str(tmp_path / "o"), "--data", str(tiny_dataset), "--strategies", "no_such_view"]
    )
    assert code == 2 and "no_such_view" in capsys.readouterr().err
    assert not (tmp_path / "o" / "runs").exists()


def test_synthetic_data_is_prepared_once(tmp_path):
    prepared = prepare_synthetic(tmp_path, 40)
    assert all((prepared / f"{split}.tsv").is_file() for split in ("train", "valid", "test"))
    assert not (tmp_path / "data" / "chapman_raw").exists()
    stamp = (prepared / "train.tsv").stat().st_mtime_ns
    assert prepare_synthetic(tmp_path, 40) == prepared
    assert (prepared / "train.tsv").stat().st_mtime_ns == stamp
    with pytest.raises(BenchmarkError, match="'n_records': 40"):
        prepare_synthetic(tmp_path, 41)


def test_a_method_that_cannot_learn_on_the_data_is_na_with_its_reason(tiny_dataset, tmp_path):
    single = tmp_path / "single_visit"
    shutil.copytree(tiny_dataset, single)
    for split in ("train", "valid", "test"):
        frame = pd.read_csv(single / f"{split}.csv")
        frame["patient_id"] = frame["record_id"]
        frame.to_csv(single / f"{split}.csv", index=False)
    (patient,) = _methods("patient")
    assert (
        patient.needs_repeat_patients
        and check_applicable(patient, DEFAULT_CONFIG_ROOT, tiny_dataset).not_applicable is None
    )
    patient = check_applicable(patient, DEFAULT_CONFIG_ROOT, single)
    assert patient.not_applicable == "every patient has a single record (one ECG per patient)"

    reason = patient.not_applicable
    results = [
        {
            "strategy": "patient",
            "protocol": "linear_probe",
            "kind": PROBE,
            "seed": 1,
            "label_fraction": 1.0,
            "status": "not_applicable",
            "reason": reason,
            "metrics": None,
            "uses_labels": False,
            "wall_time_s": 0.0,
            "lead_mask_prob": 0.0,
        }
    ]
    (row,) = summary_rows(results, "rhythm4", {"patient": {"table_name": "Patient (PCLR)", "paper_auroc": None}})
    assert (row["status"], row["reason"], row["macro_auroc"]["mean"]) == ("not_applicable", reason, None)
    facts = {"schedule": "tiny", "max_epoch": 1, "lr": 0.01, "batch_size": 16, "sample_size": 500}
    settings = {
        "name": "tiny",
        "task": "rhythm4",
        "task_chosen_by": "--task",
        "data": str(single),
        "seeds": 1,
        "hydra_preset": "cpu_small",
        "jobs": 1,
        "schedules": {"pretraining": facts, "linear_probe": facts, "finetune": facts},
    }
    text = markdown([row], {}, settings, {})
    assert "| Patient (PCLR) [1] | ResNet-1D | linear probe | 1 | n/a |" in text
    assert f"- [1] n/a: not trained, {reason}." in text


@pytest.mark.slow
def test_multi_label_and_identification_columns_on_a_multi_visit_ptbxl_set(tmp_path, tiny_dataset):
    from fairseq_goodviews.table1.data import prepare_synthetic_ptbxl

    ptbxl = prepare_synthetic_ptbxl(tmp_path / "ptbxl_src", 40)
    assert (ptbxl / "scp_statements.csv").is_file() and not (tmp_path / "ptbxl_src" / "data" / "ptbxl_raw").exists()
    test = pd.read_csv(ptbxl / "test.csv")
    assert test["patient_id"].duplicated().any()  # several ECGs per patient: identification has probes
    out = tmp_path / "bench"
    outcome = run_benchmark(
        out,
        "tiny",
        data=tiny_dataset,
        ptbxl_data=ptbxl,
        strategies=["simclr"],
        seeds=1,
        lead_masking=["none"],
        label_fractions=[1.0],
        split_seeds=False,
    )
    assert outcome.failed == {}
    assert {"simclr-s1-ptbxl-probe", "simclr-s1-identify", "random_init-s1-ptbxl-probe"} <= set(outcome.results)
    probe = outcome.results["simclr-s1-ptbxl-probe"]
    assert "task.label_set=ptbxl_superdiagnostic" in probe["overrides"] and 0 <= probe["metrics"]["f_max"] <= 1
    identified = outcome.results["simclr-s1-identify"]["metrics"]
    assert identified["n_probe"] > 0 and 0.0 <= identified["top1"] <= identified["top5"] <= 1.0
    payload = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["protocol"]): r for r in payload["table"]}
    assert set(rows) == {("simclr", "linear_probe"), ("random_init", "linear_probe"), ("supervised", "finetune")}
    simclr = rows[("simclr", "linear_probe")]
    assert simclr["ptbxl_macro_auroc"]["n"] == 1 and simclr["identification_top1"]["n"] == 1
    assert "ptbxl_macro_auroc" in rows[("random_init", "linear_probe")]
    assert "The field's other downstream tasks" in (out / "results.md").read_text()


@pytest.mark.slow
def test_a_cinc2021_benchmark_trains_scores_and_reports_that_task(tmp_path, tiny_dataset, capsys):
    with_dx = add_dx_column(shutil.copytree(tiny_dataset, tmp_path / "dx"))
    out = tmp_path / "bench"
    argv = ["--preset", "tiny", "--data", str(with_dx), "--out", str(out), "--seeds", "1", "--strategies", "simclr"]
    argv += ["--lead-masking", "none", "--label-fractions", "1.0", "--task", "cinc2021"]
    assert main(argv) == 0, capsys.readouterr().err
    payload = json.loads((out / "results.json").read_text())
    assert (payload["benchmark"]["task"], payload["benchmark"]["task_chosen_by"]) == ("cinc2021", "--task")
    runs = {r["run_id"]: r for r in payload["runs"]}
    assert set(runs) == {"simclr-s1-pretrain", "simclr-s1-probe", "random_init-s1", "supervised-s1"}
    for run_id in ("simclr-s1-probe", "random_init-s1", "supervised-s1"):
        run = runs[run_id]
        assert {"task.label_type=multi", "task.label_set=cinc2021"} <= set(run["overrides"])
        assert finite(run["metrics"]["challenge_score"]) and finite(run["metrics"]["f_max"])
        predictions = pd.read_csv(run["predictions"])
        assert {"target_AF", "prob_CRBBB|RBBB"} <= set(predictions.columns)
    rows = {r["method"]: r for r in payload["table"]}
    assert rows["simclr"]["paper_auroc"] is None and rows["simclr"]["challenge_score"]["n"] == 1
    assert payload["paper_auroc"] == {}
    text = (out / "results.md").read_text()
    assert "Downstream task `cinc2021`: the 26 scored PhysioNet/CinC 2021 classes" in text and "Challenge score" in text
    assert json.loads((out / "task.json").read_text()) == {"task": "cinc2021"}
    with pytest.raises(BenchmarkError, match="holds runs of task cinc2021, not rhythm4"):
        run_benchmark(out, "tiny", data=with_dx, task="rhythm4", report_only=True)


def test_every_encoder_family_gets_its_own_random_init_probed_as_its_encoders_are():
    preset = replace(PRESETS["cpu-small"], task="rhythm4", seeds=1, label_fractions=(1.0,))
    plan = build_plan(preset, _methods("simclr", "w2v_cmsc_rlm"), DEFAULT_CONFIG_ROOT)
    by_id = {spec.run_id: spec for spec in plan}
    assert {s.run_id for s in plan if s.kind == RANDOM_INIT and s.leads is None} == {
        "random_init-s1",
        "random_init_w2v-s1",
    }
    for encoder_run, probe, init in (
        ("simclr-s1-pretrain", "simclr-s1-probe", "random_init-s1"),
        ("w2v_cmsc_rlm-s1-pretrain", "w2v_cmsc_rlm-s1-probe", "random_init_w2v-s1"),
    ):
        pretrained = _composed(by_id[encoder_run]).model
        baseline = _composed(by_id[init])
        assert baseline.model.encoder._name == pretrained._name == by_id[init].encoder
        assert baseline.model.encoder == _composed(by_id[probe]).model.encoder  # the preset's encoder config
        assert baseline.optimization == _composed(by_id[probe]).optimization  # the same probe schedule
        assert by_id[init].overrides == by_id[probe].overrides


def test_a_finished_run_made_with_other_settings_stops_the_benchmark_in_one_line(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "out"
    argv = [
        "--data",
        str(tiny_dataset),
        "--seeds",
        "1",
        "--strategies",
        "simclr",
        "--no-split-seeds",
        "--task",
        "rhythm4",
    ]
    other = build_plan(replace(PRESETS["cpu-small"], task="rhythm4", seeds=1), _methods("simclr"), DEFAULT_CONFIG_ROOT)
    recorded = planned_settings(other, DEFAULT_CONFIG_ROOT, lambda spec: tiny_dataset, 2500)
    run_dir = out / "runs" / "simclr-s1-pretrain"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(
        json.dumps({"run_id": "simclr-s1-pretrain", "settings": recorded["simclr-s1-pretrain"]})
    )
    assert main([*argv, "--preset", "tiny", "--out", str(out)]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("goodviews-benchmark: error:")]
    assert error.startswith(
        f"goodviews-benchmark: error: {out / 'runs'}: 1 finished run(s) were made with other settings"
    )
    assert "(simclr-s1-pretrain: " in error and "dataset.batch_size: 64 -> 16" in error
    assert error.endswith("use another --out, or pass --rerun-changed to set them aside and redo them")
    assert not (out / "runs" / "simclr-s1-probe").exists()  # nothing ran
    with pytest.raises(ChangedRunsError, match=r"settings recorded|\(none\)"):
        (run_dir / "result.json").write_text(json.dumps({"run_id": "simclr-s1-pretrain"}))  # from before settings
        run_benchmark(out, "tiny", data=tiny_dataset, seeds=1, strategies=["simclr"], split_seeds=False, task="rhythm4")
