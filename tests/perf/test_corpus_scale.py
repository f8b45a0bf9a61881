"""The corpus-scale benchmark: the user's commands, stage by stage, their disk per record and the projection."""

from __future__ import annotations

import json

import pytest

from fairseq_goodviews.cli.perf import main
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.perf.corpus_scale import project

SAMPLES = 12 * 5000


@pytest.mark.slow
def test_stages_disk_and_projection_of_a_small_corpus(tmp_path, capsys):
    assert main(["corpus-scale", "--out", str(tmp_path), "--subjects", "6", "--array-jobs", "2", "--keep"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "corpus_scale.json").read_text())
    assert result["records"] == result["source_records"] >= 6  # every synthetic study prepared, none skipped
    prepared = tmp_path / "corpus_scale_work" / "prepared"
    manifests = sum(len(read_manifest(prepared / f"{s}.tsv")[1]) for s in ("train", "valid", "test"))
    assert manifests == result["records"]
    assert [p.name for p in prepared.iterdir() if p.name.startswith("shard")] == []  # merged, not left as shards
    assert all((prepared / f"{s}.packed").is_dir() for s in ("train", "valid", "test"))
    for name, stage in result["stages"].items():
        assert stage["wall_s"] > 0 and stage["cpu_s"] >= 0, name
    assert result["stages"]["read"]["records"] == len(read_manifest(prepared / "train.tsv")[1])
    per_record = result["bytes_per_record"]
    # 16-bit sources: two bytes a sample in the WFDB files and in the int16 pack, four in the .mat records.
    assert 2 * SAMPLES < per_record["wfdb source"] < 2 * SAMPLES + 2000
    assert 2 * SAMPLES < per_record["packs"] < 2 * SAMPLES + 1000
    assert per_record["records"] > 4 * SAMPLES
    assert "100 array jobs" in printed and "GiB at 800,000" in printed
    # Run again (as make perf does): the kept work folder of the earlier run is replaced.
    assert main(["corpus-scale", "--out", str(tmp_path), "--subjects", "3", "--array-jobs", "1"]) == 0
    assert json.loads((tmp_path / "corpus_scale.json").read_text())["subjects"] == 3
    assert not (tmp_path / "corpus_scale_work").exists()


def test_projection_spreads_preparation_over_the_jobs_and_packing_over_a_node():
    stage = {"wall_s": 0.0, "cpu_s": 0.0}
    result = {
        "records": 1000,
        "pack_workers": 2,
        "bytes_per_record": {"packs": 2**20},
        "stages": {
            "prepare": {**stage, "cpu_s": 8.0},
            "job start": {**stage, "wall_s": 3.0},
            "command start": {**stage, "wall_s": 2.0},
            "merge": {**stage, "wall_s": 1.0},
            "pack": {**stage, "wall_s": 5.0},
        },
    }
    projection = project(result, 100_000, node_cores=4, array_jobs=(10,))
    start = 2.0 + 1.0 * 100  # the imports once, the listing beyond them 100 times as long
    assert projection["job_start_s"] == pytest.approx(start)
    one, ten = projection["layouts"]["one node"], projection["layouts"]["10 array jobs"]
    assert one["prepare_h"] * 3600 == pytest.approx(8e-3 * 100_000 / 4 + start)
    assert ten["prepare_h"] * 3600 == pytest.approx(8e-3 * 100_000 / 40 + start)
    assert one["merge_h"] == ten["merge_h"] == pytest.approx(100 / 3600)
    assert one["pack_h"] == ten["pack_h"] == pytest.approx(500 * 2 / 4 / 3600)  # 2 pack workers measured, 4 cores
    assert projection["disk_gib"]["packs"] == pytest.approx(100_000 / 1024)


def test_a_folder_it_did_not_make_is_refused(tmp_path, capsys):
    (tmp_path / "corpus_scale_work").mkdir()
    (tmp_path / "corpus_scale_work" / "mine.txt").write_text("a user's file")
    assert main(["corpus-scale", "--out", str(tmp_path), "--subjects", "2"]) == 2
    err = capsys.readouterr().err
    assert "not an earlier corpus-scale run's" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "corpus_scale_work" / "mine.txt").is_file()
