"""fairseq datasets over a manifest of ``.mat`` records: contrastive views and labelled records."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset

from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.io.packed import open_pack
from fairseq_goodviews.io.records import RecordError, read_record
from fairseq_goodviews.leads import lead_keep_mask
from fairseq_goodviews.strategies.augment import random_lead_mask
from fairseq_goodviews.strategies.base import PositiveStrategy, View

logger = logging.getLogger(__name__)


class EcgRecordSource:
    """Loads record ``i`` of a manifest as a fixed-length [12, L] crop with its lead-present mask.

    Reads from the split's pack (:mod:`fairseq_goodviews.io.packed`) when one beside the manifest
    is current, else from the ``.mat`` files; both give identical crops. No option selects the
    pack: a current one is always used (``use_pack=False`` is for benchmarks), and the log names
    the path taken.
    """

    def __init__(self, manifest_path: str | Path, sample_rate: float, use_pack: bool = True):
        self.manifest_path = Path(manifest_path)
        self.root, entries = read_manifest(manifest_path)
        self.paths = [str(self.root / rel) for rel, _ in entries]
        self.sizes = np.array([n for _, n in entries], dtype=np.int64)
        self.sample_rate = sample_rate
        self.pack = open_pack(self.manifest_path) if use_pack else None
        if self.pack is not None:
            logger.info("%s: reading the records from the pack %s", self.manifest_path, self.pack.location)
        elif use_pack:
            logger.info(
                "%s: reading one .mat file per record; a pack (goodviews-pack %s, or a preparer's --pack) "
                "is the faster path",
                self.manifest_path,
                self.manifest_path.parent,
            )
        # Manifest row of each index, so that keep_only leaves the pack's rows in place.
        self.rows = np.arange(len(self.paths))

    def __len__(self) -> int:
        return len(self.paths)

    def keep_only(self, indices: np.ndarray) -> None:
        self.paths = [self.paths[i] for i in indices]
        self.sizes = self.sizes[indices]
        self.rows = self.rows[indices]

    def _check_rate(self, index: int, sample_rate: float) -> None:
        if abs(sample_rate - self.sample_rate) > 1e-6:
            raise RecordError(
                self.paths[index],
                f"sample rate {sample_rate:g} Hz, but the task expects {self.sample_rate:g} Hz "
                "(re-run the preparer with --target-rate)",
            )

    @staticmethod
    def _window(length: int, sample_size: int, rng: np.random.Generator | None) -> tuple[int, int]:
        """Start and length of the crop: random offset if ``rng``, else centred; whole if short."""
        if length <= sample_size:
            return 0, length
        offset = int(rng.integers(0, length - sample_size + 1)) if rng is not None else (length - sample_size) // 2
        return offset, sample_size

    def load(self, index: int, sample_size: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Crop ``sample_size`` samples (random offset if ``rng``, else centred); zero-pad short records."""
        if self.pack is not None:
            row = self.rows[index]
            self._check_rate(index, self.pack.sample_rates.item(row))
            start, length = self._window(self.pack.lengths.item(row), sample_size, rng)
            feats = self.pack.crop(row, start, length)
            lead_present = self.pack.lead_present[row].copy()
        else:
            record = read_record(self.paths[index], with_meta=False)
            self._check_rate(index, record.sample_rate)
            start, length = self._window(record.n_samples, sample_size, rng)
            feats = np.ascontiguousarray(record.feats[:, start : start + length], dtype=np.float32)
            lead_present = record.lead_present
        if length < sample_size:
            feats = np.pad(feats, ((0, 0), (0, sample_size - length)))
        return feats, lead_present


def centred_crop(signal: np.ndarray, sample_size: int) -> np.ndarray:
    """The centred ``sample_size`` crop of ``signal`` [C, L] -> [C, sample_size], zero-padded at its
    end when the signal is shorter: what :meth:`EcgRecordSource.load` gives without a generator."""
    start, length = EcgRecordSource._window(signal.shape[1], sample_size, None)
    crop = signal[:, start : start + length]
    return np.pad(crop, ((0, 0), (0, sample_size - length))) if length < sample_size else crop


def covering_crops(signal: np.ndarray, sample_size: int) -> np.ndarray:
    """Consecutive ``sample_size`` crops covering ``signal`` [C, L] -> [n, C, sample_size]: from the
    start, the last one aligned to the signal's end; a signal no longer than one crop is one crop,
    zero-padded at its end. A record scored (or embedded) as a whole is the mean over these."""
    length = signal.shape[1]
    if length <= sample_size:
        return centred_crop(signal, sample_size)[None]
    starts = list(range(0, length - sample_size + 1, sample_size))
    if starts[-1] + sample_size < length:
        starts.append(length - sample_size)
    return np.stack([signal[:, s : s + sample_size] for s in starts])


