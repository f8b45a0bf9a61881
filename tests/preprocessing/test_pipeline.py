"""The shared preprocessing engine: outcomes, skip report, resume, splits, workers, segmentation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairseq_goodviews.io.manifest import read_manifest, read_metadata
from fairseq_goodviews.io.packed import pack_problem
from fairseq_goodviews.io.records import EcgRecord, RecordError, read_record
from fairseq_goodviews.preprocessing import journal, workers
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions, Skipped, SkipRecord, SourceItem
from fairseq_goodviews.preprocessing.pipeline import prepare
from fairseq_goodviews.preprocessing.splits import assign_splits, patient_numbers

REPO = Path(__file__).resolve().parents[2]
LABELS = ("AFIB", "GSVT", "SB", "SR")
# Set by tests to make the converter stop the run (simulating Ctrl-C) after this many records.
_INTERRUPT_AFTER: list = []


@dataclass(frozen=True)
class Synthetic:
    """Test converter: ``item.source`` is ``kind:seed:n_samples``; ``kind`` picks the outcome."""

    def __call__(self, item: SourceItem) -> EcgRecord:
        if _INTERRUPT_AFTER:
            _INTERRUPT_AFTER[0] -= 1
            if _INTERRUPT_AFTER[0] < 0:
                raise KeyboardInterrupt
        time.sleep(float(os.environ.get("GOODVIEWS_TEST_DELAY", "0")))
        kind, seed, n_samples = item.source.split(":")
        feats = np.random.default_rng(int(seed)).standard_normal((12, int(n_samples))).astype(np.float32)
        if kind == "nan":
            feats[3, 10] = np.nan
        elif kind == "flat":
            feats[7] = 0.25
        elif kind == "flat_tail":
            feats[2, 1000:] = 0.0
        elif kind == "skip":
            raise SkipRecord("no such rhythm", category="unknown_label")
        elif kind == "corrupt":
            raise RecordError("/data/broken.dat", "truncated file")
        elif kind == "bug":
            raise ZeroDivisionError("division by zero")
        return EcgRecord(feats=feats, sample_rate=500.0, meta={"age": 40 + int(seed) % 40, "scale": 1.5})


def make_items(n: int, n_samples: int = 1000, kinds: dict | None = None, records_per_patient: int = 1):
    kinds = kinds or {}
    return [
        SourceItem(
            key=f"rec{i:03d}",
            patient_id=f"p{i // records_per_patient:03d}",
            meta={"label": LABELS[(i // records_per_patient) % 4], "sex": "MF"[i % 2]},
            source=f"{kinds.get(i, 'ok')}:{i}:{n_samples}",
        )
        for i in range(n)
    ]


def run(items, out, **options):
    options.setdefault("progress", False)
    return prepare(items, Synthetic(), out, options=PrepareOptions(**options), source="test")


def manifest_bytes(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tsv")) + sorted(out.glob("*.csv"))}


def without_root(files: dict) -> dict:
    """Manifests of two output folders differ only in the root line of the .tsv files."""
    return {k: v.split(b"\n", 1)[1] if k.endswith(".tsv") else v for k, v in files.items()}


def test_writes_records_manifests_and_reports(tmp_path):
    items = make_items(20)
    result = run(items, tmp_path / "out")
    out = tmp_path / "out"
    assert result.records == 20 and result.files == 20 and not result.skipped
    assert sorted(p.name for p in (out / "records").iterdir()) == [f"rec{i:03d}.mat" for i in range(20)]
    total = 0
    for split in ("train", "valid", "test"):
        root, entries = read_manifest(out / f"{split}.tsv")
        assert root == out.resolve()
        table = read_metadata(out, split, required=("patient_id", "label", "age"))
        total += len(table)
        for rel, n_samples in entries:
            record = read_record(root / rel)
            assert n_samples == record.n_samples == 1000
            assert record.meta["record_id"] == Path(rel).stem
        assert (table["sample_rate"] == 500.0).all() and (table["scale"] == 1.5).all()
    assert total == 20
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["written_records"] == 20 and report["skipped"] == 0
    assert report["options"]["split_fractions"] == [0.6, 0.2, 0.2]
    assert pd.read_csv(out / "skipped.csv").empty


def test_record_files_hold_fairseq_signals_numeric_label_and_patient_beside_our_strings(tmp_path):
    items = make_items(12, n_samples=1200, records_per_patient=3)
    items[5] = SourceItem(items[5].key, items[5].patient_id, {**items[5].meta, "label": ""}, items[5].source)
    run(items, tmp_path / "out", segment_samples=500)
    numbers = {}
    for path in sorted((tmp_path / "out" / "records").iterdir()):
        meta = read_record(path).meta
        key = path.stem.split("_")[0]
        item = next(i for i in items if i.key == key)
        assert meta["label_classes"] == ",".join(LABELS)
        assert meta["label"].dtype == np.uint8 and meta["label"].shape == (4,)  # logical [1, 4] in the file
        if item.meta["label"]:
            assert meta["label_name"] == item.meta["label"]
            assert meta["label"].tolist() == [int(c == item.meta["label"]) for c in LABELS]
        else:
            assert meta["label_name"] == "" and not meta["label"].any()
        assert isinstance(meta["patient_id"], int) and meta["patient"] == item.patient_id
        assert numbers.setdefault(item.patient_id, meta["patient_id"]) == meta["patient_id"]  # segments agree
    assert numbers == {f"p{i:03d}": i for i in range(4)}  # ranks of the sorted ids
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["record_labels"] == {"name": "rhythm", "classes": list(LABELS)}


def test_patient_numbers_keep_integer_ids_and_rank_the_others():
    assert patient_numbers(["15709", "3", "15709", "-2"]) == {"15709": 15709, "3": 3, "-2": -2}
    # a non-integer, a leading zero or an id beyond int32 and every id gets its rank instead
    for ids in (["12", "p7"], ["12", "007"], ["12", str(2**31)]):
        assert patient_numbers(ids) == {i: n for n, i in enumerate(sorted(ids))}


def test_every_rejection_is_reported(tmp_path, capsys):
    kinds = {1: "nan", 2: "flat", 3: "skip", 4: "corrupt", 5: "bug"}
    pre = [Skipped("young", "/data/young.csv", "age 12 below --min-age 18", "filtered")]
    result = prepare(
        make_items(10, kinds=kinds),
        Synthetic(),
        tmp_path / "out",
        skipped=pre,
        options=PrepareOptions(progress=False),
        source="test",
    )
    assert result.records == 5
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv").set_index("key")
    assert list(skipped.columns) == ["file", "reason", "category"]
    assert skipped.loc["young", "category"] == "filtered"
    assert skipped.loc["rec001", "category"] == "bad_signal" and "NaN" in skipped.loc["rec001", "reason"]
    assert "aVR" in skipped.loc["rec001", "reason"]
    assert skipped.loc["rec002", "category"] == "bad_signal" and "flat lead(s) V2" in skipped.loc["rec002", "reason"]
    assert skipped.loc["rec003", "category"] == "unknown_label"
    assert skipped.loc["rec004", "file"] == "/data/broken.dat"
    assert skipped.loc["rec004", "reason"] == "truncated file"
    assert skipped.loc["rec005", "category"] == "error" and "ZeroDivisionError" in skipped.loc["rec005", "reason"]
    assert not any((tmp_path / "out" / "records" / f"rec00{i}.mat").exists() for i in range(1, 6))
    assert not list((tmp_path / "out" / "records").glob(".*"))
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["skipped_by_category"] == {
        "bad_signal": 2,
        "error": 1,
        "filtered": 1,
        "unknown_label": 1,
        "unreadable": 1,
    }
    assert report["source_records"] == 11
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("test: wrote 5 records") and "skipped 6" in line


def test_rerun_reuses_finished_records(tmp_path):
    out = tmp_path / "out"
    items = make_items(12)
    run(items, out)
    first = manifest_bytes(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    result = run(items, out)
    assert result.reused == 12
    assert manifest_bytes(out) == first
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()} == mtimes


def test_changed_items_are_redone_and_stale_files_removed(tmp_path):
    out = tmp_path / "out"
    items = make_items(12)
    run(items, out)
    changed = items[:10]
    changed[0] = SourceItem(
        changed[0].key, changed[0].patient_id, {**changed[0].meta, "label": "SB"}, changed[0].source
    )
    result = run(changed, out)
    assert result.reused == 9
    assert sorted(p.name for p in (out / "records").glob("*.mat")) == [f"rec{i:03d}.mat" for i in range(10)]
    table = pd.concat([read_metadata(out, s) for s in ("train", "valid", "test")]).set_index("record_id")
    assert table.loc["rec000", "label"] == "SB"


def test_interrupted_run_resumes_to_identical_output(tmp_path):
    out = tmp_path / "out"
    items = make_items(16)
    run(items, out)
    reference = manifest_bytes(out)
    for path in sorted(out.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()

    _INTERRUPT_AFTER.append(7)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(items, out)
    finally:
        _INTERRUPT_AFTER.clear()
    assert not (out / "train.tsv").exists()
    result = run(items, out)
    assert result.reused == 7
    assert manifest_bytes(out) == reference


def test_sigkill_mid_run_then_rerun_is_identical(tmp_path):
    """kill -9 of the whole process group (workers included) half-way, then a normal re-run."""
    items = make_items(40)
    run(items, tmp_path / "reference")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]
        from test_pipeline import make_items, run
        run(make_items(40), {str(out)!r}, workers=2, chunksize=1)
    """)
    env = dict(os.environ, GOODVIEWS_TEST_DELAY="0.1")
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    journal = out / ".prepare" / "journal.jsonl"
    deadline = time.time() + 30
    while time.time() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 8:
            break
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    with pytest.raises(PrepareError) as refused:  # a second preparation into the same folder meanwhile
        run(items, out)
    assert str(refused.value) == f"{out / '.prepare' / 'lock'}: another preparation is writing {out}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + 10
    while time.time() < deadline:  # the workers die a moment after the main process
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    assert not (out / "train.tsv").exists()
    done = journal.read_text().count("\n")
    assert 8 <= done < 40

    result = run(items, out, workers=2)
    assert result.reused >= done
    assert without_root(manifest_bytes(out)) == without_root(manifest_bytes(tmp_path / "reference"))
    assert not [p for p in (out / "records").iterdir() if not p.name.endswith(".mat")]


