"""Packs: int16 where exact, else float32, in shards; the same arrays as the .mat records, used only
while the pack matches its manifest; packs of the first (one float32 file) format still read."""

import errno
import hashlib
import logging
import os
import pickle
import subprocess
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.io

from conftest import console_script
from fairseq_goodviews.cli.pack import main
from fairseq_goodviews.data.ecg_dataset import EcgRecordSource
from fairseq_goodviews.io.atomic import OutputPathError
from fairseq_goodviews.io.manifest import read_manifest, write_manifest
from fairseq_goodviews.io.packed import (
    INDEX_NAME,
    ShardedPack,
    open_pack,
    pack_folder,
    pack_problem,
    remove_pack,
    write_pack,
)
from fairseq_goodviews.io.packed_float32 import Float32FilePack, float32_file_paths
from fairseq_goodviews.io.records import N_LEADS, EcgRecord, RecordError, read_record, write_record

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENGTHS = [1000, 2500, 1999, 3001, 700, 2500]


def _dataset(root, lengths=LENGTHS, rate: float = 500.0, splits=("train",)) -> None:
    rng = np.random.default_rng(0)
    for split in splits:
        rows = []
        for i, n in enumerate(lengths):
            present = rng.random(12) < 0.8
            present[i % 12] = True
            feats = rng.normal(0, 0.5, (12, n))
            if i % 2:  # whole steps of 1000 per mV, as a 16-bit source gives them: stored as int16
                feats = np.round(feats * 1000) / 1000
            feats = feats.astype(np.float32)
            feats[~present] = 0.0
            rel = f"records/{split}_{i}.mat"
            write_record(root / rel, EcgRecord(feats, rate, present, {"patient_id": f"p{i}"}))
            rows.append({"path": rel, "n_samples": n})
        write_manifest(root, split, root, pd.DataFrame(rows))


def test_round_trip_equals_the_mat_records(tmp_path):
    _dataset(tmp_path)
    summary = write_pack(tmp_path / "train.tsv")
    assert summary["records"] == len(LENGTHS) and summary["samples"] == sum(LENGTHS)
    assert (summary["int16_records"], summary["float32_records"], summary["shards"]) == (3, 3, 1)
    pack = ShardedPack(tmp_path / "train.tsv")
    assert len(pack) == len(LENGTHS)
    assert pack.forms.tolist() == [0, 1, 0, 1, 0, 1]
    for i in range(len(LENGTHS)):
        record = read_record(tmp_path / f"records/train_{i}.mat", with_meta=False)
        feats = pack.read(i)
        assert feats.dtype == np.float32 and feats.flags.c_contiguous and feats.flags.writeable
        np.testing.assert_array_equal(feats, record.feats)
        np.testing.assert_array_equal(pack.crop(i, 17, 300), record.feats[:, 17:317])
        np.testing.assert_array_equal(pack.lead_present[i], record.lead_present)
        assert pack.sample_rates[i] == record.sample_rate and pack.lengths[i] == record.n_samples
    with pytest.raises(IndexError):
        pack.crop(0, LENGTHS[0] - 10, 11)


def test_pickled_pack_leaves_the_array_behind(tmp_path):
    _dataset(tmp_path)
    write_pack(tmp_path / "train.tsv", shard_records=2)
    pack = ShardedPack(tmp_path / "train.tsv")
    expected = pack.read(3)
    payload = pickle.dumps(pack)
    assert len(payload) < 4096
    np.testing.assert_array_equal(pickle.loads(payload).read(3), expected)


