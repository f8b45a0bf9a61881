"""SimCLR (paper strategy 2): two stochastic augmentations of the same record are positives.

Two policies: ``paper`` (the Good Views paper: each view gets one transform, the views two
different ones drawn from jittering, scaling, flipping, rotating, time and size warping; its
"rotation" is a random sign per lead plus a lead shuffle) and ``independent`` (every transform
applied to every view independently with its own probability, ``<transform>_prob``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np
import pandas as pd

from fairseq_goodviews.strategies.augment import PAPER_TRANSFORMS, apply_transform
from fairseq_goodviews.strategies.base import PositiveStrategy, StrategyConfig, View, register_strategy

POLICIES = ("paper", "independent")


@dataclass
class SimclrConfig(StrategyConfig):
    n_views: int = field(default=2, metadata={"help": "augmented views per record"})
    policy: str = field(
        default="paper",
        metadata={
            "help": "paper: one transform per view, different for each view | independent: every "
            "transform with its own probability (<transform>_prob)"
        },
    )
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
    cfg: SimclrConfig

    def __init__(self, cfg: SimclrConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        super().__init__(cfg, table, fit_table, seed)
        if cfg.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {cfg.policy!r}")
        if cfg.policy == "paper" and not 1 <= cfg.n_views <= len(PAPER_TRANSFORMS):
            raise ValueError(
                f"policy paper draws a different transform per view: n_views must be 1.."
                f"{len(PAPER_TRANSFORMS)}, got {cfg.n_views}"
            )

    @classmethod
    def views_per_record(cls, cfg: SimclrConfig) -> int:
        return cfg.n_views

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        if self.cfg.policy == "independent":
            return [View(self.augment(signal, lead_present, rng), lead_present) for _ in range(self.cfg.n_views)]
        names = rng.choice(len(PAPER_TRANSFORMS), size=self.cfg.n_views, replace=False)
        return [
            View(apply_transform(PAPER_TRANSFORMS[k], signal.copy(), rng, self.cfg, lead_present), lead_present)
            for k in names
        ]
