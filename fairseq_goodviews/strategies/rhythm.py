"""Rhythm (Good Views strategy 4): other records with the same rhythm (and conditions) are positives.

Positives share the ``rhythm`` code (Chapman's 11 rhythms) and, with ``match_beat`` (the paper's
definition, the default), the same *set* of ``beat`` conditions (space-separated codes; ``NONE``
is the empty set; order does not matter).

This strategy reads the downstream labels, so its results are label-using: the task logs a
warning and ``describe()`` says so. Labels are only ever read from the training split: the task
drops the label columns from every other split, so building the strategy for a validation or test
split fails with an error that says to disable validation (``dataset.disable_validation=true``,
as ``config/pretraining/rhythm.yaml`` does). A record with a missing rhythm (or beat, when
matched) gets no partner and is counted.
"""

from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np
import pandas as pd

from fairseq_goodviews.strategies.base import GroupStrategy, StrategyConfig, register_strategy


@dataclass
class RhythmConfig(StrategyConfig):
    match_beat: bool = field(
        default=True,
        metadata={"help": "positives also need the same set of Beat conditions (paper); false: rhythm only"},
    )


def beat_sets(beat: pd.Series) -> pd.Series:
    """Canonical text of each record's set of conditions ('' for NONE, NaN if missing)."""

    def canonical(value: Any) -> Any:
        if pd.isna(value):
            return np.nan
        codes = {c for c in str(value).split() if c.upper() != "NONE"}
        return " ".join(sorted(codes))

    return beat.map(canonical)


def codes(values: pd.Series) -> np.ndarray:
    """Integer code per distinct value; -1 for missing."""
    return pd.factorize(values)[0].astype(np.int64)


@register_strategy("rhythm", dataclass=RhythmConfig)
class Rhythm(GroupStrategy):
    display_name = "Rhythms"
    paper_row = "Strategy 4"
    paper_auroc = (99.3, 0.0)
    uses_labels = True
    partner_advice = "more records, or coarser groups (task.strategy.match_beat=false)"
    cfg: RhythmConfig

    def group_keys(self, table: pd.DataFrame, fit_table: pd.DataFrame) -> Dict[str, np.ndarray]:
        needed = ["rhythm", "beat"] if self.cfg.match_beat else ["rhythm"]
        missing = [c for c in needed if c not in table.columns]
        absent_everywhere = [c for c in missing if c not in fit_table.columns]
        if absent_everywhere:
            raise ValueError(
                f"strategy 'rhythm' needs the label column(s) {', '.join(absent_everywhere)} in the training "
                "metadata; this dataset has none (use a label-free strategy, or set match_beat=false if only "
                "beat is missing)"
            )
        if missing:
            raise ValueError(
                f"strategy 'rhythm' reads the downstream label column(s) {', '.join(missing)}, which this split "
                "does not have: label columns are kept for the train split only, so that no strategy reads the "
                "labels of valid or test. Pretrain with validation disabled: dataset.disable_validation=true "
                "(config/pretraining/rhythm.yaml sets it)"
            )
        keys = {"rhythm": codes(table["rhythm"])}
        if self.cfg.match_beat:
            keys["beat_set"] = codes(beat_sets(table["beat"]))
        return keys

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "label_columns": ["rhythm", "beat"] if self.cfg.match_beat else ["rhythm"]}
