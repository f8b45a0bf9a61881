"""Task ``ecg_identification``: fine-tune an encoder to tell patients apart (ArcFace), judge by retrieval.

Training: every record of the ``train`` split is labelled with its patient (one class per
training patient; records without a patient id are left out and counted in the log), random
crops of ``sample_size`` samples. Validation splits hold other patients, so they are scored by
the gallery/probe protocol of :mod:`fairseq_goodviews.scoring.retrieval` (top-1, top-5,
EER over the whole split, centred crops); a validation split without two patients with two
records is refused when it is loaded, naming its table.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from fairseq.tasks import register_task
from omegaconf import II, MISSING, open_dict

from fairseq_goodviews.data.ecg_dataset import EcgClassificationDataset, EcgRecordSource
from fairseq_goodviews.io.manifest import ManifestError, read_metadata
from fairseq_goodviews.leads import parse_leads
from fairseq_goodviews.scoring.retrieval import gallery_probe_split
from fairseq_goodviews.tasks.base import EcgRunConfig, EcgTask, check_data_folder, record_pretrained_encoder

logger = logging.getLogger(__name__)


@dataclass
class EcgIdentificationConfig(EcgRunConfig):
    data: str = field(
        default=MISSING, metadata={"help": "folder with <split>.tsv manifests and <split>.csv metadata (patient_id)"}
    )
    leads: str | None = field(
        default=None,
        metadata={"help": "comma-separated lead names to keep (e.g. 'I,II,V2'); the others are zero-filled"},
    )
    sample_rate: float = field(default=500.0, metadata={"help": "sample rate the records must have, Hz"})
    sample_size: int = field(default=5000, metadata={"help": "samples per record (random crop in training)"})
    distractors: bool = field(
        default=False, metadata={"help": "validation: add single-record patients to the gallery as distractors"}
    )
    seed: int = II("common.seed")


def patient_labels(patient_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(indices of records with a patient id, patient index of each in order of first appearance)."""
    ids = patient_ids.astype(object)
    known = np.flatnonzero(ids.notna().to_numpy() & (ids.astype(str).str.strip() != "").to_numpy())
    codes, _ = pd.factorize(ids.iloc[known].astype(str))
    return known, codes.astype(np.int64)


@register_task("ecg_identification", dataclass=EcgIdentificationConfig)
class EcgIdentificationTask(EcgTask):
    cfg: EcgIdentificationConfig

    def __init__(self, cfg: EcgIdentificationConfig, num_patients: int):
        super().__init__(cfg)
        self.num_patients = num_patients
        self.leads = parse_leads(cfg.leads)

    @classmethod
    def setup_task(cls, cfg: EcgIdentificationConfig, **kwargs) -> "EcgIdentificationTask":
        check_data_folder(cfg.data)
        _, labels = patient_labels(read_metadata(cfg.data, "train", required=("patient_id",))["patient_id"])
        num_patients = int(labels.max()) + 1 if labels.size else 0
        if num_patients < 2:
            raise ManifestError(
                f"{Path(cfg.data) / 'train.csv'}: identification needs at least two training patients, "
                f"found {num_patients}"
            )
        return cls(cfg, num_patients)

    def load_dataset(self, split: str, combine: bool = False, **kwargs) -> None:
        table = read_metadata(self.cfg.data, split, required=("patient_id",))
        if split != "train":
            gallery_probe_split(table["patient_id"], self.cfg.distractors, str(Path(self.cfg.data) / f"{split}.csv"))
        known, labels = patient_labels(table["patient_id"])
        full = np.zeros(len(table), dtype=np.int64)
        full[known] = labels
        source = EcgRecordSource(Path(self.cfg.data) / f"{split}.tsv", self.cfg.sample_rate)
        dataset = EcgClassificationDataset(
            source, full, self.cfg.sample_size, self.leads, self.cfg.seed, random_crop=split == "train"
        )
        if len(known) < len(table):
            dataset.keep_only(known)
        logger.info(
            "%s: %d records of %d patients (%d without a patient id left out)",
            split,
            len(known),
            int(labels.max()) + 1 if labels.size else 0,
            len(table) - len(known),
        )
        self.datasets[split] = dataset

    def build_model(self, cfg, from_checkpoint: bool = False):
        """Write the patient count and the pretrained encoder's config into ``cfg`` before building.

        ``cfg`` is the run's model config, saved in every checkpoint: with both in it the
        checkpoint rebuilds without the task's data or the pretraining checkpoint.
        """
        with open_dict(cfg):
            cfg.num_patients = self.num_patients
        record_pretrained_encoder(cfg)
        return super().build_model(cfg, from_checkpoint)