def test_workers_do_not_change_the_output(tmp_path):
    items = make_items(30, kinds={4: "nan", 9: "skip"}, records_per_patient=2)
    run(items, tmp_path / "one", workers=1)
    run(items, tmp_path / "two", workers=2, chunksize=3, progress=True)
    assert without_root(manifest_bytes(tmp_path / "one")) == without_root(manifest_bytes(tmp_path / "two"))
    for path in (tmp_path / "one" / "records").iterdir():
        assert path.read_bytes() == (tmp_path / "two" / "records" / path.name).read_bytes()


def test_splits_are_patient_wise_stratified_and_seeded(tmp_path):
    items = make_items(400, n_samples=100, records_per_patient=2)
    result = run(items, tmp_path / "out", seed=3)
    patients = {name: set(part["patient_id"]) for name, part in result.splits.items()}
    assert not (
        patients["train"] & patients["valid"]
        or patients["train"] & patients["test"]
        or patients["valid"] & patients["test"]
    )
    # every label gets 60/20/20 of its 50 patients
    for name, expected in (("train", 30), ("valid", 10), ("test", 10)):
        counts = result.splits[name].drop_duplicates("patient_id")["label"].value_counts()
        assert counts.to_dict() == {label: expected for label in LABELS}
    table = pd.DataFrame(
        {"patient_id": [f"p{i // 2}" for i in range(400)], "label": [LABELS[(i // 2) % 4] for i in range(400)]}
    )
    again = assign_splits(table, seed=3, stratify_by="label")
    assert again.equals(assign_splits(table, seed=3, stratify_by="label"))
    assert not again.equals(assign_splits(table, seed=4, stratify_by="label"))
    assert (again.groupby(table["patient_id"]).nunique() == 1).all()


def test_predefined_splits_and_fractions(tmp_path):
    items = [
        SourceItem(i.key, i.patient_id, {**i.meta, "fold": ("train", "valid", "test")[n % 3]}, i.source)
        for n, i in enumerate(make_items(9))
    ]
    result = run(items, tmp_path / "out", split_column="fold")
    assert {name: list(part["fold"].unique()) for name, part in result.splits.items()} == {
        "train": ["train"],
        "valid": ["valid"],
        "test": ["test"],
    }
    result = run(make_items(10), tmp_path / "all", split_fractions=(1.0, 0.0, 0.0))
    assert list(result.splits) == ["train"] and not (tmp_path / "all" / "valid.tsv").exists()
    with pytest.raises(PrepareError, match="sum to 1"):
        run(make_items(3), tmp_path / "bad", split_fractions=(0.5, 0.2, 0.2))


def test_segmentation(tmp_path):
    items = [
        *make_items(4, n_samples=2600),
        SourceItem("short", "ps", {"label": "SR"}, "ok:99:800"),
        SourceItem("tail", "pt", {"label": "SR"}, "flat_tail:98:2600"),
    ]
    result = run(items, tmp_path / "out", segment_samples=1000)
    assert result.records == 5 and result.files == 4 * 2 + 1
    table = pd.concat(result.splits.values())
    assert set(table.loc[table["record_id"] == "rec000", "segment"]) == {0, 1}
    assert (table["n_samples"] == 1000).all()
    record = read_record(tmp_path / "out" / "records" / "rec001_1.mat")
    full = Synthetic()(items[1])
    np.testing.assert_array_equal(record.feats, full.feats[:, 1000:2000])
    assert record.meta["record_id"] == "rec001" and record.meta["segment"] == 1
    # segments of one record stay in one split
    assert (table.groupby("record_id")["path"].count() <= 2).all()
    split_of = {row.path: name for name, part in result.splits.items() for row in part.itertuples()}
    assert split_of["records/rec002_0.mat"] == split_of["records/rec002_1.mat"]
    skipped = {s.key: s for s in result.skipped}
    assert skipped["short"].category == "too_short"
    assert skipped["tail_1"].category == "bad_signal" and "flat lead(s) III" in skipped["tail_1"].reason
    assert (tmp_path / "out" / "records" / "tail_0.mat").exists()


def test_a_folder_with_the_old_segment_names_is_rewritten_with_the_new_ones(tmp_path, monkeypatch):
    """Segments were once ``<key>_s<k>.mat``: a re-run converts such records again under the
    names fairseq-signals reads and removes the old files, so the manifests never mix both."""
    out = tmp_path / "out"
    items = make_items(6, n_samples=2000)
    with monkeypatch.context() as old:
        old.setattr(workers, "record_stem", lambda key, segment: key if segment is None else f"{key}_s{segment}")
        run(items, out, segment_samples=1000)
    assert sorted(p.name for p in (out / "records").glob("rec000_*.mat")) == ["rec000_s0.mat", "rec000_s1.mat"]
    before = {name: read_metadata(out, name) for name in ("train", "valid", "test")}
    result = run(items, out, segment_samples=1000, pack=True)
    assert result.reused == 0 and result.files == 12
    names = sorted(p.name for p in (out / "records").glob("*.mat"))
    assert names == [f"rec{i:03d}_{k}.mat" for i in range(6) for k in (0, 1)]
    for name, table in before.items():
        after = read_metadata(out, name)
        assert after["path"].tolist() == [p.replace("_s", "_") for p in table["path"]]
        pd.testing.assert_frame_equal(after.drop(columns="path"), table.drop(columns="path"))
        assert pack_problem(out / f"{name}.tsv") is None
    assert run(items, out, segment_samples=1000, pack=True).reused == 6


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    with pytest.raises(PrepareError, match="no source records"):
        run([], tmp_path / "a")
    with pytest.raises(PrepareError, match="duplicate record key"):
        run(make_items(2) + make_items(1), tmp_path / "b")
    with pytest.raises(PrepareError, match="unusable as file names"):
        run([SourceItem("../x", "p", {}, "ok:1:100")], tmp_path / "c")
    with pytest.raises(PrepareError, match="no record written"):
        run(make_items(2, kinds={0: "nan", 1: "skip"}), tmp_path / "d")
    assert len(pd.read_csv(tmp_path / "d" / "skipped.csv")) == 2
    foreign = tmp_path / "e" / "records"
    foreign.mkdir(parents=True)
    (foreign / "someone_else.mat").write_bytes(b"")
    with pytest.raises(PrepareError, match="did not write"):
        run(make_items(2), tmp_path / "e")


def test_a_folder_prepared_with_other_options_is_refused_unless_overwrite(tmp_path):
    items = make_items(40, n_samples=100, records_per_patient=2)
    out = tmp_path / "out"
    run(items, out, seed=1)
    before = manifest_bytes(out)
    run(items, out, seed=1, workers=2)  # how fast is not what it writes: no refusal
    with pytest.raises(PrepareError, match=r"prepared with other options \(seed 1 -> 2\): pass --overwrite"):
        run(items, out, seed=2)
    assert manifest_bytes(out) == before  # nothing rewritten
    run(items, out, seed=2, overwrite=True)
    assert manifest_bytes(out) != before


# --- the journal: a record's line only after the flush of its files to the disk ----------------


def _record_flushes(monkeypatch, out: Path) -> list[set[str]]:
    """Replace the journal's flush with one that checks the journal and records each flush's files."""
    flushes: list[set[str]] = []
    real = journal.make_durable

    def checked(folder, files):
        files = {Path(f).name for f in files}
        journal_path = out / ".prepare" / "journal.jsonl"
        journaled = journal_path.read_text().splitlines() if journal_path.exists() else []
        durable = set().union(*flushes)
        for line in journaled:  # every line written so far names files flushed before
            assert {Path(row["path"]).name for row in json.loads(line)["rows"]} <= durable
        assert not files & durable  # each file is flushed once
        assert Path(folder) == out / "records"
        real(folder, [Path(folder) / name for name in files])
        flushes.append(files)

    monkeypatch.setattr(journal, "make_durable", checked)
    return flushes


@pytest.mark.parametrize("workers", [1, 2])
def test_each_line_follows_the_flush_of_its_files(tmp_path, monkeypatch, workers):
    out = tmp_path / "out"
    monkeypatch.setattr(journal, "COMMIT_SECONDS", 0.0)  # a flush after every record
    flushes = _record_flushes(monkeypatch, out)
    items = make_items(12, kinds={3: "skip"})
    result = run(items, out, workers=workers, chunksize=1)
    assert result.records == 11
    assert len(flushes) == 11 and set().union(*flushes) == {p.name for p in (out / "records").glob("*.mat")}


def test_records_finished_within_the_interval_are_flushed_together(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(journal, "COMMIT_SECONDS", 3600.0)
    flushes = _record_flushes(monkeypatch, out)
    run(make_items(12), out)
    assert [len(files) for files in flushes] == [12]