class _CroppedRecordDataset(FairseqDataset):
    """Fixed-size crops of a manifest's records, shuffled per epoch with ``(seed, epoch)``.

    The epoch lives in shared memory, so data-loading workers that persist across epochs (forked
    once, before the first epoch) see every :meth:`set_epoch` of the training loop.
    """

    def __init__(self, source: EcgRecordSource, sample_size: int, seed: int):
        super().__init__()
        self.source = source
        self.sample_size = sample_size
        self.seed = seed
        self._epoch = multiprocessing.RawValue("q", 1)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def num_tokens(self, index: int) -> int:
        return self.sample_size

    def size(self, index: int) -> int:
        return self.sample_size

    def ordered_indices(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self))


class EcgPretrainingDataset(_CroppedRecordDataset):
    """Each item is an anchor record's views plus, for cross-record strategies, a partner's views.

    Randomness (crop, partner, augmentation, lead mask) is drawn from a generator seeded by
    ``(seed, epoch, index)``, so a batch is the same whatever the number of data-loader workers
    or distributed ranks.
    """

    def __init__(
        self,
        source: EcgRecordSource,
        strategy: PositiveStrategy,
        sample_size: int,
        lead_mask_prob: float,
        seed: int,
    ):
        super().__init__(source, sample_size, seed)
        self.strategy = strategy
        self.lead_mask_prob = lead_mask_prob
        self.view_length = strategy.view_length(sample_size)
        self.record_keys = strategy.record_keys()

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        """fairseq keeps this dataset's epoch iterator, and with it its data-loading workers."""
        return True

    def _views(self, record: int, item: int, rng: np.random.Generator) -> List[Dict[str, Any]]:
        signal, lead_present = self.source.load(record, self.sample_size, rng)
        views: List[View] = self.strategy.make_views(signal, lead_present, rng)
        out = []
        for view in views:
            masked, lead_mask = random_lead_mask(view.signal, view.lead_present, self.lead_mask_prob, rng)
            meta = {"record": record, "item": item, "segment": view.segment, "lead_group": view.lead_group}
            meta.update({k: v[record] for k, v in self.record_keys.items()})
            out.append({"source": masked, "lead_mask": lead_mask, "meta": meta})
        return out

    def __getitem__(self, index: int) -> Dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        views = self._views(index, index, rng)
        has_partner = True
        if self.strategy.cross_record:
            partner = self.strategy.sample_partner(index, rng)
            has_partner = partner is not None
            if has_partner:
                views += self._views(partner, index, rng)
        return {"id": index, "views": views, "has_partner": has_partner}

    def collater(self, samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        samples = [s for s in samples if s is not None]
        if not samples:
            return {}
        views = [v for s in samples for v in s["views"]]
        meta = {key: torch.as_tensor(np.array([v["meta"][key] for v in views])) for key in views[0]["meta"]}
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "net_input": {"source": torch.from_numpy(np.stack([v["source"] for v in views]))},
            "lead_mask": torch.from_numpy(np.stack([v["lead_mask"] for v in views])),
            "views_meta": meta,
            "items_without_partner": sum(not s["has_partner"] for s in samples),
            "nsentences": len(samples),
            "ntokens": len(views) * self.view_length,
        }


class EcgClassificationDataset(_CroppedRecordDataset):
    """Records with a single class label; leads outside ``leads`` are zero-filled in their slots."""

    def __init__(
        self,
        source: EcgRecordSource,
        labels: np.ndarray,
        sample_size: int,
        leads: Sequence[int],
        seed: int,
        random_crop: bool,
    ):
        super().__init__(source, sample_size, seed)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.keep = lead_keep_mask(leads)
        self.random_crop = random_crop

    def keep_only(self, indices: np.ndarray) -> None:
        """Restrict the dataset to ``indices`` (label-efficiency subsets)."""
        self.source.keep_only(indices)
        self.labels = self.labels[indices]

    def __getitem__(self, index: int) -> Dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.random_crop else None
        signal, _ = self.source.load(index, self.sample_size, rng)
        signal[~self.keep] = 0.0
        return {"id": index, "source": signal, "label": self.labels[index]}

    def collater(self, samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        if not samples:
            return {}
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "net_input": {"source": torch.from_numpy(np.stack([s["source"] for s in samples]))},
            "target": torch.tensor([s["label"] for s in samples], dtype=torch.long),
            "nsentences": len(samples),
            "ntokens": len(samples) * self.sample_size,
        }
