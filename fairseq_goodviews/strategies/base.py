"""Positive-pair strategies: each says how a record becomes views and which views are positives.

A strategy is a small class registered with :func:`register_strategy` next to its config
dataclass. The pretraining dataset turns every dataset item into views (the record's own views,
plus those of a partner record for cross-record strategies); every view carries a small metadata
dict (record index, item index, segment, lead group, and the strategy's own per-record keys).
After the views of the global batch are gathered, :meth:`PositiveStrategy.positive_mask` turns
that metadata into the rows of the relation P that the one contrastive loss needs: a worker asks
only for its own anchors' rows ([n, N], ``rows`` = its slice of the global batch), never for the
whole [N, N] relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from fairseq_goodviews.strategies.augment import AugmentationConfig, augment

#: Every row of the relation (a single process, or a test that wants the whole [N, N] matrix).
ALL = slice(None)


@dataclass
class StrategyConfig(AugmentationConfig):
    """Options every strategy has; the augmentation probabilities default to off."""

    _name: Optional[str] = None


@dataclass
class View:
    """One view of a record: a [leads, L] signal and which of its leads carry signal."""

    signal: np.ndarray
    lead_present: np.ndarray
    segment: int = 0
    lead_group: int = 0


class PositiveStrategy:
    """Base class: one view per record, positives are other views of the same record.

    The class attributes are everything the rest of the project knows about a strategy (the task,
    the Table 1 runner, its report and plots read them from the registry): a new strategy is one
    module here plus one config in ``config/pretraining/``.
    """

    #: Name of the method in result tables.
    display_name: str = ""
    #: Its row in the Good Views paper's Table 1 (e.g. "Strategy 2"); None for methods outside it.
    paper_row: Optional[str] = None
    #: The paper's Table 1 macro AUROC (%) on Chapman, (mean, std over 5 runs), where it has one.
    paper_auroc: Optional[Tuple[float, float]] = None
    #: The strategy reads downstream labels (rhythm): results must be flagged as label-using.
    uses_labels: bool = False
    #: Positives come from other records: the dataset puts a sampled partner in the batch.
    cross_record: bool = False
    #: Metadata-table columns the strategy needs; a missing one is a clear error at load time.
    required_columns: Sequence[str] = ()
    #: Positives are other records of the same patient: the strategy needs data with several
    #: records per patient (on one-ECG-per-patient data no anchor can have a positive).
    needs_repeat_patients: bool = False
    #: What gives more records a partner (a cross-record strategy's advice when most have none).
    partner_advice: str = ""

    @classmethod
    def table_name(cls) -> str:
        """The row label of result tables: "Strategy 2 (SimCLR)", or the display name alone."""
        return f"{cls.paper_row} ({cls.display_name})" if cls.paper_row else cls.display_name

    @classmethod
    def crop_segments(cls, cfg: StrategyConfig) -> int:
        """How many views' worth of time a crop is cut into (the crop is that many views long)."""
        return 1

    @classmethod
    def views_per_record(cls, cfg: StrategyConfig) -> int:
        """Views made from each record's crop (a cross-record item holds two records)."""
        return 1

    def __init__(self, cfg: StrategyConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        """``table`` is the split being loaded; ``fit_table`` the training split (for statistics)."""
        self.cfg = cfg
        self.table = table
        self.seed = seed

    def view_length(self, sample_size: int) -> int:
        """Length in samples of every view made from a crop of ``sample_size`` samples."""
        return sample_size

    def augment(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return augment(signal, rng, self.cfg, lead_present)

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        return [View(self.augment(signal, lead_present, rng), lead_present)]

    def record_keys(self) -> Dict[str, np.ndarray]:
        """Per-record arrays (aligned with ``table``) that :meth:`positive_mask` needs."""
        return {}

    def sample_partner(self, index: int, rng: np.random.Generator) -> Optional[int]:
        """A partner record for ``index`` drawn from its positive set, or None if it has none."""
        return None

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        """Rows ``rows`` of the boolean relation over the N gathered views: [n, N] (self-pairs are ignored by the loss).

        ``meta`` holds one tensor per key with the N views along its first dimension.
        """
        return same(meta["record"], rows)

    def no_positive_reason(self) -> Optional[str]:
        """Why no anchor of the loaded split can have a positive, or None when some can."""
        return None

    def records_without_partner(self) -> int:
        """Records of the loaded split that get no partner (0 unless the strategy is cross-record)."""
        return 0

    def describe(self) -> Dict[str, Any]:
        """Facts to log with the results (e.g. that the strategy uses labels)."""
        return {
            "strategy": self.cfg._name,
            "uses_labels": self.uses_labels,
            "views_per_item": self.views_per_record(self.cfg) * (2 if self.cross_record else 1),
        }


def same(values: torch.Tensor, rows: slice = ALL) -> torch.Tensor:
    """Equality of the views in ``rows`` with every view of a 1-D tensor [N]: ``out[i, j] = values[rows][i] == values[j]``, [n, N]."""
    return values[rows].unsqueeze(1) == values.unsqueeze(0)


def group_relation(meta: Mapping[str, torch.Tensor], keys: Sequence[str], rows: slice = ALL) -> torch.Tensor:
    """[n, N]: views whose records agree on every integer key in ``keys``; a negative key (unknown) matches nothing."""
    relation = torch.ones_like(same(meta["record"], rows))
    for key in keys:
        values = meta[key]
        relation &= same(values, rows) & (values[rows] >= 0).unsqueeze(1)
    return relation


def combined_group(keys: Mapping[str, np.ndarray]) -> np.ndarray:
    """One group id per record for the combination of its integer keys; -1 if any key is unknown (< 0)."""
    stacked = np.stack([np.asarray(v, dtype=np.int64) for v in keys.values()], axis=1)
    known = (stacked >= 0).all(axis=1)
    group = np.full(len(stacked), -1, dtype=np.int64)
    if known.any():
        group[known] = np.unique(stacked[known], axis=0, return_inverse=True)[1].reshape(-1)
    return group


class GroupIndex:
    """Records partitioned by an integer group id (negative: no group), for uniform partner draws.

    Members of each group are stored contiguously (``members[start[i]:end[i]]`` is record ``i``'s
    group), so a draw is O(1) and the index is a few arrays of n integers even for millions of
    records.
    """

    def __init__(self, group: np.ndarray):
        group = np.asarray(group, dtype=np.int64)
        known = np.flatnonzero(group >= 0)
        self.members = known[np.argsort(group[known], kind="stable")]
        sorted_groups = group[self.members]
        self.start = np.zeros(len(group), dtype=np.int64)
        self.end = np.zeros(len(group), dtype=np.int64)
        self.start[known] = np.searchsorted(sorted_groups, group[known], side="left")
        self.end[known] = np.searchsorted(sorted_groups, group[known], side="right")
        self.position = np.full(len(group), -1, dtype=np.int64)
        self.position[self.members] = np.arange(len(self.members))
        self.n_groups = len(np.unique(sorted_groups))

    def group_size(self) -> np.ndarray:
        """Size of each record's group (0 for records without a group)."""
        return self.end - self.start

    def sample(self, index: int, rng: np.random.Generator) -> Optional[int]:
        """Another member of ``index``'s group, uniformly, or None if it is alone or has no group."""
        start, end = self.start[index], self.end[index]
        if end - start < 2:
            return None
        draw = start + int(rng.integers(end - start - 1))
        if draw >= self.position[index]:
            draw += 1
        return int(self.members[draw])


class GroupStrategy(PositiveStrategy):
    """Cross-record strategy whose positives are the records sharing every per-record group key.

    Subclasses return their keys from :meth:`group_keys` (integer codes, negative = unknown: a
    record with an unknown key gets no partner, which the dataset counts). The keys' names must
    depend on the config only, since one strategy object's :meth:`positive_mask` serves every split.
    """

    cross_record = True

    def __init__(self, cfg: StrategyConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int):
        super().__init__(cfg, table, fit_table, seed)
        self.keys = self.group_keys(table, fit_table)
        self.partner_index = GroupIndex(combined_group(self.keys))

    def group_keys(self, table: pd.DataFrame, fit_table: pd.DataFrame) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def record_keys(self) -> Dict[str, np.ndarray]:
        return dict(self.keys)

    def sample_partner(self, index: int, rng: np.random.Generator) -> Optional[int]:
        return self.partner_index.sample(index, rng)

    def positive_mask(self, meta: Mapping[str, torch.Tensor], rows: slice = ALL) -> torch.Tensor:
        return group_relation(meta, list(self.keys), rows) | same(meta["record"], rows)

    def no_positive_reason(self) -> Optional[str]:
        if (self.partner_index.group_size() >= 2).any():
            return None
        return f"no record shares its {' and '.join(self.keys)} with another record"

    def records_without_partner(self) -> int:
        return int((self.partner_index.group_size() < 2).sum())

    def describe(self) -> Dict[str, Any]:
        return {
            **super().describe(),
            "groups": self.partner_index.n_groups,
            "records_without_group": int((self.partner_index.group_size() == 0).sum()),
            "records_without_partner": self.records_without_partner(),
        }


STRATEGY_REGISTRY: Dict[str, Type[PositiveStrategy]] = {}
STRATEGY_DATACLASS_REGISTRY: Dict[str, Type[StrategyConfig]] = {}


def register_strategy(
    name: str, dataclass: Type[StrategyConfig]
) -> Callable[[Type[PositiveStrategy]], Type[PositiveStrategy]]:
    def wrapper(cls: Type[PositiveStrategy]) -> Type[PositiveStrategy]:
        if name in STRATEGY_REGISTRY:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGY_REGISTRY[name] = cls
        STRATEGY_DATACLASS_REGISTRY[name] = dataclass
        return cls

    return wrapper


def register_strategy_schemas() -> None:
    """Store each strategy's config dataclass as ``strategy/<name>`` in hydra's ConfigStore.

    A strategy config selects it with ``/strategy@task.strategy: <name>`` in its defaults list, so
    every option of the strategy is in the composed config (a plain override changes it, a typo
    is an error naming the key) and its defaults are written once, in the dataclass.
    """
    from hydra.core.config_store import ConfigStore  # here: only the fairseq plugins register configs

    store = ConfigStore.instance()
    for name, config_class in STRATEGY_DATACLASS_REGISTRY.items():
        store.store(group="strategy", name=name, node=config_class(_name=name))


def strategy_config(cfg: Mapping[str, Any] | DictConfig) -> StrategyConfig:
    """Validate a ``task.strategy`` node (``{_name: ..., option: value}``) into its dataclass."""
    raw = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = raw.get("_name")
    if name not in STRATEGY_REGISTRY:
        raise ValueError(f"unknown strategy {name!r}; registered: {', '.join(sorted(STRATEGY_REGISTRY))}")
    schema = OmegaConf.structured(STRATEGY_DATACLASS_REGISTRY[name])
    try:
        merged = OmegaConf.merge(schema, raw)
    except Exception as exc:  # omegaconf's errors name the key but not the strategy
        raise ValueError(f"invalid options for strategy {name!r}: {exc}") from None
    return OmegaConf.to_object(merged)


def build_strategy(
    cfg: Mapping[str, Any] | DictConfig, table: pd.DataFrame, fit_table: pd.DataFrame, seed: int
) -> PositiveStrategy:
    config = strategy_config(cfg)
    cls = STRATEGY_REGISTRY[config._name]
    missing = [c for c in cls.required_columns if c not in table.columns]
    if missing:
        raise ValueError(f"strategy {config._name!r} needs metadata column(s) {', '.join(missing)}")
    return cls(config, table, fit_table, seed)
