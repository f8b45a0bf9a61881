"""SimCLR (paper strategy 2): two stochastic augmentations of the same record are positives."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

from fairseq_goodviews.strategies.base import PositiveStrategy, StrategyConfig, View, register_strategy


@dataclass
class SimclrConfig(StrategyConfig):
    n_views: int = field(default=2, metadata={"help": "augmented views per record"})
    jitter_prob: float = 0.5
    scaling_prob: float = 0.5
    flip_prob: float = 0.5
    permute_prob: float = 0.5
    time_warp_prob: float = 0.5
    magnitude_warp_prob: float = 0.5


@register_strategy("simclr", dataclass=SimclrConfig)
class Simclr(PositiveStrategy):
    display_name = "SimCLR"
    paper_row = "Strategy 2"
    paper_auroc = (89.6, 0.6)

    @classmethod
    def views_per_record(cls, cfg: SimclrConfig) -> int:
        return cfg.n_views

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        return [View(self.augment(signal, lead_present, rng), lead_present) for _ in range(self.cfg.n_views)]
