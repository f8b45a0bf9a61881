"""What fairseq-signals does with a manifest folder, re-implemented to check our format against it.

Written from reading fairseq-signals' source (github.com/Jwoo5/fairseq-signals), not copied,
and reduced to what decides whether a folder loads and what the model receives:

- ``fairseq_signals/data/ecg/raw_ecg_dataset.py``, ``FileECGDataset`` (what the
  ``ecg_classification`` task of ``fairseq_signals/tasks/ecg_classification.py`` builds): the
  manifest's first line is the root, every other line must split into exactly two fields
  (path, size); ``__getitem__`` reads the file with ``scipy.io.loadmat``, takes ``feats`` as the
  source and compares ``curr_sample_rate`` (a [1, 1] array) with the task's rate, raising when
  they differ; with labels, ``label`` comes from the file (``ecg["label"]``, a [1, K] array;
  later versions squeeze the first axis and stack, earlier ones concatenate: both give [B, K]).
  ``RawECGDataset.collator`` crops every source to the shortest in the batch.
- ``fairseq_signals/models/classification/ecg_transformer_classifier.py`` (and the other
  classifiers): ``get_targets`` returns ``sample["label"].float()``, which
  ``fairseq_signals/criterions/binary_cross_entropy_with_logits.py`` compares with logits of
  ``num_labels`` columns, so ``label`` must be a multi-hot vector ([1, K] in the file);
  ``fairseq_signals/criterions/cross_entropy.py`` cannot take those float targets (PyTorch wants
  integer class indices), which is why a record's ``label`` is the vector, not an index.
- ``fairseq_signals/data/ecg/preprocess/identification_manifest.py`` (and
  ``manifest_identification.py``): every ``.mat`` under a folder is read and grouped by
  ``data["patient_id"][0, 0]`` (so it must be a numeric scalar); each patient gets a dense index,
  the third field of its manifest lines ``path<TAB>size<TAB>index``; patients with one ECG go to
  training only, the gallery/probe splits take each patient's first two ECGs.
- ``fairseq_signals/data/ecg/identification_ecg_dataset.py``, ``IdentificationECGDataset``:
  every manifest line must have three fields; ``__getitem__`` reads ``ecg["patient_id"][0, 0]``
  and the collator packs them with ``torch.IntTensor`` (so integers within int32); the label is
  the manifest's patient index.
- ``fairseq_signals/data/ecg/preprocess/preprocess_physionet2021.py`` writes what these read:
  ``feats`` (float64, [leads, 5 s]), ``curr_sample_rate``, ``label`` (a bool multi-hot vector
  over the classes of the Challenge's ``weights.csv``), ``patient_id``, ``age`` and ``sex``
  (0 male, 1 female) as Python scalars, one ``<record>_<i>.mat`` per segment, via
  ``scipy.io.savemat``; ``fairseq_signals/data/ecg/preprocess/manifest.py`` writes the root as
  ``os.path.realpath`` and each path relative to it.
- ``fairseq_signals/data/ecg/preprocess/convert_to_cmsc_manifest.py`` (what W2V+CMSC pretraining
  is prepared with): for every ``*.tsv`` of a manifest folder, each line's path is cut at its last
  ``_`` into the record (the part before) and the segment index (``int`` of the part after, up to
  the four-character extension: a name it cannot parse raises ``ValueError``); the segments are
  grouped by record (the record's size is its last line's), sorted, and written as consecutive
  pairs ``record<TAB>size<TAB>0<TAB>i,j`` after the root and extension lines; a record with one
  segment is left out, and an odd last one too.
- ``fairseq_signals/data/ecg/cmsc_ecg_dataset.py``, ``CMSCECGDataset``: every such line must have
  four fields; ``__getitem__`` reads ``<root>/<record>_<i>.<ext>`` for each segment ``i`` of the
  line with ``scipy.io.loadmat`` (``feats``, ``curr_sample_rate``, ``patient_id[0, 0]``, with
  labels ``label``) and tags them ``segment`` 0 and 1 in turn; the collator flattens the pairs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
import torch


class ManifestDataset:
    """The manifest handling the two datasets share: the root line, then ``n_fields`` per line."""

    def __init__(self, manifest_path: str | Path, sample_rate: float, n_fields: int):
        self.fnames: list[str] = []
        self.sizes: list[int] = []
        self.extra: list[list[str]] = []
        with open(manifest_path) as handle:
            self.root_dir = handle.readline().strip()
            for line in handle:
                fields = line.strip().split("\t")
                assert len(fields) == n_fields, line
                self.fnames.append(fields[0])
                self.sizes.append(int(fields[1]))
                self.extra.append(fields[2:])
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.fnames)

    def _load(self, index: int) -> tuple[dict, torch.Tensor]:
        ecg = scipy.io.loadmat(os.path.join(self.root_dir, self.fnames[index]))
        feats = torch.from_numpy(ecg["feats"])
        if self.sample_rate and ecg["curr_sample_rate"] != self.sample_rate:
            raise ValueError(f"sample rate: {ecg['curr_sample_rate']}, need {self.sample_rate}")
        return ecg, feats.float()

    @staticmethod
    def _crop(sources: Sequence[torch.Tensor]) -> torch.Tensor:
        size = min(s.shape[-1] for s in sources)
        return torch.stack([s[:, :size] for s in sources])


class FineTuningDataset(ManifestDataset):
    """``FileECGDataset`` with ``label=True``, and the classifier's targets of its batches."""

    def __init__(self, manifest_path: str | Path, sample_rate: float = 500.0):
        super().__init__(manifest_path, sample_rate, n_fields=2)

    def __getitem__(self, index: int) -> dict:
        ecg, feats = self._load(index)
        return {"id": index, "source": feats, "label": torch.from_numpy(ecg["label"].squeeze(0))}

    def collator(self, samples: Sequence[dict]) -> dict:
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "net_input": {"source": self._crop([s["source"] for s in samples])},
            "label": torch.stack([s["label"] for s in samples]),
        }

    @staticmethod
    def targets(batch: dict, num_labels: int) -> torch.Tensor:
        """``get_targets`` and the shape check of ``binary_cross_entropy_with_logits``."""
        target = batch["label"].float()
        logits = torch.zeros(len(target), num_labels)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, target)  # raises on a shape mismatch
        return target


