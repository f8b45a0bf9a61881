"""CMSC (CLOCS "time"; Good Views strategy 1, Time): non-overlapping segments of one record are positives.

The record's crop (``task.sample_size`` samples) is cut into ``n_segments`` segments of
``segment_length`` samples that never overlap. CLOCS takes 2 segments of 2500 samples from a
5000-sample record and the paper's code the halves ``[:T/2]`` and ``[T/2:]``: both are
``n_segments=2`` with the default ``segment_length=0`` (the crop divided evenly).

When the segments do not fill the crop, ``placement`` decides where they go: ``contiguous`` puts
them back to back at a random offset in the crop; ``random`` draws random gaps between them
(uniform cut points, so every non-overlapping, ordered placement is possible). Segments keep their
time order: view ``segment`` s starts after view s-1 ends.
"""

from dataclasses import dataclass, field
from typing import List, Mapping

import numpy as np
import pandas as pd
import torch

from fairseq_goodviews.strategies.base import ALL, PositiveStrategy, StrategyConfig, View, register_strategy, same

PLACEMENTS = ("contiguous", "random")


@dataclass
class CmscConfig(StrategyConfig):
    n_segments: int = field(default=2, metadata={"help": "non-overlapping segments (views) per record"})
    segment_length: int = field(
        default=0, metadata={"help": "samples per segment; 0 = the crop divided evenly by n_segments"}
    )
    placement: str = field(
        default="contiguous",
        metadata={"help": "where segments go when they do not fill the crop: contiguous | random (random gaps)"},
    )


def resolve_segment_length(sample_size: int, n_segments: int, segment_length: int) -> int:
    """The segment length for a crop of ``sample_size``; a clear error if the segments cannot fit."""
    length = segment_length if segment_length > 0 else sample_size // n_segments
    if length < 1 or n_segments * length > sample_size:
        raise ValueError(
            f"{n_segments} non-overlapping segments of {length} samples do not fit in a crop of "
            f"{sample_size} samples (raise task.sample_size or lower segment_length)"
        )
    return length


def segment_offsets(
    crop_length: int, n_segments: int, segment_length: int, placement: str, rng: np.random.Generator
) -> np.ndarray:
    """Start sample of each segment: ordered, non-overlapping, inside the crop."""
    slack = crop_length - n_segments * segment_length
    if placement == "contiguous":
        free_before = np.full(n_segments, int(rng.integers(slack + 1)))
    else:
        free_before = np.sort(rng.integers(slack + 1, size=n_segments))
    return free_before + np.arange(n_segments) * segment_length


def check_segments(cfg: CmscConfig) -> None:
    """Options that are wrong whatever the crop (whether the segments fit is checked in view_length)."""
    if cfg.n_segments < 1 or cfg.segment_length < 0:
        raise ValueError(f"need n_segments >= 1 and segment_length >= 0, got {cfg.n_segments} and {cfg.segment_length}")
    if cfg.placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {cfg.placement!r}")


class TimeSegments(PositiveStrategy):
    """A strategy whose views are non-overlapping time segments of the crop (CMSC, CMSMLC)."""

    cfg: CmscConfig

    def __init__(self, cfg: CmscConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        super().__init__(cfg, table, fit_table, seed)
        check_segments(cfg)

    @classmethod
    def crop_segments(cls, cfg: CmscConfig) -> int:
        return 1 if cfg.segment_length else cfg.n_segments

    def view_length(self, sample_size: int) -> int:
        return resolve_segment_length(sample_size, self.cfg.n_segments, self.cfg.segment_length)


@register_strategy("cmsc", dataclass=CmscConfig)
class Cmsc(TimeSegments):
    display_name = "CLOCS - Time"
    paper_row = "Strategy 1"
    paper_auroc = (83.0, 1.1)

    @classmethod
    def views_per_record(cls, cfg: CmscConfig) -> int:
        return cfg.n_segments

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        length = self.view_length(signal.shape[1])
        offsets = segment_offsets(signal.shape[1], self.cfg.n_segments, length, self.cfg.placement, rng)
        return [
            View(
                self.augment(np.ascontiguousarray(signal[:, start : start + length]), lead_present, rng),
                lead_present,
                segment=s,
            )
            for s, start in enumerate(offsets)
        ]

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        return same(meta["record"], rows) & ~same(meta["segment"], rows)
