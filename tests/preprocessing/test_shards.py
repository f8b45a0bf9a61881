"""Preparation in shards: shards running at once merge into the bytes of a one-process run; the
shard of a key is the same in every process; a missing, unfinished, running or different shard is
refused in one line; packing happens at the merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from fairseq_goodviews.cli.merge_shards import main as merge_main
from fairseq_goodviews.cli.prepare_chapman import main as chapman_main
from fairseq_goodviews.cli.prepare_wfdb_dir import main as wfdb_main
from fairseq_goodviews.io.locks import exclusive_lock, shared_lock
from fairseq_goodviews.io.packed import pack_problem
from fairseq_goodviews.io.records import EcgRecord
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions, Skipped, SkipRecord, SourceItem
from fairseq_goodviews.preprocessing.pipeline import merge_shards, prepare
from fairseq_goodviews.preprocessing.shards import parse_shard, shard_of
from fairseq_goodviews.synthetic.chapman import generate_chapman
from fairseq_goodviews.synthetic.mimic_iv_ecg import generate_mimic_iv_ecg
from fairseq_goodviews.synthetic.wfdb_layouts import write_wfdb_dir_tree

# Set by a test to stop the converter (as Ctrl-C would) after this many records.
_INTERRUPT_AFTER: list[int] = []


def convert(item: SourceItem) -> EcgRecord:
    """Test converter: ``item.source`` is a seed; seeds divisible by 7 are rejected."""
    if _INTERRUPT_AFTER:
        _INTERRUPT_AFTER[0] -= 1
        if _INTERRUPT_AFTER[0] < 0:
            raise KeyboardInterrupt
    if item.source % 7 == 0:
        raise SkipRecord("no such rhythm", category="unknown_label")
    feats = np.random.default_rng(item.source).standard_normal((12, 500)).astype(np.float32)
    return EcgRecord(feats=feats, sample_rate=500.0, meta={"age": 30 + item.source})


def items(n: int = 24) -> list[SourceItem]:
    return [
        SourceItem(key=f"r{i:02d}", patient_id=f"p{i // 2}", meta={"label": "SR" if i % 3 else "SB"}, source=i)
        for i in range(n)
    ]


def run(out: Path, shard: tuple[int, int] | None = None, source: str = "test", **options):
    """Prepare ``items()`` into ``out`` (one shard of it with ``shard``); one record skipped up front."""
    return prepare(
        items(),
        convert,
        out,
        options=PrepareOptions(progress=False, shard=shard, **options),
        skipped=[Skipped("gone", "gone.csv", "no signal file", "missing_file")],
        source=source,
    )


def outputs(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` but the journals, locks and shard states of ``.prepare/``."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and ".prepare" not in path.parts
    }


def assert_merge_equals_one_process(tmp_path: Path, prepare_one, prepare_shards, merge) -> None:
    """Prepare into OUT in one process, move it aside, prepare OUT again in 3 shards and merge: the
    same bytes (manifests name OUT as their root, so both runs write the same path)."""
    out = tmp_path / "out"
    prepare_one(out)
    reference = outputs(out)
    reference_journal = (out / ".prepare" / "journal.jsonl").read_bytes()
    out.rename(tmp_path / "one")
    prepare_shards(out)
    assert not (out / "train.tsv").exists() and not (out / "prepare_report.json").exists()
    merge(out)
    merged = outputs(out)
    assert sorted(merged) == sorted(reference)
    assert any(name.startswith("records/") for name in merged)
    assert {"train.tsv", "train.csv", "skipped.csv", "prepare_report.json"} <= set(merged)
    assert [name for name in merged if merged[name] != reference[name]] == []
    # The merged journal is the one-process run's, and the shards' own files are gone.
    assert sorted(p.name for p in (out / ".prepare").iterdir()) == ["journal.jsonl", "lock"]
    assert (out / ".prepare" / "journal.jsonl").read_bytes() == reference_journal


def test_chapman_shards_run_at_once_in_three_processes_and_merge_to_the_one_process_bytes(tmp_path, capsys):
    src = tmp_path / "src"
    generate_chapman(src, 60, seed=3)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

    def shards(out: Path) -> None:
        command = [sys.executable, "-m", "fairseq_goodviews.cli.prepare_chapman", str(src), str(out), "--no-progress"]
        processes = [
            subprocess.Popen(
                [*command, "--shard", f"{i}/3"],
                env=dict(env, PYTHONHASHSEED=str(11 + i)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(3)
        ]
        finished = [p.communicate(timeout=300) for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in finished]
        written = [int(out.split(" wrote ")[1].split()[0]) for out, _ in finished]
        assert sum(written) == 60 and all(written)
        keys = sorted(p.stem for p in (src / "ECGDataDenoised").glob("*.csv"))
        for i, (stdout, _) in enumerate(finished):
            assert f"shard {i}/3 wrote {sum(shard_of(k, 3) == i for k in keys)} records" in stdout

    assert_merge_equals_one_process(
        tmp_path,
        lambda out: chapman_main([str(src), str(out), "--no-progress"]),
        shards,
        lambda out: merge_main([str(out)]),
    )
    assert "chapman: wrote 60 records to" in capsys.readouterr().out.splitlines()[-1]


def test_wfdb_folder_shards_merge_to_the_one_process_bytes(tmp_path, capsys):
    src = tmp_path / "src"
    write_wfdb_dir_tree(src, n_records=9, seconds=3.0)
    common = ["--no-progress", "--segment-seconds", "1"]

    def shards(out: Path) -> None:
        for i in (2, 0, 1):
            assert wfdb_main([str(src), str(out), *common, "--shard", f"{i}/3"]) == 0

    assert_merge_equals_one_process(
        tmp_path,
        lambda out: wfdb_main([str(src), str(out), *common]),
        shards,
        lambda out: merge_main([str(out)]),
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2].startswith("wfdb_dir: wrote 9 records (27 files) to") and "merged 3 shards" in printed[-2]
    assert printed[-1].startswith("ignored channels (records): ")


def test_the_shard_of_a_key_is_the_same_in_every_process():
    keys = [f"JS{i:05d}" for i in range(200)] + ["40689238", "rec_1.2+x"]
    here = [shard_of(k, 7) for k in keys]
    assert set(here) == set(range(7))
    script = f"from fairseq_goodviews.preprocessing.shards import shard_of; print([shard_of(k, 7) for k in {keys!r}])"
    for seed in ("1", "2"):
        printed = subprocess.run(
            [sys.executable, "-c", script],
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONHASHSEED=seed),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(printed) == here


def test_a_missing_or_unfinished_shard_is_named(tmp_path):
    out = tmp_path / "out"
    run(out, (0, 3))
    _INTERRUPT_AFTER.append(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(out, (1, 3))
    finally:
        _INTERRUPT_AFTER.clear()
    with pytest.raises(PrepareError) as refused:
        merge_shards(out)
    assert str(refused.value) == (
        f"{out}: cannot merge, shard 1/3 unfinished, 2/3 missing (run each with --shard I/3, then merge again)"
    )
    result = run(out, (1, 3))
    converted_first = [i for i in range(24) if shard_of(f"r{i:02d}", 3) == 1][:2]
    assert result.reused == sum(1 for i in converted_first if i % 7)  # rejected records are tried again
    assert result.shard == (1, 3) and not result.splits
    run(out, (2, 3))
    merged = merge_shards(out)
    assert merged.records == sum(1 for i in range(24) if i % 7) and merged.report["source_records"] == 25


def test_a_one_process_run_reuses_the_shards_and_shards_of_another_count_reuse_the_merge(tmp_path):
    out = tmp_path / "out"
    first = run(out, (0, 2))
    whole = run(out)  # finishes what shard 0/2 began, and supersedes it
    assert first.records > 0 and whole.reused == first.records
    assert not list((out / ".prepare").glob("*shard*"))
    reference = outputs(out)
    again = [run(out, (i, 3)) for i in range(3)]
    assert [s.reused for s in again] == [s.records for s in again] and sum(s.records for s in again) == whole.records
    merge_shards(out)
    assert outputs(out) == reference


def test_shards_with_other_options_or_another_source_are_not_merged(tmp_path, capsys):
    out = tmp_path / "out"
    run(out, (0, 2))
    run(out, (1, 2), seed=1)
    with pytest.raises(PrepareError, match=r"shards 0/2 and 1/2 were prepared with other options \(seed 0 -> 1\)"):
        merge_shards(out)
    run(out, (1, 2), source="other")
    assert merge_main([str(out)]) == 2
    error = capsys.readouterr().err
    assert error == (
        f"goodviews-merge-shards: error: {out}: shards 0/2 and 1/2 were prepared from other sources (test, other): "
        "prepare every shard with the same command but its --shard\n"
    )
    run(out, (0, 3))  # shards of two counts: the merge asks which
    with pytest.raises(PrepareError, match=r"holds shards of several counts \(N = 2, 3\): give --shards N$"):
        merge_shards(out)
    with pytest.raises(PrepareError, match=r"cannot merge, shard 1/3 missing, 2/3 missing"):
        merge_shards(out, shards=3)
    run(out, (1, 2))
    assert merge_shards(out, shards=2).records == 20
    assert not list((out / ".prepare").glob("*shard*"))  # a merge removes every shard's files


def test_shards_share_the_folder_and_keep_out_a_merge_and_a_one_process_run(tmp_path):
    out = tmp_path / "out"
    run(out, (0, 2))
    lock = out / ".prepare" / "lock"
    with shared_lock(lock, "a shard", PrepareError):  # a shard is running
        run(out, (1, 2))  # another shard runs beside it
        with pytest.raises(PrepareError, match=rf"^{lock}: a shard or another preparation is writing {out}$"):
            merge_shards(out)
        with pytest.raises(PrepareError, match=rf"^{lock}: another preparation is writing {out}$"):
            run(out)
        with exclusive_lock(out / ".prepare" / "lock.shard-1-of-2", "shard 1/2", PrepareError):
            with pytest.raises(PrepareError, match=r"lock.shard-1-of-2: shard 1/2 is already running in"):
                run(out, (1, 2))
    with exclusive_lock(lock, "a merge", PrepareError):
        with pytest.raises(PrepareError, match=r"a merge or a one-process preparation is writing"):
            run(out, (0, 2))
    merge_shards(out)


def test_packing_happens_at_the_merge(tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(PrepareError, match=r"^--pack packs the merged splits: give it to goodviews-merge-shards"):
        run(out, (0, 2), pack=True)
    run(out, (0, 2))
    run(out, (1, 2))
    assert not list(out.glob("*.packed"))
    assert merge_main([str(out), "--pack", "--workers", "2"]) == 0
    assert {p.name for p in out.glob("*.packed")} == {f"{s}.packed" for s in ("train", "valid", "test")}
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["options"]["pack"] is True and set(report["packed"]) == {"train", "valid", "test"}
    assert report["options"]["workers"] == 1  # the shards' run option, not the merge's pack workers
    assert capsys.readouterr().out.count("packed") == 3
    for split in ("train", "valid", "test"):
        assert pack_problem(out / f"{split}.tsv") is None


def test_a_malformed_shard_option_is_one_line(tmp_path, capsys):
    assert parse_shard(" 2 / 8 ") == (2, 8)
    for text, problem in (("3/3", "I must be at least 0 and below N"), ("1-4", "give I/N, e.g. 0/8")):
        assert chapman_main([str(tmp_path), str(tmp_path / "out"), "--shard", text]) == 2
        assert problem in capsys.readouterr().err
    assert merge_main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (
        f"goodviews-merge-shards: error: {tmp_path / 'nothing'}: no shard to merge "
        "(run the preparer with --shard I/N first)\n"
    )


@pytest.mark.slow
def test_the_slurm_array_example_submits_its_tasks_and_merge_and_they_give_the_one_process_bytes(tmp_path):
    """examples/slurm_prepare_array.sbatch without SLURM: a stand-in ``sbatch`` records what the
    login-node half submits; the tasks and the merge then run as SLURM would start them."""
    src = tmp_path / "src"
    generate_mimic_iv_ecg(src, 4, visits=(2, 2), seconds=2.0, seed=3)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch_calls"
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" "--" >> {calls}\necho 4$(grep -c -- "^--$" {calls})\n')
    sbatch.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = str(Path(REPO_ROOT) / "examples" / "slurm_prepare_array.sbatch")
    preparer = ["goodviews-prepare-mimic-iv-ecg", str(src)]

    def prepare_one(out: Path) -> None:
        command = [*preparer, str(out), "--no-attributes", "--no-progress"]
        subprocess.run(command, env=env, check=True, capture_output=True)

    def prepare_shards(out: Path) -> None:
        submit = {**env, "SHARDS": "2", "MERGE_CPUS": "3", "MERGE_OPTIONS": ""}
        done = subprocess.run(
            ["bash", script, *preparer, str(out), "--no-attributes"], env=submit, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "as array job 41 (0-1) and their merge as job 42" in done.stdout
        array, merge = [call.strip("\n").split("\n") for call in calls.read_text().split("--\n") if call.strip()]
        assert "--array=0-1" in array and array[-4:] == [*preparer, str(out), "--no-attributes"]
        assert "--dependency=afterok:41" in merge and "--cpus-per-task=3" in merge
        prepare_shards.wrap = next(a for a in merge if a.startswith("--wrap="))[len("--wrap=") :]
        assert prepare_shards.wrap.strip() == f"goodviews-merge-shards '{out}' --workers 3"
        for task in range(2):
            task_env = {**env, "SLURM_ARRAY_TASK_ID": str(task), "SHARDS": "2", "SLURM_CPUS_PER_TASK": "1"}
            done = subprocess.run(["bash", script, *array[-4:]], env=task_env, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr

    def merge(out: Path) -> None:
        subprocess.run(["bash", "-c", prepare_shards.wrap], env=env, check=True, capture_output=True)

    assert_merge_equals_one_process(tmp_path, prepare_one, prepare_shards, merge)