def identification_manifest(root: str | Path, dest: str | Path, valid_percent: float = 0.0, seed: int = 42):
    """``identification_manifest.py`` with every patient in ``train.tsv`` (``valid_percent`` 0):
    group the ``.mat`` files under ``root`` by their ``patient_id``, one dense index per patient."""
    assert valid_percent == 0.0, "only the training manifest is re-implemented"
    root_path = os.path.realpath(root)
    patients: dict = {}
    for fname in glob.iglob(os.path.join(root, "**/*.mat"), recursive=True):
        data = scipy.io.loadmat(fname)
        patients.setdefault(data["patient_id"][0, 0], []).append(fname)
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "train.tsv"), "w") as handle:
        print(root_path, file=handle)
        for index, files in enumerate(patients.values()):
            for fname in files:
                length = scipy.io.loadmat(fname)["feats"].shape[-1]
                print(f"{os.path.relpath(fname, root_path)}\t{length}\t{index}", file=handle)
    return patients


class IdentificationDataset(ManifestDataset):
    """``IdentificationECGDataset`` with ``label=True``."""

    def __init__(self, manifest_path: str | Path, sample_rate: float = 500.0):
        super().__init__(manifest_path, sample_rate, n_fields=3)
        self.pids = np.array([int(extra[0]) for extra in self.extra], dtype=np.int64)

    def __getitem__(self, index: int) -> dict:
        ecg, feats = self._load(index)
        return {
            "id": index,
            "source": feats,
            "patient_id": ecg["patient_id"][0, 0],
            "label": torch.tensor([self.pids[index]]),
        }

    def collator(self, samples: Sequence[dict]) -> dict:
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "net_input": {"source": self._crop([s["source"] for s in samples])},
            "label": torch.cat([s["label"] for s in samples]),
            "patient_id": torch.IntTensor([s["patient_id"] for s in samples]),
        }


def cmsc_manifest(manifest_dir: str | Path, dest: str | Path) -> dict[str, list[tuple[str, list[int]]]]:
    """``convert_to_cmsc_manifest.py``: write ``dest/cmsc/<split>.tsv`` for every manifest of
    ``manifest_dir``; return each split's lines as (record, segment pair)."""
    out_dir = Path(dest) / "cmsc"
    out_dir.mkdir(parents=True, exist_ok=True)
    converted = {}
    for manifest in sorted(Path(manifest_dir).glob("*.tsv")):
        lines = manifest.read_text().splitlines()
        sizes: dict[str, str] = {}
        by_record: dict[str, list[int]] = {}
        for line in lines[1:]:
            fields = line.strip().split("\t")
            assert len(fields) == 2, line
            cut = fields[0].rindex("_")
            record = fields[0][:cut]
            sizes[record] = fields[1]
            by_record.setdefault(record, []).append(int(fields[0][cut + 1 : -4]))
        pairs = []
        for record, segments in by_record.items():
            ordered = sorted(segments)
            pairs += [(record, ordered[i : i + 2]) for i in range(0, len(ordered) - 1, 2)]
        body = [f"{record}\t{sizes[record]}\t0\t{','.join(map(str, pair))}" for record, pair in pairs]
        (out_dir / manifest.name).write_text("\n".join([lines[0].strip(), "mat", *body]) + "\n")
        converted[manifest.stem] = pairs
    return converted


class CMSCDataset:
    """``CMSCECGDataset`` with ``label=True``: one item per manifest line, the pair of segments it
    names, each read from ``<root>/<record>_<i>.<ext>``."""

    def __init__(self, manifest_path: str | Path):
        self.records: list[str] = []
        self.segments: list[list[int]] = []
        with open(manifest_path) as handle:
            self.root_dir = handle.readline().strip()
            self.ext = handle.readline().strip()
            for line in handle:
                fields = line.strip().split("\t")
                assert len(fields) == 4, line
                self.records.append(fields[0])
                self.segments.append([int(s) for s in fields[3].split(",")])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> list[dict]:
        views = []
        for i, segment in enumerate(self.segments[index]):
            ecg = scipy.io.loadmat(os.path.join(self.root_dir, f"{self.records[index]}_{segment}.{self.ext}"))
            views.append(
                {
                    "id": index,
                    "source": torch.from_numpy(ecg["feats"]).float(),
                    "label": torch.from_numpy(ecg["label"]),
                    "patient_id": ecg["patient_id"][0, 0],
                    "segment": i % 2,
                }
            )
        return views
