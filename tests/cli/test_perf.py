"""``goodviews-perf``: each subcommand reaches its benchmark with its options, writes its JSON, and a
wrong setting is a one-line error with exit status 2."""

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from fairseq_goodviews.cli import perf
from fairseq_goodviews.perf import (
    augmentation,
    flops,
    loader,
    optimizer_step,
    positives_at_scale,
    preprocessing,
    step_rate,
    training_throughput,
)
from fairseq_goodviews.table1 import run_start


def test_record_loading_writes_every_readers_ratio_to_the_reference(tmp_path, capsys):
    argv = ["record-loading", "--out", str(tmp_path), "--records", "12", "--samples", "600", "--shard-records", "5"]
    assert perf.main([*argv, "--sample-size", "500", "--rounds", "1", "--chunk", "4", "--project", "1200"]) == 0
    result = json.loads((tmp_path / "record_loading.json").read_text())
    assert result["records"] == 12
    assert result["targets"] == {"float32 pack": 0.9, "int16 pack": 0.9, "read_record": 0.5}
    for table in ("whole_record", "dataset_load"):
        assert set(result[table]) >= {"float32 pack", "int16 pack"}
        assert result[table]["memmap .npy"]["ratio_to_memmap"] == 1.0
        for row in result[table].values():
            assert row["ratio_to_memmap"] > 0 and len(row["ratio_quartiles"]) == 2
    # The synthetic records are whole microvolts: every one int16, in shards of 5 records.
    assert result["packs"]["int16 pack"]["int16_records"] == 12 and result["packs"]["int16 pack"]["shards"] == 3
    assert result["packs"]["float32 pack"]["int16_records"] == 0 and result["packs"]["float32 pack"]["shards"] == 1
    usage = result["disk"]["per_source"]
    assert usage["float32 pack"]["bytes_per_record"] == 12 * 600 * 4 + 128 / 12  # the one shard's header shared
    assert usage["int16 pack"]["bytes_per_record"] == 12 * 600 * 2 + 3 * 128 / 12
    assert usage["int16 pack"]["projected_gib"] == usage["int16 pack"]["bytes_per_record"] * 1200 / 2**30
    printed = capsys.readouterr().out
    assert "projected linearly to 1,200" in printed and f"wrote {tmp_path / 'record_loading.json'}" in printed


def test_partner_index_writes_its_figures_beside_the_targets(tmp_path, capsys):
    argv = ["partner-index", "--out", str(tmp_path), "--distribution", "normal", "--records", "500"]
    assert perf.main([*argv, "--check", "20", "--threads", "1"]) == 0
    result = json.loads((tmp_path / "partner_index.json").read_text())
    assert result["records"] == 500 and result["target_build_s"] == 60.0 and result["target_memory_mb"] == 2048.0
    assert 0 <= result["candidate_recall"] <= 1 and result["build_rss_increase_mb"] >= 0
    assert "build time, s" in capsys.readouterr().out


def _recorded(monkeypatch, module, name: str = "run") -> list[dict]:
    """Replace ``module.name`` by a recorder of its arguments (by parameter name), returning ``{"ok": 1}``."""
    calls: list[dict] = []
    signature = inspect.signature(getattr(module, name))

    def record(*args, **kwargs):
        calls.append(signature.bind(*args, **kwargs).arguments)
        return {"ok": 1}

    monkeypatch.setattr(module, name, record)
    if hasattr(module, "format_result"):
        monkeypatch.setattr(module, "format_result", lambda result: "formatted")
    return calls


@pytest.mark.parametrize(
    ("argv", "module", "written", "expected"),
    [
        (
            ["preprocessing", "--records", "5", "--repeats", "2"],
            preprocessing,
            "preprocessing.json",
            {"records": 5, "seed": 0, "repeats": 2},
        ),
        (["augmentation", "--repeats", "3", "--record", "r.hea"], augmentation, "augmentation.json", {"repeats": 3}),
        (
            ["optimizer-step", "--preset", "cpu_small", "--repeats", "4"],
            optimizer_step,
            "optimizer_step.json",
            {"preset": "cpu_small", "repeats": 4},
        ),
        (
            ["positives-at-scale", "--views", "8", "16", "--world", "2", "--strategies", "cmsc"],
            positives_at_scale,
            "positives_at_scale.json",
            {"views": [8, 16], "world": 2, "strategies": ["cmsc"], "repeats": 3},
        ),
        (
            ["flops", "--preset", "cpu_small", "--w2v-preset", "w2v_cpu_small"],
            flops,
            "flops.json",
            {"strategy": "simclr", "preset": "cpu_small", "w2v_preset": "w2v_cpu_small", "sample_size": None},
        ),
        (
            ["step-rate", "--data", "d", "--batch-sizes", "8", "16", "--compile", "--bf16", "--device", "cpu"],
            step_rate,
            "step_rate_simclr_paper_compiled.json",
            {"batch_sizes": [8, 16], "compile_encoder": True, "cudnn_benchmark": False, "bf16": True, "steps": 20},
        ),
        (
            ["loader", "--data", "d", "--workers", "3", "--gpu-records-per-s", "900"],
            loader,
            "loader.json",
            {"preset": "paper", "workers": 3, "gpu_records_per_s": 900.0, "batch_size": None, "batches": 20},
        ),
        (
            ["run-start", "--data", "d", "--rounds", "2"],
            run_start,
            "run_start.json",
            {"config": "simclr", "rounds": 2, "epochs": 1},
        ),
    ],
)
def test_each_subcommand_passes_its_options_to_its_benchmark(tmp_path, monkeypatch, argv, module, written, expected):
    calls = _recorded(monkeypatch, module)
    assert perf.main([*argv, "--out", str(tmp_path)]) == 0
    assert len(calls) == 1 and calls[0].items() >= expected.items()
    assert json.loads((tmp_path / written).read_text()) == {"ok": 1}


