"""Patient (PCLR, Diamant et al. 2022): other records of the same patient are positives.

A "record" is a row of the split's metadata table. Segmented datasets store several rows per
recording (same ``record_id``, one ``segment`` each). With ``same_recording: true`` (default)
segments of one recording count as different records of their patient: on Chapman, which has one
ECG per patient, the partner is then another segment of the same ECG (a CMSC-like positive),
and a patient with a single unsegmented ECG has no partner. With ``same_recording: false`` only
rows of *other* recordings are partners and positives, which is PCLR proper (different ECGs).

A record without a partner (alone, or with a missing ``patient_id``) is counted by the dataset
(``items_without_partner``) and in ``describe()``.
"""

from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.strategies.base import (
    ALL,
    GroupStrategy,
    StrategyConfig,
    group_relation,
    register_strategy,
    same,
)


@dataclass
class PatientConfig(StrategyConfig):
    same_recording: bool = field(
        default=True,
        metadata={"help": "segments of the same recording (record_id) may be partners; false: other recordings only"},
    )


def recording_codes(table: pd.DataFrame) -> np.ndarray:
    """Integer code of each row's recording (``record_id``; every row its own recording without it)."""
    if "record_id" not in table.columns:
        return np.arange(len(table), dtype=np.int64)
    codes = pd.factorize(table["record_id"])[0].astype(np.int64)
    unknown = codes < 0
    codes[unknown] = codes.max(initial=-1) + 1 + np.arange(unknown.sum())
    return codes


@register_strategy("patient", dataclass=PatientConfig)
class Patient(GroupStrategy):
    display_name = "Patient (PCLR)"
    required_columns = ("patient_id",)
    needs_repeat_patients = True
    partner_advice = "data with several ECGs per patient (or same_recording=true on segmented records)"
    cfg: PatientConfig

    def __init__(self, cfg: PatientConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        self.recording = recording_codes(table)
        super().__init__(cfg, table, fit_table, seed)
        if not cfg.same_recording:
            self._other_recordings = self._count_other_recordings()

    def group_keys(self, table: pd.DataFrame, fit_table: pd.DataFrame) -> Dict[str, np.ndarray]:
        return {"patient": pd.factorize(table["patient_id"])[0].astype(np.int64)}

    def record_keys(self) -> Dict[str, np.ndarray]:
        return {**super().record_keys(), "recording": self.recording}

    def _count_other_recordings(self) -> np.ndarray:
        """Per record, how many rows of its patient belong to another recording (0 without a patient)."""
        frame = pd.DataFrame({"patient": self.keys["patient"], "recording": self.recording})
        per_patient = frame.groupby("patient")["recording"].transform("size")
        per_recording = frame.groupby(["patient", "recording"])["recording"].transform("size")
        return np.where(frame["patient"] >= 0, per_patient - per_recording, 0)

    def sample_partner(self, index: int, rng: np.random.Generator) -> Optional[int]:
        if self.cfg.same_recording:
            return super().sample_partner(index, rng)
        groups = self.partner_index
        members = groups.members[groups.start[index] : groups.end[index]]
        candidates = members[self.recording[members] != self.recording[index]]
        return int(candidates[rng.integers(len(candidates))]) if len(candidates) else None

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        relation = group_relation(meta, ["patient"], rows)
        if not self.cfg.same_recording:
            relation &= ~same(meta["recording"], rows)
        return relation | same(meta["record"], rows)

    def no_positive_reason(self) -> Optional[str]:
        if not self.cfg.same_recording and (self._other_recordings == 0).all():
            return "no patient has records from two recordings"
        if super().no_positive_reason() is not None:
            return "every patient has a single record (one ECG per patient)"
        return None

    def records_without_partner(self) -> int:
        if self.cfg.same_recording:
            return super().records_without_partner()
        return int((self._other_recordings == 0).sum())
