"""Helpers for the strategy tests: a task built like fairseq builds it, real collated batches, and a
dataset whose samples encode their own position (to check where views come from)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES, read_metadata, write_manifest
from fairseq_goodviews.io.records import EcgRecord, write_record
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

#: Samples of every record of the ramp dataset; a crop of CROP samples starts at a random offset.
RAMP_SAMPLES = 1500
CROP = 1000


@dataclass
class Loaded:
    """One split loaded through the task, with a batch collated from all (or some) of its items."""

    task: EcgPretrainingTask
    split: str
    table: pd.DataFrame  # the split's metadata as written (label columns included)
    batch: Dict[str, Any]
    mask: torch.Tensor  # task.positive_mask(batch["views_meta"])
    views: pd.DataFrame  # one row per view: its meta, plus the metadata of the view's record (rec_*)

    @property
    def dataset(self):
        return self.task.datasets[self.split]

    @property
    def strategy(self):
        return self.dataset.strategy

    @property
    def source(self) -> np.ndarray:
        return self.batch["net_input"]["source"].numpy()


def make_task(
    data: Path, strategy: Dict[str, Any], sample_size: int = CROP, lead_mask_prob: float = 0.0, seed: int = 1
) -> EcgPretrainingTask:
    cfg = EcgPretrainingConfig(
        data=str(data), strategy=strategy, sample_size=sample_size, lead_mask_prob=lead_mask_prob, seed=seed
    )
    return EcgPretrainingTask.setup_task(cfg)


def collate(
    task: EcgPretrainingTask, split: str, indices: Sequence[int] | None = None, epoch: int = 1
) -> Dict[str, Any]:
    dataset = task.datasets[split]
    dataset.set_epoch(epoch)
    indices = range(len(dataset)) if indices is None else indices
    return dataset.collater([dataset[i] for i in indices])


def view_table(batch: Dict[str, Any], table: pd.DataFrame) -> pd.DataFrame:
    """The batch's view metadata as a frame, joined with the metadata row of each view's record."""
    meta = {k: v.numpy() for k, v in batch["views_meta"].items() if v.ndim == 1}
    views = pd.DataFrame(meta)
    return pd.concat([views, table.iloc[views["record"]].reset_index(drop=True).add_prefix("rec_")], axis=1)


def load(
    data: Path, strategy: Dict[str, Any], split: str = "train", indices=None, epoch: int = 1, **task_options
) -> Loaded:
    """Load ``split`` through the task and collate a real batch (all items, or ``indices``) and its mask."""
    task = make_task(data, strategy, **task_options)
    task.load_dataset(split)
    batch = collate(task, split, indices, epoch)
    table = read_metadata(data, split)
    mask = task.positive_mask(batch["views_meta"])
    return Loaded(task=task, split=split, table=table, batch=batch, mask=mask, views=view_table(batch, table))


def pairwise(values: np.ndarray) -> np.ndarray:
    """``out[i, j] = values[i] == values[j]``, numpy."""
    values = np.asarray(values)
    return values[:, None] == values[None, :]


def off_diagonal(mask) -> np.ndarray:
    """A numpy copy of a relation (tensor or array) with the diagonal cleared (the loss ignores it)."""
    out = np.array(mask, dtype=bool)
    np.fill_diagonal(out, False)
    return out


def write_ramp_dataset(root: Path, n_per_split=(24, 8, 8), seed: int = 0, missing_leads: bool = False) -> Path:
    """Records whose sample t of lead l is ``1 + t + 10000 l`` (never zero, position readable).

    Metadata: 2 records per patient; ages, sexes, rhythms, beats and attributes from a few
    values so that groups have several members; record 3 of each split has no age, record 5 an
    unknown sex, and (train) record 7 no attribute at all and record 9 a missing QRSDuration.
    With ``missing_leads``, odd records lack V1..V3.
    """
    rng = np.random.default_rng(seed)
    base = 1.0 + np.arange(RAMP_SAMPLES)[None, :] + 10000.0 * np.arange(12)[:, None]
    for split, n in zip(("train", "valid", "test"), n_per_split, strict=True):
        rows = []
        for i in range(n):
            present = np.ones(12, dtype=bool)
            if missing_leads and i % 2:
                present[6:9] = False
            feats = np.where(present[:, None], base, 0.0).astype(np.float32)
            rel = f"records/{split}_{i:03d}.mat"
            write_record(root / rel, EcgRecord(feats, 500.0, lead_present=present))
            attributes = {name: float(rng.normal(100, 20)) for name in ATTRIBUTE_NAMES}
            attributes["RAxis"] = float(rng.choice([-80, 10, 60, 265]))
            attributes["TAxis"] = float(rng.uniform(-90, 270))
            if split == "train" and i == 7:
                attributes = {name: np.nan for name in ATTRIBUTE_NAMES}
            if split == "train" and i == 9:
                attributes["QRSDuration"] = np.nan
            rows.append(
                {
                    "path": rel,
                    "n_samples": RAMP_SAMPLES,
                    "record_id": f"{split}_{i:03d}",
                    "patient_id": f"{split}_p{i // 2}",
                    "age": np.nan if i == 3 else [25, 34, 47, 52, 88][i % 5],
                    "sex": "X" if i == 5 else "MF"[(i // 5) % 2],
                    "rhythm": ["SR", "SB", "AFIB"][i % 3],
                    "beat": ["NONE", "RBBB LVH", "LVH RBBB", "1AVB"][i % 4],
                    "label": ["SR", "SB", "AFIB"][i % 3],
                    "source": "ramp",
                    "sample_rate": 500.0,
                    **{f"attr_{k}": v for k, v in attributes.items()},
                }
            )
        write_manifest(root, split, root, pd.DataFrame(rows))
    return root
