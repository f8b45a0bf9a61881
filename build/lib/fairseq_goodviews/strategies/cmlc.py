"""CMLC (CLOCS "lead"; Good Views strategy 1, Lead): leads of one record at the same time are positives.

A view keeps the 12-slot layout (the encoder input stays 12 x T): the leads of its group carry
signal, every other slot is zero, and its ``lead_present`` is restricted to the group, so random
lead masking and the augmentations only touch the group's leads.

``lead_groups``:

- ``limb_precordial`` (the paper's code): two views, limb leads I..aVF and precordial V1..V6;
  ``lead_group`` is 0 (limb) or 1 (precordial).
- ``each`` (CLOCS): every lead is its own view; ``lead_group`` is the lead's slot. Twelve views
  per record multiply the batch by twelve, so ``n_views`` distinct present leads are sampled per
  record (uniformly, a fresh draw every time the record is loaded); ``n_views=0`` keeps every
  present lead.

Only present leads make views: a group with no present lead is skipped (a record with no lead
at all still yields one all-zero view, so it is counted as an anchor without positive).
"""

from dataclasses import dataclass, field
from typing import List, Mapping, Tuple

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.leads import CANONICAL_LEADS, LIMB_LEADS
from fairseq_goodviews.strategies.base import ALL, PositiveStrategy, StrategyConfig, View, register_strategy, same

LEAD_GROUPINGS = ("limb_precordial", "each")


@dataclass
class CmlcConfig(StrategyConfig):
    lead_groups: str = field(
        default="limb_precordial",
        metadata={"help": "limb_precordial: I..aVF vs V1..V6 (paper code) | each: every lead its own view (CLOCS)"},
    )
    n_views: int = field(
        default=2, metadata={"help": "lead_groups=each: present leads sampled per record (0 = all present leads)"}
    )


def check_lead_groups(cfg: CmlcConfig) -> None:
    if cfg.lead_groups not in LEAD_GROUPINGS:
        raise ValueError(f"lead_groups must be one of {', '.join(LEAD_GROUPINGS)}, got {cfg.lead_groups!r}")
    if cfg.n_views < 0:
        raise ValueError(f"n_views must be >= 0, got {cfg.n_views}")


def lead_view_count(cfg: CmlcConfig) -> int:
    """Views per record of a 12-lead record with every lead present."""
    if cfg.lead_groups == "each":
        return cfg.n_views if 0 < cfg.n_views < len(CANONICAL_LEADS) else len(CANONICAL_LEADS)
    return 2


def lead_views(
    lead_present: np.ndarray, lead_groups: str, n_views: int, rng: np.random.Generator
) -> List[Tuple[int, np.ndarray]]:
    """``(lead_group, slots)`` of each view: the group id and a boolean mask of its present leads."""
    present = np.asarray(lead_present, dtype=bool)
    if lead_groups == "each":
        slots = np.flatnonzero(present)
        if 0 < n_views < len(slots):
            slots = np.sort(rng.choice(slots, size=n_views, replace=False))
        groups = [(int(s), np.arange(len(present)) == s) for s in slots]
    else:
        limb = np.arange(len(present)) < len(LIMB_LEADS)
        groups = [(g, present & mask) for g, mask in enumerate((limb, ~limb)) if (present & mask).any()]
    return groups or [(0, present)]


def restrict_to_leads(signal: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """A copy of ``signal`` [12, L] with every lead outside ``slots`` zeroed."""
    if signal.shape[0] != len(CANONICAL_LEADS):
        raise ValueError(f"lead views need the {len(CANONICAL_LEADS)}-slot layout, got {signal.shape[0]} leads")
    return np.where(slots[:, None], signal, 0).astype(signal.dtype)


@register_strategy("cmlc", dataclass=CmlcConfig)
class Cmlc(PositiveStrategy):
    display_name = "CLOCS - Lead"
    paper_row = "Strategy 1"
    paper_auroc = (88.9, 1.6)
    cfg: CmlcConfig

    @classmethod
    def views_per_record(cls, cfg: CmlcConfig) -> int:
        return lead_view_count(cfg)

    def __init__(self, cfg: CmlcConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        super().__init__(cfg, table, fit_table, seed)
        check_lead_groups(cfg)

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        return [
            View(self.augment(restrict_to_leads(signal, slots), slots, rng), slots, lead_group=group)
            for group, slots in lead_views(lead_present, self.cfg.lead_groups, self.cfg.n_views, rng)
        ]

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        return same(meta["record"], rows) & ~same(meta["lead_group"], rows)