class _FakeLoop:
    """Stands in for a training process: records its command, runs instantly at 100 samples/s."""

    commands: ClassVar[list[list[str]]] = []

    def __init__(self, name, cmd, update_line, cwd, env):
        self.name, self.slices = name, []
        _FakeLoop.commands.append(cmd)

    def run_until(self, updates, timeout, timed=False):
        pass

    def run_slice(self, seconds):
        pass

    def samples_per_second(self, slices, batch_size):
        return 100.0

    def close(self):
        pass


def test_training_throughput_starts_its_bare_loop_through_the_same_subcommand(tmp_path, monkeypatch):
    monkeypatch.setattr(training_throughput, "_TrainingProcess", _FakeLoop)
    _FakeLoop.commands = []
    argv = ["training-throughput", "--data", str(tmp_path), "--out", str(tmp_path), "--device", "cpu"]
    assert perf.main([*argv, "--w2v-steps", "0", "--slices", "4", "--blocks", "2", "--batch-size", "4"]) == 0
    result = json.loads((tmp_path / "training_throughput.json").read_text())
    assert result["ratio"] == 1.0 and result["target_ratio"] == training_throughput.TARGET_RATIO
    assert len(result["blocks"]) == 2 and result["fairseq_samples_per_s"] == result["baseline_samples_per_s"]

    fairseq, bare = _FakeLoop.commands
    assert Path(fairseq[0]).name == "fairseq-hydra-train"
    assert bare[:4] == [sys.executable, "-m", "fairseq_goodviews.cli.perf", "training-throughput"]
    children = _recorded(monkeypatch, training_throughput, "bare_loop")
    assert perf.main(bare[3:]) == 0
    assert children[0]["args"].batch_size == 4 and children[0]["args"].data == tmp_path.resolve()


def test_training_throughput_against_glibc_defaults_writes_its_own_file(tmp_path, monkeypatch):
    calls = _recorded(monkeypatch, training_throughput)
    argv = ["training-throughput", "--data", "d", "--out", str(tmp_path), "--versus", "glibc-defaults"]
    assert perf.main([*argv, "--bf16", "--w2v-steps", "0"]) == 0
    settings = calls[0]["args"]
    assert settings.versus == "glibc-defaults" and settings.bf16 and settings.w2v_steps == 0
    assert settings.preset == "cpu_small" and settings.config_dir == training_throughput.CONFIG_DIR
    assert (tmp_path / "training_throughput_vs_glibc_defaults.json").is_file()


def test_positives_at_scale_measures_one_variant_in_a_child_process_as_json(capsys):
    argv = ["positives-at-scale", "--one", "cmsc", "8", "new", "--world", "2", "--repeats", "1"]
    assert perf.main(argv) == 0
    measured = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert measured["views"] == 8 and measured["local_views"] == 4 and measured["variant"] == "new"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["positives-at-scale", "--views", "100", "--world", "64"], "every --views value must be a positive multiple"),
        (["positives-at-scale", "--views", "128"], "--out is required"),
        (["partner-index", "--distribution", "chapman", "--diagnostics", "missing.xlsx"], "needs --diagnostics"),
        (["training-throughput", "--data", "d", "--slices", "2", "--blocks", "3"], "--slices (2) must be at least"),
    ],
)
def test_wrong_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    out = [] if "--out is required" in message else ["--out", str(tmp_path)]
    assert perf.main([*argv, *out]) == 2
    error = capsys.readouterr().err
    assert error.startswith("goodviews-perf: error: ") and message in error and error.count("\n") == 1


def test_python_dash_m_is_the_same_command(tmp_path):
    argv = ["positives-at-scale", "--out", str(tmp_path), "--views", "100", "--world", "64"]
    done = subprocess.run([sys.executable, "-m", "fairseq_goodviews.cli.perf", *argv], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("goodviews-perf: error: every --views value"), done.stderr
