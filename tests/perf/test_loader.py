"""The loader benchmark: records/s of the training loader alone, its ratio to a GPU's rate, and
the same loader reading an int16 pack, a float32 pack and a memory-mapped float32 array."""

import json

import numpy as np
import pytest

from fairseq_goodviews.cli.perf import main as perf_main
from fairseq_goodviews.cli.prepare_ptbxl import main as prepare_ptbxl_main
from fairseq_goodviews.cli.synthetic_ptbxl import main as synthetic_ptbxl_main
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.perf import PerfSettingsError, loader


def test_loader_rate_and_ratio_to_the_gpu(tiny_dataset, one_thread):
    options = {"preset": "cpu_small", "batch_size": 8, "sample_size": 500, "warmup": 1, "batches": 7}
    result = loader.run(tiny_dataset, workers=1, gpu_records_per_s=100.0, **options)
    assert (result["batch_size"], result["sample_size"], result["workers"], result["batches_timed"]) == (8, 500, 1, 7)
    assert result["records_per_s"] > 0 and result["ratio"] == result["records_per_s"] / 100.0
    text = loader.format_result(result)
    assert "1 workers" in text and "(goal >= 1.5x)" in text
    # the preset's workers by default; no GPU rate, no ratio
    alone = loader.run(tiny_dataset, **options)
    assert alone["workers"] == 1 and alone["ratio"] is None and "consumes" not in loader.format_result(alone)


def test_a_batch_larger_than_the_data_is_refused(tiny_dataset):
    with pytest.raises(PerfSettingsError, match="48 training records, fewer than one batch of 64"):
        loader.run(tiny_dataset, preset="cpu_small", batch_size=64, workers=0)


@pytest.fixture(scope="module")
def ptbxl_prepared(tmp_path_factory):
    """A prepared synthetic PTB-XL folder: 16-bit records at their own 500 Hz, so every one is int16."""
    root = tmp_path_factory.mktemp("ptbxl")
    assert synthetic_ptbxl_main([str(root / "src"), "--patients", "10", "--seconds", "2"]) == 0
    assert prepare_ptbxl_main([str(root / "src"), str(root / "prepared"), "--no-progress", "--no-attributes"]) == 0
    return root / "prepared"


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_the_loader_reads_an_int16_pack_a_float32_pack_and_a_memmap_taking_turns(
    ptbxl_prepared, tmp_path, capsys, one_thread
):
    n_records = len(read_manifest(ptbxl_prepared / "train.tsv")[1])
    before = _listing(ptbxl_prepared)
    argv = ["loader", "--data", str(ptbxl_prepared), "--out", str(tmp_path), "--versus-encodings"]
    argv += ["--preset", "cpu_small", "--batch-size", "4", "--sample-size", "500", "--workers", "1"]
    argv += ["--warmup", "1", "--batches", "2", "--rounds", "3", "--shard-records", "5"]
    assert perf_main(argv) == 0
    # the user's folder untouched (no pack written there), the temporary copies gone
    assert _listing(ptbxl_prepared) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loader_encodings.json"]
    result = json.loads((tmp_path / "loader_encodings.json").read_text())
    assert (result["records"], result["batch_size"], result["sample_size"], result["workers"]) == (n_records, 4, 500, 1)
    int16 = result["packs"]["int16 pack"]
    assert (int16["int16_records"], int16["float32_records"]) == (n_records, 0)
    assert int16["shards"] == -(-n_records // 5) and result["packs"]["float32 pack"]["shards"] == 1
    # half the bytes: 2 per value against 4 (shard headers aside)
    assert int16["bytes"] < 0.55 * result["packs"]["float32 pack"]["bytes"]
    turns = result["turns_records_per_s"]
    assert sorted(turns) == sorted(loader.ENCODINGS) and all(len(v) == 3 and min(v) > 0 for v in turns.values())
    assert result["records_per_s"] == {name: float(np.median(v)) for name, v in turns.items()}
    ratio = result["ratios"]["int16 pack / memmap float32"]
    assert np.allclose(ratio["rounds"], np.array(turns["int16 pack"]) / np.array(turns["memmap float32"]))
    assert ratio["median"] == float(np.median(ratio["rounds"])) and ratio["low"] == min(ratio["rounds"])
    assert sorted(result["ratios"]) == [
        "float32 pack / memmap float32",
        "int16 pack / float32 pack",
        "int16 pack / memmap float32",
    ]
    text = capsys.readouterr().out
    assert f"int16 pack: {n_records} of {n_records} records int16, 0 float32, {int16['shards']} shards" in text
    assert "int16 pack / memmap float32" in text and "goal >= 0.9" in text


def test_no_int16_record_is_refused_in_one_line(tiny_dataset, tmp_path, capsys):
    """The tiny set's records are float32 noise, not whole steps of a 16-bit source."""
    argv = ["loader", "--data", str(tiny_dataset), "--out", str(tmp_path), "--versus-encodings", "--workers", "0"]
    assert perf_main([*argv, "--preset", "cpu_small", "--batch-size", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("goodviews-perf: error: ") and "\n" not in err
    assert f"{tiny_dataset / 'train.tsv'}: none of its 48 records can be stored as int16" in err
    assert not (tiny_dataset / "train.packed").exists() and list(tmp_path.iterdir()) == []


def test_versus_encodings_settings_that_cannot_be_measured_are_refused(ptbxl_prepared, tmp_path):
    with pytest.raises(PerfSettingsError, match="--batches 0, --rounds 3"):
        loader.versus_encodings(ptbxl_prepared, tmp_path, batches=0, rounds=3)


def test_versus_encodings_settings_that_cannot_be_measured_are_refused_by_the_command(tiny_dataset, tmp_path, capsys):
    argv = ["loader", "--data", str(tiny_dataset), "--out", str(tmp_path), "--versus-encodings"]
    assert perf_main([*argv, "--gpu-records-per-s", "100"]) == 2
    assert "--gpu-records-per-s and --versus-encodings" in capsys.readouterr().err
