"""Record loading: ``.mat`` readers and the packs against one memory-mapped array; packs' disk.

Each reader produces every record's float32 [12, T] array, in the same shuffled order:

- ``scipy.io.loadmat``: ``loadmat(path)["feats"]`` (what ``read_record`` used to do);
- ``read_record``: the default reader, ``read_record(path, with_meta=False).feats``;
- ``float32 pack``: :class:`~fairseq_goodviews.io.packed.ShardedPack` ``read(i)`` of a pack
  written with ``encoding="float32"`` in one shard;
- ``int16 pack``: the same of the default pack, int16 where exact, cut into shards of
  ``--shard-records`` records: what a preparer's ``--pack`` writes for a 16-bit source;
- ``memmap .npy``: the reference, bare numpy on one ``.npy`` holding every record's row-major
  [12, T] float32 array back to back (for equal lengths, byte for byte an [N, 12, T] array),
  mapped with ``np.load(..., mmap_mode="r")``; each record's slice is copied out of a plain
  ndarray view of the mapping, the cheapest way there is. The file is the float32 pack's one
  shard, which has exactly this layout: the same bytes in two files read up to 12% apart here
  (where the page cache put them), which would swamp the pack reader's own overhead, the thing
  its target is about;
- ``np.memmap slicing``: the same copy through the ``np.memmap`` object itself, whose per-slice
  Python code costs a few microseconds (for information; the targets use the stricter reference);
- ``.mat bytes only``: open, size, read and close each ``.mat`` file into a numpy buffer without
  looking at it (for information: the floor under any reader of per-record files).

A second table times what training actually asks for, ``EcgRecordSource.load`` (a C-contiguous
centred [12, sample_size] crop), from the ``.mat`` files, from the pack, and as a slice copy of the
reference array. The ``.mat`` rows there include the column-major to row-major copy that MAT
files force on every reader.

Without ``--data``, ``--records`` synthetic ECG-like records, in whole steps of 1 uV as a 16-bit
source with a gain of 1000 per mV stores them, are written with ``write_record`` under
``DIR/work/records_1uv`` (and reused by the next run with the same numbers). After one untimed
warm-up pass, every round reads all records with every reader, ``--chunk`` records at a time,
the readers taking turns in a rotating order, each on a different chunk (so none finds records in
the CPU cache that another just read). A reader's ratio to the reference is the median, over all
these time slots, of its records/s divided by the reference's in the same slot, measured
milliseconds apart: that keeps the load of a shared machine out of the ratios.
Targets: ``read_record`` >= 0.5x and each pack >= 0.9x the records/s of the memory-mapped
array. The result also gives each pack's bytes and writing time per record (and the ``.mat``
files'), and both projected linearly to ``--project`` records (800,000: MIMIC-IV-ECG's size).
Results go to ``DIR/record_loading.json``.

    goodviews-perf record-loading --out DIR [--data MANIFEST_DIR] [--records 2000]
"""

from __future__ import annotations

import gc
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import pandas as pd
import scipy.io

from fairseq_goodviews.data.ecg_dataset import EcgRecordSource
from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.manifest import read_manifest, write_manifest
from fairseq_goodviews.io.packed import FLOAT32, ShardedPack, write_pack
from fairseq_goodviews.io.records import N_LEADS, EcgRecord, read_record, write_record
from fairseq_goodviews.perf import PerfSettingsError

TARGETS = {"read_record": 0.5, "float32 pack": 0.9, "int16 pack": 0.9}
REFERENCE = "memmap .npy"
#: A reader: record index -> its float32 array.
Reader = Callable[[int], np.ndarray]


