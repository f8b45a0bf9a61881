"""Demographics (Good Views strategy 3): other records with the same age group and sex are positives.

``age_bins`` are the lower edges of the age groups, the last group open-ended. The default is the
paper's grouping 18-29, 30-39, ..., 70-79, 80+; the paper's code used 5-year bins, e.g.
``[18, 20, 25, 30, ..., 85, 90]``. Sex is read from the ``sex`` column (``M``/``F``; ``MALE``
and ``FEMALE`` are accepted too).

A record with a missing age, an age below the first edge, or a missing or other sex has no
group: it gets no partner (the dataset counts it in ``items_without_partner``) and no
cross-record positive; ``describe()`` reports how many such records the split has.
"""

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import pandas as pd

from fairseq_goodviews.strategies.base import GroupStrategy, StrategyConfig, register_strategy

SEX_CODES = {"M": 0, "MALE": 0, "F": 1, "FEMALE": 1}


@dataclass
class DemographicsConfig(StrategyConfig):
    age_bins: List[float] = field(
        default_factory=lambda: [18, 30, 40, 50, 60, 70, 80],
        metadata={"help": "lower edges of the age groups (ascending; the last group is open-ended)"},
    )


def age_groups(age: pd.Series, lower_edges: List[float]) -> np.ndarray:
    """Index of each age's group; -1 for a missing age or one below the first edge."""
    edges = np.asarray(lower_edges, dtype=float)
    if len(edges) == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"age_bins must be a non-empty ascending list of lower edges, got {list(lower_edges)}")
    values = pd.to_numeric(age, errors="coerce").to_numpy(dtype=float)
    groups = np.searchsorted(edges, values, side="right") - 1
    groups[np.isnan(values)] = -1
    return groups.astype(np.int64)


def sex_codes(sex: pd.Series) -> np.ndarray:
    """0 for male, 1 for female, -1 for anything else (missing, unknown, other)."""
    return np.array([SEX_CODES.get(str(s).strip().upper(), -1) for s in sex], dtype=np.int64)


@register_strategy("demographics", dataclass=DemographicsConfig)
class Demographics(GroupStrategy):
    display_name = "Demographics"
    paper_row = "Strategy 3"
    paper_auroc = (88.1, 1.3)
    required_columns = ("age", "sex")
    partner_advice = "more records, or coarser age groups (fewer, wider task.strategy.age_bins)"
    cfg: DemographicsConfig

    def group_keys(self, table: pd.DataFrame, fit_table: pd.DataFrame) -> Dict[str, np.ndarray]:
        return {"age_group": age_groups(table["age"], self.cfg.age_bins), "sex": sex_codes(table["sex"])}