def test_a_pack_rebuilt_under_a_reader_is_refused(tmp_path):
    _dataset(tmp_path)
    write_pack(tmp_path / "train.tsv")
    pack = pickle.loads(pickle.dumps(ShardedPack(tmp_path / "train.tsv")))
    data_path = next(pack_folder(tmp_path / "train.tsv").glob("shard-*.npy"))
    os.utime(data_path, ns=(0, data_path.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(RecordError, match="rebuilt after its index was read"):
        pack.read(0)


def test_cli_packs_each_split(tmp_path, capsys):
    _dataset(tmp_path, splits=("train", "valid"))
    assert main([str(tmp_path), "--splits", "valid"]) == 0
    assert pack_problem(tmp_path / "valid.tsv") is None and pack_problem(tmp_path / "train.tsv") is not None
    assert main([str(tmp_path)]) == 0  # default: whichever of train, valid, test exist
    assert pack_problem(tmp_path / "train.tsv") is None
    assert main([str(tmp_path), "--splits", "test"]) == 2
    assert "test.tsv: manifest not found" in capsys.readouterr().err


def test_pack_console_script(tmp_path):
    _dataset(tmp_path)
    result = subprocess.run(
        [console_script("goodviews-pack"), str(tmp_path), "--splits", "train"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "train: 6 records" in result.stdout
    assert pack_problem(tmp_path / "train.tsv") is None


def test_a_record_that_disagrees_with_its_manifest_is_refused_and_nothing_is_written(tmp_path):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    manifest.write_text(manifest.read_text().replace("\t700\n", "\t701\n"))
    with pytest.raises(RecordError, match=r"train_4\.mat: 700 samples, but .*train\.tsv says 701"):
        write_pack(manifest)
    assert not list(pack_folder(manifest).iterdir())  # no shard and no temporary file left


def _sources(root, sample_rate: float = 500.0):
    return EcgRecordSource(root / "train.tsv", sample_rate, use_pack=False), EcgRecordSource(
        root / "train.tsv", sample_rate
    )


@pytest.mark.parametrize("sample_size", [500, 2000, 2500, 4000])
def test_record_source_gives_identical_crops_with_and_without_the_pack(tmp_path, sample_size):
    _dataset(tmp_path)
    write_pack(tmp_path / "train.tsv")
    plain, packed = _sources(tmp_path)
    assert plain.pack is None and packed.pack is not None
    for source in (plain, packed):
        source.keep_only(np.array([5, 3, 1, 0, 2]))
    for index in range(len(plain)):
        for seed in (None, index, index + 100):
            rngs = [None, None] if seed is None else [np.random.default_rng(seed), np.random.default_rng(seed)]
            (a, mask_a), (b, mask_b) = plain.load(index, sample_size, rngs[0]), packed.load(index, sample_size, rngs[1])
            assert a.shape == b.shape == (12, sample_size)
            assert a.dtype == b.dtype == np.float32 and a.flags.c_contiguous and b.flags.c_contiguous
            np.testing.assert_array_equal(a, b)
            assert mask_a.dtype == mask_b.dtype == bool
            np.testing.assert_array_equal(mask_a, mask_b)
            if seed is not None:
                assert rngs[0].integers(1 << 30) == rngs[1].integers(1 << 30)


def test_record_source_checks_the_sample_rate_with_the_pack(tmp_path):
    _dataset(tmp_path, rate=250.0)
    write_pack(tmp_path / "train.tsv")
    source = EcgRecordSource(tmp_path / "train.tsv", 500.0)
    assert source.pack is not None
    with pytest.raises(RecordError, match=r"train_0\.mat: sample rate 250 Hz, but the task expects 500 Hz"):
        source.load(0, 500, None)


def _rewrite_record(root, index: int) -> np.ndarray:
    """Replace one record's signal (a re-run preparer) and rewrite the manifest with the same content."""
    feats = np.full((12, LENGTHS[index]), 0.5, np.float32)
    feats[:, ::2] = -0.5
    write_record(root / f"records/train_{index}.mat", EcgRecord(feats, 500.0))
    manifest = root / "train.tsv"
    text = manifest.read_text()
    stat = manifest.stat()
    manifest.write_text(text)
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    return feats


@pytest.mark.parametrize("change", ["record_removed", "lines_swapped", "rewritten", "data_replaced", "index_missing"])
def test_a_stale_pack_is_not_used(tmp_path, caplog, change):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    write_pack(manifest)
    assert EcgRecordSource(manifest, 500.0).pack is not None
    expected = None
    lines = manifest.read_text().splitlines(keepends=True)
    if change == "record_removed":
        manifest.write_text("".join(lines[:-1]))
    elif change == "lines_swapped":
        manifest.write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))
    elif change == "rewritten":
        expected = _rewrite_record(tmp_path, 2)
    elif change == "data_replaced":
        data_path = next(pack_folder(manifest).glob("shard-*.npy"))
        np.save(data_path, np.load(data_path))
        os.utime(data_path, ns=(0, data_path.stat().st_mtime_ns + 1_000_000))
    else:
        (pack_folder(manifest) / INDEX_NAME).unlink()
    assert pack_problem(manifest) is not None
    with caplog.at_level(logging.WARNING, logger="fairseq_goodviews.io.packed"):
        source = EcgRecordSource(manifest, 500.0)
    assert source.pack is None
    assert "not using the pack" in caplog.text and "goodviews-pack" in caplog.text
    if expected is not None:
        np.testing.assert_array_equal(source.load(2, LENGTHS[2], None)[0], expected)
        write_pack(manifest)
        repacked = EcgRecordSource(manifest, 500.0)
        assert repacked.pack is not None
        np.testing.assert_array_equal(repacked.load(2, LENGTHS[2], None)[0], expected)


def test_no_pack_is_silent(tmp_path, caplog):
    _dataset(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert EcgRecordSource(tmp_path / "train.tsv", 500.0).pack is None
    assert caplog.text == ""


def test_no_room_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    _dataset(tmp_path)
    monkeypatch.setattr("shutil.disk_usage", lambda path: SimpleNamespace(total=1 << 30, free=50_000))
    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"goodviews-pack: error: {tmp_path}: cannot write train.packed: it needs at least 0.3 MiB, 0.0 MiB are free\n"
    )
    assert not any(".packed" in p.name for p in tmp_path.iterdir())


def test_a_failed_index_write_leaves_the_previous_pack_whole(tmp_path, monkeypatch):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    write_pack(manifest, shard_records=2)  # an earlier pack, still current
    before = sorted(p.name for p in pack_folder(manifest).iterdir())

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("numpy.save", full_disk)
    with pytest.raises(OutputPathError, match=r"train\.packed: cannot write the pack \(no space left on the device\)$"):
        write_pack(manifest, shard_records=3)
    assert sorted(p.name for p in pack_folder(manifest).iterdir()) == before  # the new shards are gone
    assert pack_problem(manifest) is None
    pack = ShardedPack(manifest)
    np.testing.assert_array_equal(pack.read(4), read_record(tmp_path / "records/train_4.mat").feats)


def test_shards_are_cut_by_records_or_bytes_and_each_is_mapped_when_first_read(tmp_path):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    assert write_pack(manifest, shard_records=4)["shards"] == 2
    assert ShardedPack(manifest).shards.tolist() == [0, 0, 0, 0, 1, 1]
    # Bytes of each record: float32 48,000, int16 60,000, float32 95,952, int16 72,024, float32
    # 33,600, int16 60,000; a shard ends before the record that would take it past 160,000 bytes.
    summary = write_pack(manifest, shard_bytes=160_000)
    pack = ShardedPack(manifest)
    assert pack.shards.tolist() == [0, 0, 1, 2, 2, 3] and summary["shards"] == 4
    assert len(list(pack_folder(manifest).glob("shard-*.npy"))) == 4  # the earlier pack's shards are removed
    assert pack.read(3).shape == (N_LEADS, LENGTHS[3])
    assert [m is not None for m in pack._maps] == [False, False, True, False]
    # A record larger than the size has a shard of its own.
    write_pack(manifest, shard_bytes=50_000)
    assert ShardedPack(manifest).shards.tolist() == [0, 1, 2, 3, 4, 5]
    pack = ShardedPack(manifest)
    for i in range(len(LENGTHS)):
        np.testing.assert_array_equal(pack.read(i), read_record(tmp_path / f"records/train_{i}.mat").feats)


def test_float32_encoding_stores_every_record_as_float32(tmp_path):
    _dataset(tmp_path)
    summary = write_pack(tmp_path / "train.tsv", encoding="float32", shard_bytes=None)
    assert (summary["int16_records"], summary["float32_records"], summary["shards"]) == (0, 6, 1)
    # One float32 shard is the layout of a memory-mapped [12, T] array per record, back to back.
    shard = next(pack_folder(tmp_path / "train.tsv").glob("shard-*.npy"))
    flat = np.load(shard).view(np.float32)
    expected = np.concatenate([read_record(tmp_path / f"records/train_{i}.mat").feats.ravel() for i in range(6)])
    np.testing.assert_array_equal(flat, expected)
    with pytest.raises(ValueError, match="encoding must be one of"):
        write_pack(tmp_path / "train.tsv", encoding="int8")


@pytest.mark.parametrize("damage", ["truncated", "garbled", "removed"])
def test_a_bad_shard_is_one_line_naming_it(tmp_path, caplog, damage):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    write_pack(manifest, shard_records=3)
    pack = pickle.loads(pickle.dumps(ShardedPack(manifest)))  # as a data-loader worker holds it
    shard = sorted(pack_folder(manifest).glob("shard-*.npy"))[1]
    stat = shard.stat()
    if damage == "truncated":
        with open(shard, "r+b") as handle:
            handle.truncate(stat.st_size - 100)
        problem = (
            rf"{shard}: pack shard truncated or replaced: {stat.st_size - 100} bytes, the index says {stat.st_size}$"
        )
    elif damage == "garbled":
        shard.write_bytes(b"not an npy file".ljust(stat.st_size, b"\0"))
        os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time: only the bytes tell
        problem = rf"{shard}: unreadable pack shard \(ValueError: .*\)$"
    else:
        shard.unlink()
        problem = rf"{shard}: pack shard unreadable \(No such file or directory\); restart the run$"
    np.testing.assert_array_equal(pack.read(0), read_record(tmp_path / "records/train_0.mat").feats)
    with pytest.raises(RecordError, match=problem) as caught:
        pack.read(4)
    assert "\n" not in str(caught.value)
    if damage != "garbled":  # a new reader sees the damage in the index's sizes and reads the .mat files
        with caplog.at_level(logging.WARNING, logger="fairseq_goodviews.io.packed"):
            assert open_pack(manifest) is None
        assert str(shard) in caplog.text


def _write_first_format(manifest) -> None:
    """A pack as the first format's writer left it: one flat float32 file and its index."""
    root, entries = read_manifest(manifest)
    lengths = np.array([n for _, n in entries], dtype=np.int64)
    blocks = [read_record(root / rel, with_meta=False) for rel, _ in entries]
    data_path, index_path = float32_file_paths(manifest)
    np.save(data_path, np.concatenate([np.ascontiguousarray(r.feats).ravel() for r in blocks]))
    n = len(entries)
    dtype = np.dtype(
        [
            ("version", "<i8"),
            ("manifest_sha256", "S64"),
            ("manifest_mtime_ns", "<i8"),
            ("data_size", "<i8"),
            ("data_mtime_ns", "<i8"),
            ("offsets", "<i8", (n,)),
            ("lengths", "<i8", (n,)),
            ("sample_rates", "<f8", (n,)),
            ("lead_present", "u1", (n, N_LEADS)),
        ]
    )
    index = np.zeros((), dtype=dtype)
    index["version"] = 1
    index["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest().encode()
    index["manifest_mtime_ns"] = manifest.stat().st_mtime_ns
    index["data_size"] = data_path.stat().st_size
    index["data_mtime_ns"] = data_path.stat().st_mtime_ns
    index["offsets"] = np.concatenate([[0], np.cumsum(lengths * N_LEADS)[:-1]])
    index["lengths"] = lengths
    index["sample_rates"] = [r.sample_rate for r in blocks]
    index["lead_present"] = [r.lead_present for r in blocks]
    np.save(index_path, index)


def test_a_pack_of_the_first_format_is_still_read_and_a_new_pack_replaces_it(tmp_path, caplog):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    _write_first_format(manifest)
    assert pack_problem(manifest) is None
    with caplog.at_level(logging.INFO, logger="fairseq_goodviews.data.ecg_dataset"):
        source = EcgRecordSource(manifest, 500.0)
    assert isinstance(source.pack, Float32FilePack)
    assert f"reading the records from the pack {tmp_path / 'train.packed.npy'}" in caplog.text
    plain = EcgRecordSource(manifest, 500.0, use_pack=False)
    for i in range(len(LENGTHS)):
        np.testing.assert_array_equal(source.load(i, 1500, None)[0], plain.load(i, 1500, None)[0])
    write_pack(manifest)
    assert not any(p.exists() for p in float32_file_paths(manifest))
    assert isinstance(open_pack(manifest), ShardedPack)
    _write_first_format(manifest)
    assert remove_pack(manifest) and not pack_folder(manifest).exists()
    assert not any(p.exists() for p in float32_file_paths(manifest))


def test_shared_per_lead_and_shifted_scales_read_back_bit_for_bit(tmp_path):
    """Each scale takes its own decoding (one gain for all leads, a gain per lead, a baseline):
    every one reads back the .mat file's bits, whole and cropped."""
    rng = np.random.default_rng(3)
    adc = np.round(rng.normal(0, 400, (3, 12, 1500))) + 0.0  # no -0.0: it reads back as 0.0 (int16_codec)
    adc[2] += 40_000  # beyond int16: stored shifted, with a baseline
    per_lead = np.array([1000.0] * 6 + [200.0] * 6)[:, None]
    scales = [1000.0, per_lead, 1000.0]
    rows = []
    for i, gain in enumerate(scales):
        rel = f"records/r{i}.mat"
        write_record(tmp_path / rel, EcgRecord((adc[i] / gain).astype(np.float32), 500.0))
        rows.append({"path": rel, "n_samples": 1500})
    write_manifest(tmp_path, "train", tmp_path, pd.DataFrame(rows))
    assert write_pack(tmp_path / "train.tsv")["int16_records"] == 3
    pack = ShardedPack(tmp_path / "train.tsv")
    for i in range(3):
        expected = read_record(tmp_path / f"records/r{i}.mat", with_meta=False).feats
        np.testing.assert_array_equal(pack.read(i).view(np.uint32), np.ascontiguousarray(expected).view(np.uint32))
        crop = np.ascontiguousarray(expected[:, 101:1234])
        np.testing.assert_array_equal(pack.crop(i, 101, 1133).view(np.uint32), crop.view(np.uint32))


def _pack_contents(manifest) -> tuple[list[bytes], dict[str, np.ndarray]]:
    """The shards' bytes in the index's order and every index field but the shards' names and times."""
    folder = pack_folder(manifest)
    index = np.load(folder / INDEX_NAME)
    shards = [(folder / name.decode()).read_bytes() for name in index["shard_names"]]
    fields = {name: index[name] for name in index.dtype.names if name not in ("shard_names", "shard_mtime_ns")}
    return shards, fields


@pytest.mark.parametrize("cut", [{"shard_bytes": 160_000}, {"shard_records": 2}, {"shard_bytes": 50_000}])
def test_workers_write_the_same_pack(tmp_path, cut):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    one = write_pack(manifest, **cut)
    shards, fields = _pack_contents(manifest)
    two = write_pack(manifest, workers=2, **cut)
    assert (two["shards"], two["bytes"], two["int16_records"]) == (one["shards"], one["bytes"], one["int16_records"])
    again_shards, again_fields = _pack_contents(manifest)
    assert again_shards == shards
    for name, values in fields.items():
        np.testing.assert_array_equal(again_fields[name], values, err_msg=name)
    assert len(list(pack_folder(manifest).glob("shard-*.npy"))) == one["shards"]  # the first run's are removed
    pack = ShardedPack(manifest)
    for i in range(len(LENGTHS)):
        np.testing.assert_array_equal(pack.read(i), read_record(tmp_path / f"records/train_{i}.mat").feats)


def test_records_of_the_planned_form_are_cut_where_one_writer_cuts(tmp_path):
    # Every record int16 (whole steps): a segment is one shard, each ending before the record
    # that would take it past the size, as a single writer cuts them.
    lengths = [1000, 2500, 1999, 3001, 700, 2500, 1200]
    rng = np.random.default_rng(1)
    rows = []
    for i, n in enumerate(lengths):
        feats = (rng.integers(-2000, 2000, (12, n)) / 1000).astype(np.float32)
        write_record(tmp_path / f"records/r{i}.mat", EcgRecord(feats, 500.0))
        rows.append({"path": f"records/r{i}.mat", "n_samples": n})
    write_manifest(tmp_path, "train", tmp_path, pd.DataFrame(rows))
    summary = write_pack(tmp_path / "train.tsv", shard_bytes=100_000, workers=2)
    assert summary["int16_records"] == len(lengths)
    # int16 bytes: 24,000, 60,000, 47,976, 72,024, 16,800, 60,000, 28,800
    assert ShardedPack(tmp_path / "train.tsv").shards.tolist() == [0, 0, 1, 2, 2, 3, 3]


def test_a_failing_worker_leaves_the_previous_pack_whole_and_no_new_shard(tmp_path):
    _dataset(tmp_path)
    manifest = tmp_path / "train.tsv"
    write_pack(manifest, shard_records=2)  # an earlier pack, still current
    before = sorted(p.name for p in pack_folder(manifest).iterdir())
    manifest.write_text(manifest.read_text().replace("\t700\n", "\t701\n"))  # record 4, in the last segment
    with pytest.raises(RecordError, match=r"train_4\.mat: 700 samples, but .*train\.tsv says 701"):
        write_pack(manifest, shard_records=2, workers=3)
    assert sorted(p.name for p in pack_folder(manifest).iterdir()) == before  # the other segments' shards are gone


def test_cli_workers_and_bad_workers(tmp_path, capsys):
    _dataset(tmp_path)
    assert main([str(tmp_path), "--workers", "2", "--shard-records", "2"]) == 0
    assert ShardedPack(tmp_path / "train.tsv").shards.tolist() == [0, 0, 1, 1, 2, 2]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--workers", "0"])
    assert exit_info.value.code == 2 and "--workers: not a positive whole number: '0'" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, 2])
def test_a_record_with_nan_is_refused_naming_it_and_nothing_is_written(tmp_path, workers):
    # A .mat file not written by write_record (which refuses NaN): the pack must not carry the NaN to training.
    _dataset(tmp_path)
    path = tmp_path / "records/train_4.mat"
    contents = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    contents["feats"] = contents["feats"].astype(np.float32)
    lead = int(np.flatnonzero(contents["lead_present"].ravel())[0])
    contents["feats"][lead, 10] = np.nan
    scipy.io.savemat(path, contents)
    with pytest.raises(RecordError, match=r"train_4\.mat: NaN or inf in lead\(s\) "):
        write_pack(tmp_path / "train.tsv", shard_records=2, workers=workers)
    assert not list(pack_folder(tmp_path / "train.tsv").iterdir())