def synthetic_records(out_dir: Path, n_records: int, n_samples: int, seed: int) -> Path:
    """Write ``n_records`` ECG-like records (beats + baseline wander + noise, in whole microvolts)
    and a ``train`` manifest."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / 500.0
    rows = []
    for i in range(n_records):
        rate = rng.uniform(50, 130)
        beats = np.arange(rng.uniform(0, 0.5), t[-1] + 0.5, 60.0 / rate)
        qrs = np.exp(-((t[None, :] - beats[:, None]) ** 2) / (2 * 0.012**2)).sum(0)
        wave = np.exp(-((t[None, :] - beats[:, None] - 0.25) ** 2) / (2 * 0.04**2)).sum(0)
        gains = rng.normal(1.0, 0.4, size=(N_LEADS, 2))
        wander = 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi))
        feats = gains[:, :1] * qrs + 0.3 * gains[:, 1:] * wave + wander + rng.normal(0, 0.02, (N_LEADS, n_samples))
        feats = np.round(feats * 1000) / 1000  # the millivolts of whole ADC steps of a 1000-per-mV source
        rel = f"records/r{i:06d}.mat"
        meta = {"patient_id": f"p{i}", "age": int(rng.integers(18, 90)), "sex": "M" if i % 2 else "F"}
        write_record(out_dir / rel, EcgRecord(feats.astype(np.float32), 500.0, meta=meta))
        rows.append({"path": rel, "n_samples": n_samples, "record_id": f"r{i:06d}", "sample_rate": 500.0})
    write_manifest(out_dir, "train", out_dir, pd.DataFrame(rows))
    return out_dir / "train.tsv"


def bench_manifest(source: Path, work: Path, n_records: int, name: str = "bench") -> Path:
    """The first ``n_records`` lines of ``source`` as ``work/<name>.tsv`` (its pack goes beside it)."""
    root, entries = read_manifest(source)
    with atomic_open(work / f"{name}.tsv") as handle:
        handle.write(f"{root}\n")
        for rel, n in entries[:n_records]:
            handle.write(f"{rel}\t{n}\n")
    return work / f"{name}.tsv"


class MemmapReference:
    """The reference of the packs' targets: the records of a manifest whose pack is float32 in one
    shard, read with bare numpy from one memory map of that shard's values (for equal lengths, byte
    for byte an [N, 12, T] float32 array; see the module's ``memmap .npy``).

    It has what :class:`~fairseq_goodviews.data.ecg_dataset.EcgRecordSource` asks of a pack
    (``lengths``, ``sample_rates``, ``lead_present``, ``location``, ``crop``), so a training
    dataset can read from it in the pack's place. The map is made on first use and left out of
    pickles (data-loader workers map it again).
    """

    def __init__(self, manifest: Path):
        pack = ShardedPack(manifest)
        if len(pack.shard_names) != 1 or (pack.forms != FLOAT32).any():
            raise PerfSettingsError(f"{pack.location}: not a float32 pack in one shard, so not one array")
        self.location = pack.location / pack.shard_names[0]
        self.lengths: np.ndarray = pack.lengths
        #: Each record's first value in the float32 array (the pack's offsets count int16 slots).
        self.offsets: np.ndarray = pack.offsets // 2
        self.sample_rates: np.ndarray = pack.sample_rates
        self.lead_present: np.ndarray = pack.lead_present
        self._map: np.memmap | None = None
        self._values: np.ndarray | None = None

    def __getstate__(self) -> Dict[str, Any]:
        return {**self.__dict__, "_map": None, "_values": None}

    def array(self) -> np.memmap:
        """Every record's values back to back: the flat float32 memory map of the shard."""
        if self._map is None:
            self._map = np.load(self.location, mmap_mode="r").view(np.float32)
            self._values = np.asarray(self._map)
        return self._map

    def crop(self, index: int, start: int, length: int) -> np.ndarray:
        """Samples ``[start, start + length)`` of record ``index``: a C-contiguous float32 [12, length] copy."""
        if self._values is None:
            self.array()
        offset, n_samples = self.offsets.item(index), self.lengths.item(index)
        record = self._values[offset : offset + N_LEADS * n_samples].reshape(N_LEADS, n_samples)
        return np.array(record[:, start : start + length])


