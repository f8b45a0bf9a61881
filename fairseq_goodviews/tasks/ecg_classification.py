"""Task ``ecg_classification``: the downstream rhythm classification (linear probe or fine-tune)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from fairseq_goodviews.data.ecg_dataset import EcgClassificationDataset, EcgRecordSource, label_indices
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.labels import CLASS_NAMES
from fairseq_goodviews.leads import parse_leads


@dataclass
class EcgClassificationConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "folder with <split>.tsv manifests and <split>.csv metadata"})
    classes: str = field(
        default=",".join(CLASS_NAMES), metadata={"help": "comma-separated class names of the 'label' column"}
    )
    leads: Optional[str] = field(
        default=None,
        metadata={"help": "comma-separated lead names to keep (e.g. 'I,II,V2'); the others are zero-filled"},
    )
    sample_rate: float = field(default=500.0, metadata={"help": "sample rate the records must have, Hz"})
    sample_size: int = field(default=5000, metadata={"help": "samples per record (random crop in training)"})
    train_fraction: float = field(
        default=1.0, metadata={"help": "fraction of the training labels used (label-efficiency runs), stratified"}
    )
    seed: int = II("common.seed")


@register_task("ecg_classification", dataclass=EcgClassificationConfig)
class EcgClassificationTask(FairseqTask):
    cfg: EcgClassificationConfig

    @classmethod
    def setup_task(cls, cfg: EcgClassificationConfig, **kwargs) -> "EcgClassificationTask":
        parse_leads(cfg.leads)
        return cls(cfg)

    @property
    def class_names(self) -> list[str]:
        return [c.strip() for c in self.cfg.classes.split(",") if c.strip()]

    def load_dataset(self, split: str, combine: bool = False, **kwargs) -> None:
        table = read_metadata(self.cfg.data, split, required=("label",))
        labels = label_indices(table, self.class_names, str(Path(self.cfg.data) / f"{split}.csv"))
        source = EcgRecordSource(Path(self.cfg.data) / f"{split}.tsv", self.cfg.sample_rate)
        dataset = EcgClassificationDataset(
            source, labels, self.cfg.sample_size, parse_leads(self.cfg.leads), self.cfg.seed, random_crop=split == "train"
        )
        if split == "train" and self.cfg.train_fraction < 1.0:
            dataset.keep_only(stratified_subset(labels, self.cfg.train_fraction, self.cfg.seed))
        self.datasets[split] = dataset

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None

    def max_positions(self):
        return None


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least one record per class), chosen with ``seed``."""
    rng = np.random.default_rng([seed, 7919])
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, int(round(fraction * len(members))))
        keep.extend(rng.choice(members, size=count, replace=False).tolist())
    return np.sort(np.array(keep, dtype=np.int64))
