"""CMSMLC (CLOCS): different leads across different segments of the same record are positives.

Views are every (segment, lead group) combination: the crop is cut into non-overlapping segments
exactly as :mod:`cmsc` does, and each segment into lead views exactly as :mod:`cmlc` does (the
same lead groups, or the same sampled leads, in every segment). A view carries both its
``segment`` and its ``lead_group``.

``positives`` picks the relation between two views of the same record:

- ``cross`` (default; the design's definition "different leads across different segments"): a
  different segment AND a different lead group. Views of the record that share a segment or a
  lead group are then negatives, like any other view in the batch.
- ``any``: every other view of the record, which is what CLOCS's code does: its
  ``obtain_contrastive_loss`` contrasts every pair of the (lead, segment) views of an instance
  with the same-patient mask, so same-lead/other-segment and other-lead/same-segment pairs are
  positives too.
"""

from dataclasses import dataclass, field
from typing import List, Mapping

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.strategies.base import ALL, View, register_strategy, same
from fairseq_goodviews.strategies.cmlc import (
    CmlcConfig,
    check_lead_groups,
    lead_view_count,
    lead_views,
    restrict_to_leads,
)
from fairseq_goodviews.strategies.cmsc import CmscConfig, TimeSegments, segment_offsets

RELATIONS = ("cross", "any")


@dataclass
class CmsmlcConfig(CmlcConfig, CmscConfig):
    positives: str = field(
        default="cross",
        metadata={
            "help": "cross: other segment AND other lead group | any: every other view of the record (CLOCS code)"
        },
    )


@register_strategy("cmsmlc", dataclass=CmsmlcConfig)
class Cmsmlc(TimeSegments):
    display_name = "CLOCS - Lead & Time (CMSMLC)"
    cfg: CmsmlcConfig

    @classmethod
    def views_per_record(cls, cfg: CmsmlcConfig) -> int:
        return cfg.n_segments * lead_view_count(cfg)

    def __init__(self, cfg: CmsmlcConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        super().__init__(cfg, table, fit_table, seed)
        check_lead_groups(cfg)
        if cfg.positives not in RELATIONS:
            raise ValueError(f"positives must be one of {', '.join(RELATIONS)}, got {cfg.positives!r}")

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        length = self.view_length(signal.shape[1])
        offsets = segment_offsets(signal.shape[1], self.cfg.n_segments, length, self.cfg.placement, rng)
        groups = lead_views(lead_present, self.cfg.lead_groups, self.cfg.n_views, rng)
        views = []
        for segment, start in enumerate(offsets):
            piece = signal[:, start : start + length]
            for group, slots in groups:
                restricted = restrict_to_leads(piece, slots)
                views.append(View(self.augment(restricted, slots, rng), slots, segment=segment, lead_group=group))
        return views

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        relation = same(meta["record"], rows)
        if self.cfg.positives == "cross":
            relation &= ~same(meta["segment"], rows) & ~same(meta["lead_group"], rows)
        return relation