def time_rounds(readers: Dict[str, Reader], order: np.ndarray, rounds: int, chunk: int) -> Dict[str, List[float]]:
    """Records/s of each reader in every time slot of every round, after one untimed warm-up pass.

    ``order`` is cut into chunks of ``chunk`` records. In each time slot every reader reads one
    chunk, taking turns in a rotating order, so entry ``k`` of every reader's list was measured
    within a few milliseconds of the others' entry ``k``. The readers read different chunks in a
    slot (a reader reading records another one just read would find them in the CPU cache); over a
    round each reader reads every chunk once.
    """
    names = list(readers)
    for name in names:
        for i in order:
            readers[name](i)
    chunks = [order[first : first + chunk] for first in range(0, len(order), chunk)]
    spread = max(1, len(chunks) // len(names))
    rates: Dict[str, List[float]] = {name: [] for name in names}
    gc.disable()
    try:
        for r in range(rounds):
            for slot in range(len(chunks)):
                turn = (r + slot) % len(names)
                for k in list(range(turn, len(names))) + list(range(turn)):
                    read, part = readers[names[k]], chunks[(slot + k * spread) % len(chunks)]
                    start = time.perf_counter()
                    for i in part:
                        read(i)
                    rates[names[k]].append(len(part) / (time.perf_counter() - start))
    finally:
        gc.enable()
    return rates


def summarise(rates: Dict[str, List[float]]) -> Dict[str, Dict[str, Any]]:
    """Median records/s of each reader, and the median and quartiles of its slot-by-slot ratio to the reference."""
    reference = np.array(rates[REFERENCE])
    summary = {}
    for name, values in rates.items():
        ratios = np.array(values) / reference
        summary[name] = {
            "records_per_s": float(np.median(values)),
            "ratio_to_memmap": float(np.median(ratios)),
            "ratio_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
            "chunks": len(values),
        }
    return summary


def format_table(title: str, summary: Dict[str, Dict[str, Any]], targets: Dict[str, float]) -> str:
    """One table of :func:`summarise`'s figures, each reader's ratio beside its target (if it has one)."""
    lines = [f"\n{title}", f"  {'reader':<26}{'records/s':>10}{'x memmap':>10}  {'(quartiles)':<13} target"]
    for name, row in summary.items():
        target = targets.get(name)
        verdict = "" if target is None else f">= {target:.1f} {'met' if row['ratio_to_memmap'] >= target else 'MISSED'}"
        low, high = row["ratio_quartiles"]
        lines.append(
            f"  {name:<26}{row['records_per_s']:>10.0f}{row['ratio_to_memmap']:>10.2f}  "
            f"({low:.2f}-{high:.2f})   {verdict}"
        )
    return "\n".join(lines)


def _source_manifest(work: Path, data: Path | None, split: str, records: int, samples: int, seed: int) -> Path:
    """``split`` of the manifest folder ``data``; without one, synthetic records under ``work/data``
    (those of an earlier run are reused when their number and length are the same)."""
    if data is not None:
        return data / f"{split}.tsv"
    source = work / "records_1uv" / "train.tsv"
    if not source.is_file() or [n for _, n in read_manifest(source)[1]] != [samples] * records:
        source = synthetic_records(work / "records_1uv", records, samples, seed)
    return source


def _readers(manifest: Path, int16_manifest: Path, sample_size: int) -> tuple[Dict[str, Reader], Dict[str, Reader]]:
    """The whole-record readers and the ``EcgRecordSource.load`` loaders of the records of ``manifest``
    (with a one-shard float32 pack beside it; the same records in ``int16_manifest``, with an int16
    pack), by name; each table has the :data:`REFERENCE` entry."""

    root, entries = read_manifest(manifest)
    paths = [str(root / rel) for rel, _ in entries]
    pack = ShardedPack(manifest)
    int16_pack = ShardedPack(int16_manifest)
    memmap = MemmapReference(manifest)
    lengths, offsets = memmap.lengths, memmap.offsets
    reference = memmap.array()
    rate = float(pack.sample_rates[0])
    mat_source = EcgRecordSource(manifest, rate, use_pack=False)
    packed_source = EcgRecordSource(manifest, rate)
    int16_source = EcgRecordSource(int16_manifest, rate)
    if not isinstance(packed_source.pack, ShardedPack) or not isinstance(int16_source.pack, ShardedPack):
        raise AssertionError("EcgRecordSource did not pick up the packs written for it")

    reference_view = np.asarray(reference)

    def whole_reference(i: int) -> np.ndarray:
        return np.array(reference_view[offsets[i] : offsets[i] + lengths[i] * N_LEADS]).reshape(N_LEADS, lengths[i])

    def whole_memmap(i: int) -> np.ndarray:
        return np.array(reference[offsets[i] : offsets[i] + lengths[i] * N_LEADS]).reshape(N_LEADS, lengths[i])

    def crop(record: np.ndarray) -> np.ndarray:
        """The centred crop as a new C-contiguous array, zero-padded like EcgRecordSource.load."""
        start, take = EcgRecordSource._window(record.shape[1], sample_size, None)
        out = np.array(record[:, start : start + take], dtype=np.float32, order="C")
        return out if take == sample_size else np.pad(out, ((0, 0), (0, sample_size - take)))

    def crop_reference(i: int) -> np.ndarray:
        return crop(reference_view[offsets[i] : offsets[i] + lengths[i] * N_LEADS].reshape(N_LEADS, lengths[i]))

    def file_bytes(i: int) -> np.ndarray:
        fd = os.open(paths[i], os.O_RDONLY)
        try:
            buf = np.empty(os.fstat(fd).st_size, dtype=np.uint8)
            os.readv(fd, (buf,))
        finally:
            os.close(fd)
        return buf

    readers = {
        "scipy.io.loadmat": lambda i: scipy.io.loadmat(paths[i])["feats"],
        "read_record": lambda i: read_record(paths[i], with_meta=False).feats,
        "float32 pack": pack.read,
        "int16 pack": int16_pack.read,
        REFERENCE: whole_reference,
        "np.memmap slicing": whole_memmap,
        ".mat bytes only": file_bytes,
    }
    loaders = {
        "scipy.io.loadmat + crop": lambda i: crop(scipy.io.loadmat(paths[i])["feats"]),
        "read_record (.mat)": lambda i: mat_source.load(i, sample_size, None)[0],
        "float32 pack": lambda i: packed_source.load(i, sample_size, None)[0],
        "int16 pack": lambda i: int16_source.load(i, sample_size, None)[0],
        REFERENCE: crop_reference,
    }
    return readers, loaders


def _check_agreement(tables: Sequence[Dict[str, Reader]], n_records: int) -> None:
    """Every reader returns the reference's array on the first ``n_records`` records (the bytes-only one aside)."""
    for i in range(n_records):
        for table in tables:
            expected = table[REFERENCE](i)
            for name, read in table.items():
                if name != ".mat bytes only" and not np.array_equal(read(i), expected):
                    raise AssertionError(f"{name} disagrees with the reference on record {i}")


def disk(manifest: Path, packs: Dict[str, Dict[str, Any]], project: int) -> Dict[str, Any]:
    """Bytes and writing seconds per record of the ``.mat`` files and of each pack, and both
    projected linearly to ``project`` records."""
    root, entries = read_manifest(manifest)
    mat_bytes = sum(os.stat(root / rel).st_size for rel, _ in entries)
    rows = {".mat files": {"bytes_per_record": mat_bytes / len(entries), "seconds_per_record": None}}
    for name, summary in packs.items():
        rows[name] = {
            "bytes_per_record": summary["bytes"] / summary["records"],
            "seconds_per_record": summary["seconds"] / summary["records"],
            "int16_records": summary["int16_records"],
            "shards": summary["shards"],
        }
    for row in rows.values():
        row["projected_gib"] = row["bytes_per_record"] * project / 2**30
        seconds = row["seconds_per_record"]
        row["projected_hours"] = None if seconds is None else seconds * project / 3600
    return {"measured_records": len(entries), "projected_records": project, "per_source": rows}


def run(
    *,
    work: Path,
    data: Path | None,
    split: str,
    records: int,
    samples: int,
    sample_size: int,
    rounds: int,
    chunk: int,
    seed: int,
    shard_records: int = 500,
    project: int = 800_000,
) -> Dict[str, Any]:
    """Time every reader and loader on the first ``records`` records of ``data`` (or of synthetic ones of
    ``samples`` samples), packed under ``work`` as float32 in one shard and as int16 in shards of
    ``shard_records``; each one's records/s and ratio to the reference, and the disk of each."""
    work.mkdir(parents=True, exist_ok=True)
    source = _source_manifest(work, data, split, records, samples, seed)
    manifest = bench_manifest(source, work, records)
    int16_manifest = bench_manifest(source, work, records, name="bench_int16")
    packs = {
        "float32 pack": write_pack(manifest, encoding="float32", shard_bytes=None),
        "int16 pack": write_pack(int16_manifest, shard_bytes=None, shard_records=shard_records),
    }
    readers, loaders = _readers(manifest, int16_manifest, sample_size)
    lengths = [n for _, n in read_manifest(manifest)[1]]
    _check_agreement((readers, loaders), min(len(lengths), 20))
    order = np.random.default_rng(seed).permutation(len(lengths))
    return {
        "benchmark": "record_loading",
        "records": len(lengths),
        "median_samples": int(np.median(lengths)),
        "sample_size": sample_size,
        "rounds": rounds,
        "chunk": chunk,
        "data": str(source),
        "targets": TARGETS,
        "whole_record": summarise(time_rounds(readers, order, rounds, chunk)),
        "dataset_load": summarise(time_rounds(loaders, order, rounds, chunk)),
        "packs": packs,
        "disk": disk(manifest, packs, project),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
    }


def format_result(result: Dict[str, Any]) -> str:
    """Both tables: whole records, then ``EcgRecordSource.load`` crops, each reader's ratio beside its target."""
    load_targets = {"read_record (.mat)": TARGETS["read_record"], **{k: v for k, v in TARGETS.items() if "pack" in k}}
    usage = result["disk"]
    disk_lines = [
        f"\nDisk per record, measured on {usage['measured_records']} records and projected linearly to "
        f"{usage['projected_records']:,}:",
        f"  {'files':<26}{'KiB/record':>11}{'projected GiB':>15}{'write ms/record':>17}{'projected h':>13}  int16 records",
    ]
    for name, row in usage["per_source"].items():
        seconds, hours = row["seconds_per_record"], row["projected_hours"]
        disk_lines.append(
            f"  {name:<26}{row['bytes_per_record'] / 1024:>11.1f}{row['projected_gib']:>15.1f}"
            f"{'' if seconds is None else f'{seconds * 1e3:.2f}':>17}{'' if hours is None else f'{hours:.2f}':>13}"
            f"  {row.get('int16_records', '')}"
        )
    return "\n".join(
        [
            f"{result['records']} records of {result['median_samples']} samples (median), {result['rounds']} rounds "
            f"of chunks of {result['chunk']}; x memmap: median and quartiles of slot-by-slot ratios to the reference",
            format_table(
                "Whole record as a float32 [12, T] array (targets: x memmap):", result["whole_record"], TARGETS
            ),
            format_table(
                f"EcgRecordSource.load: C-contiguous centred crop of {result['sample_size']} samples:",
                result["dataset_load"],
                load_targets,
            ),
            *disk_lines,
        ]
    )
