"""``--pack`` on the preparers: every split packed right after its manifest, the pack read by
training without any option, never an outdated pack left behind, and a failed pack is one line
with no pack file left."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import console_script
from fairseq_goodviews.cli import (
    import_fairseq_signals,
    prepare_chapman,
    prepare_physionet2021,
    prepare_ptbxl,
    prepare_wfdb_dir,
)
from fairseq_goodviews.data.ecg_dataset import EcgRecordSource
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.io.packed import ShardedPack, pack_folder, pack_problem
from fairseq_goodviews.io.records import read_record
from fairseq_goodviews.preprocessing.chapman import prepare_chapman as prepare_chapman_library
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions
from fairseq_goodviews.synthetic.chapman import generate_chapman

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "valid", "test")


@pytest.fixture(scope="module")
def chapman_src(tmp_path_factory) -> Path:
    """A synthetic Chapman folder of 12 records (10 s at 500 Hz)."""
    src = tmp_path_factory.mktemp("chapman_src")
    generate_chapman(src, 12, seed=0)
    return src


def run_chapman(src: Path, out: Path, *args: str) -> None:
    assert prepare_chapman.main([str(src), str(out), "--no-progress", *args]) == 0


def pack_files(out: Path) -> list[str]:
    """Every pack file in ``out``, temporary ones included."""
    return sorted(p.name for p in out.iterdir() if ".packed" in p.name)


def assert_packs_equal_the_records(out: Path, splits=SPLITS) -> None:
    for split in splits:
        manifest = out / f"{split}.tsv"
        assert pack_problem(manifest) is None
        pack = ShardedPack(manifest)
        root, entries = read_manifest(manifest)
        assert len(pack) == len(entries) > 0
        for i, (rel, n_samples) in enumerate(entries):
            record = read_record(root / rel, with_meta=False)
            assert pack.lengths[i] == n_samples
            np.testing.assert_array_equal(pack.read(i), record.feats)
            np.testing.assert_array_equal(pack.lead_present[i], record.lead_present)
            assert pack.sample_rates[i] == record.sample_rate


@pytest.mark.parametrize(
    "module", [prepare_chapman, prepare_physionet2021, prepare_ptbxl, prepare_wfdb_dir, import_fairseq_signals]
)
def test_every_preparer_offers_pack(module, capsys):
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    assert info.value.code == 0
    assert "--pack" in capsys.readouterr().out


def test_pack_writes_each_split_and_training_reads_it(chapman_src, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    run_chapman(chapman_src, out, "--pack")
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["options"]["pack"] is True and list(report["packed"]) == list(SPLITS)
    for split, line in zip(SPLITS, lines[1:], strict=True):  # the summary line, then one per split
        records = report["packed"][split]["records"]
        assert line.startswith(f"{split}: {records} records, ") and line.endswith(f"-> {out / split}.packed")
        shards = list(pack_folder(out / f"{split}.tsv").glob("shard-*.npy"))
        assert report["packed"][split]["bytes"] == sum(p.stat().st_size for p in shards)
        # Chapman's microvolts have three decimals: not whole 16-bit steps, so float32.
        assert report["packed"][split]["float32_records"] == records and report["packed"][split]["shards"] == 1
    assert sum(report["packed"][s]["records"] for s in SPLITS) == 12
    assert_packs_equal_the_records(out)

    # Training's record source takes the pack without being asked, and says so.
    with caplog.at_level(logging.INFO, logger="fairseq_goodviews.data.ecg_dataset"):
        source = EcgRecordSource(out / "train.tsv", 500.0)
    assert source.pack is not None and source.pack.location == out / "train.packed"
    assert f"reading the records from the pack {out / 'train.packed'}" in caplog.text
    plain = EcgRecordSource(out / "train.tsv", 500.0, use_pack=False)
    for i in range(len(source)):
        (feats, present), (mat_feats, mat_present) = (
            s.load(i, 2500, np.random.default_rng(i)) for s in (source, plain)
        )
        np.testing.assert_array_equal(feats, mat_feats)
        np.testing.assert_array_equal(present, mat_present)


def test_a_rerun_never_leaves_an_outdated_pack(chapman_src, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    run_chapman(chapman_src, out)
    assert pack_files(out) == []
    # --pack changes no record or split: the same preparation packs without --overwrite.
    run_chapman(chapman_src, out, "--pack")
    assert "12 reused from an earlier run" in capsys.readouterr().out
    assert_packs_equal_the_records(out)
    old_train = read_manifest(out / "train.tsv")[1]

    # Other options without --pack: the new manifests outdate the packs, which are removed.
    run_chapman(chapman_src, out, "--overwrite", "--seed", "1", "--split", "0.5", "0.25", "0.25")
    printed = capsys.readouterr().out
    assert "removed the packs of train, valid, test: the new manifests outdate them" in printed
    assert read_manifest(out / "train.tsv")[1] != old_train
    assert pack_files(out) == []
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["packed"] is None and report["removed_packs"] == list(SPLITS)
    with caplog.at_level(logging.WARNING):
        assert EcgRecordSource(out / "train.tsv", 500.0).pack is None
    assert "not using the pack" not in caplog.text

    # Other options with --pack: packs of the new splits replace the old ones.
    run_chapman(chapman_src, out, "--pack", "--seed", "1", "--split", "0.5", "0.25", "0.25")
    seed1_train = read_manifest(out / "train.tsv")[1]
    run_chapman(chapman_src, out, "--pack", "--overwrite", "--seed", "2")
    assert read_manifest(out / "train.tsv")[1] != seed1_train
    assert_packs_equal_the_records(out)
    assert EcgRecordSource(out / "valid.tsv", 500.0).pack is not None


def test_a_pack_that_cannot_be_written_is_one_line_and_leaves_no_pack(chapman_src, tmp_path):
    out = tmp_path / "out"
    run_chapman(chapman_src, out, "--pack")

    def small_files() -> None:  # every file this process writes stops at 600 kB (EFBIG beyond)
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    rerun = ("--no-progress", "--pack", "--overwrite", "--seed", "3")
    result = subprocess.run(
        [console_script("goodviews-prepare-chapman"), str(chapman_src), str(out), *rerun],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=small_files,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"goodviews-prepare-chapman: error: --pack: {out / 'train.packed'}: cannot write the pack (File too large); the records "
        "and manifests "
        f"are written and training reads the .mat files (goodviews-pack {out} packs them once this is fixed)\n"
    )
    assert pack_files(out) == []  # neither the new nor the old packs, nor a temporary file
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["options"]["seed"] == 3 and report["packed"] is None
    assert EcgRecordSource(out / "train.tsv", 500.0).pack is None


def test_no_room_for_the_pack_is_found_before_writing(chapman_src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(
        "fairseq_goodviews.io.packed.shutil.disk_usage", lambda path: SimpleNamespace(total=1 << 30, free=1 << 19)
    )
    with pytest.raises(
        PrepareError, match=r"^--pack: .*: cannot write train\.packed: it needs at least 0\.8 MiB, 0\.5 MiB"
    ):
        prepare_chapman_library(chapman_src, out, options=PrepareOptions(progress=False, pack=True))
    assert pack_files(out) == [] and (out / "train.tsv").is_file()


def test_the_fairseq_signals_importer_packs_and_removes_outdated_packs(chapman_src, tmp_path, capsys):
    prepared = tmp_path / "prepared"  # a folder of ours reads as a fairseq-signals folder
    run_chapman(chapman_src, prepared)
    capsys.readouterr()
    out = tmp_path / "imported"
    assert import_fairseq_signals.main([str(prepared), str(out), "--no-progress", "--pack"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[2:]] == list(SPLITS)
    assert_packs_equal_the_records(out)
    report = json.loads((out / "prepare_report.json").read_text())
    assert list(report["packed"]) == list(SPLITS)

    assert (
        import_fairseq_signals.main([str(prepared), str(out), "--no-progress", "--overwrite", "--splits", "train"]) == 0
    )
    assert "removed the packs of test, train, valid" in capsys.readouterr().out
    assert pack_files(out) == []
