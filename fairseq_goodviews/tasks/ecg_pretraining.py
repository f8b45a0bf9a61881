"""Task ``ecg_pretraining``: contrastive pretraining with a configurable positive-pair strategy."""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import register_task
from omegaconf import II, MISSING

from fairseq_goodviews.data.ecg_dataset import EcgPretrainingDataset, EcgRecordSource
from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.strategies import build_strategy
from fairseq_goodviews.strategies.base import ALL, PositiveStrategy
from fairseq_goodviews.tasks.base import EcgRunConfig, EcgTask, check_data_folder

logger = logging.getLogger(__name__)

#: Columns that carry downstream labels; they are never read from a split other than train.
LABEL_COLUMNS = ("rhythm", "beat", "label", "dx")


@dataclass
class EcgPretrainingConfig(EcgRunConfig):
    data: str = field(default=MISSING, metadata={"help": "folder with <split>.tsv manifests and <split>.csv metadata"})
    strategy: Any = field(
        default_factory=lambda: {"_name": "simclr"},
        metadata={"help": "positive-pair strategy: {_name: <registered name>, <its options>}"},
    )
    sample_rate: float = field(default=500.0, metadata={"help": "sample rate the records must have, Hz"})
    sample_size: int = field(default=5000, metadata={"help": "samples per record crop (random offset in training)"})
    lead_mask_prob: float = field(
        default=0.5, metadata={"help": "random lead masking: probability of zeroing each lead of each view"}
    )
    method_name: Optional[str] = field(
        default=None,
        metadata={
            "help": "name of the pretraining method in result tables (default: the strategy's); "
            "set by a config that pairs a strategy with another model or loss (W2V+CMSC+RLM)"
        },
    )
    rebuild_batches: bool = field(
        default=True,
        metadata={
            "help": "draw new batches every epoch (fairseq keeps the epoch iterator and its workers; "
            "false = the first epoch's batches in a new order)"
        },
    )
    autocast_bf16: bool = field(
        default=False,
        metadata={
            "help": "forward passes under torch.autocast(bfloat16) (GPUs with bf16, e.g. A100/H100); the "
            "contrastive logits and loss stay float32, the weights and optimiser float32"
        },
    )
    cudnn_benchmark: bool = field(
        default=False,
        metadata={
            "help": "torch.backends.cudnn.benchmark: cuDNN times its convolution algorithms for each new input "
            "shape and keeps the fastest (GPUs; the same shape every step, as here, pays that once)"
        },
    )
    max_without_partner: float = field(
        default=0.5,
        metadata={
            "help": "cross-record strategies: stop before training when more than this fraction of the training "
            "records has no partner (their anchors would have no positive)"
        },
    )
    seed: int = II("common.seed")


class NoPositivesError(GoodviewsError, ValueError):
    """A strategy whose anchors can have no positive on the data (PCLR on one ECG per patient)."""


class TooFewPartnersError(GoodviewsError, ValueError):
    """A cross-record strategy under which most training records have no partner."""


def check_partners(strategy: PositiveStrategy, split: str, where: str, max_without_partner: float) -> None:
    """Stop (train) or warn (other splits) when a cross-record strategy leaves records without a partner.

    On ``train``, more than ``max_without_partner`` of the records without one raises
    :class:`TooFewPartnersError` naming the strategy, the count and what would help. On another
    split, no record with a partner means its contrastive loss cannot be measured: a warning
    says so (the criterion logs it as inf, so it never becomes the best checkpoint).
    """
    if not strategy.cross_record or not len(strategy.table):
        return
    n = len(strategy.table)
    without = strategy.records_without_partner()
    name = strategy.cfg._name
    if split == "train" and without > max_without_partner * n:
        raise TooFewPartnersError(
            f"{where}: strategy {name!r} finds no partner for {without} of its {n} records "
            f"({100 * without / n:.0f} %, more than task.max_without_partner={max_without_partner:g}), so most "
            f"anchors would have no positive; use {strategy.partner_advice}"
        )
    if split != "train" and without == n:
        logger.warning(
            "%s: strategy %r finds no partner for any of its %d records: the %s loss cannot be measured "
            "(logged as inf, never the best checkpoint; use checkpoint_last.pt or %s)",
            where,
            name,
            n,
            split,
            strategy.partner_advice,
        )


@register_task("ecg_pretraining", dataclass=EcgPretrainingConfig)
class EcgPretrainingTask(EcgTask):
    cfg: EcgPretrainingConfig

    def __init__(self, cfg: EcgPretrainingConfig):
        super().__init__(cfg)
        if getattr(cfg, "cudnn_benchmark", False):
            torch.backends.cudnn.benchmark = True
        self._fit_table = None
        self._strategy = None
        self._checked_train_strategy = None

    @classmethod
    def setup_task(cls, cfg: EcgPretrainingConfig, **kwargs) -> "EcgPretrainingTask":
        """The task, once its data folder is prepared and its strategy finds positives on the training
        split (:class:`NoPositivesError` otherwise): both are refused before any model is built."""
        check_data_folder(cfg.data)
        task = cls(cfg)
        task._checked_train_strategy = task._train_strategy()
        return task

    def _train_table(self):
        if self._fit_table is None:
            self._fit_table = read_metadata(self.cfg.data, "train")
        return self._fit_table

    def _train_strategy(self):
        """The strategy over the training split; :class:`NoPositivesError` when no anchor can have a positive."""
        table = read_metadata(self.cfg.data, "train")
        strategy = build_strategy(self.cfg.strategy, table, self._train_table(), self.cfg.seed)
        reason = strategy.no_positive_reason()
        if reason is not None:
            raise NoPositivesError(
                f"strategy {strategy.cfg._name!r} cannot pretrain on {self.cfg.data}: {reason}, so no "
                "anchor can have a positive"
            )
        return strategy

    def load_dataset(self, split: str, combine: bool = False, **kwargs) -> None:
        if split == "train":
            # The strategy setup_task checked, used once (a later load builds a fresh one).
            strategy, self._checked_train_strategy = self._checked_train_strategy or self._train_strategy(), None
        else:
            table = read_metadata(self.cfg.data, split)
            table = table.drop(columns=[c for c in LABEL_COLUMNS if c in table.columns])
            strategy = build_strategy(self.cfg.strategy, table, self._train_table(), self.cfg.seed)
        check_partners(strategy, split, str(Path(self.cfg.data) / f"{split}.csv"), self.cfg.max_without_partner)
        self._strategy = self._strategy or strategy
        if strategy.uses_labels:
            logger.warning("strategy %s reads downstream labels: its results are label-using", strategy.cfg._name)
        source = EcgRecordSource(Path(self.cfg.data) / f"{split}.tsv", self.cfg.sample_rate)
        self.datasets[split] = EcgPretrainingDataset(
            source, strategy, self.cfg.sample_size, self.cfg.lead_mask_prob, self.cfg.seed
        )
        logger.info("%s: %d records, strategy %s", split, len(source), strategy.describe())

    def _autocast(self, model, optimizer=None) -> torch.autocast:
        """bf16 autocast on the model's device when ``autocast_bf16``; else fairseq's own (fp16 with ``common.amp``)."""
        device = next(model.parameters()).device.type
        if self.cfg.autocast_bf16 and device == "cuda" and not torch.cuda.is_bf16_supported():
            if not getattr(self, "_warned_bf16", False):
                logger.warning("task.autocast_bf16: this GPU has no bf16; training in float32")
                self._warned_bf16 = True
        elif self.cfg.autocast_bf16:
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return torch.autocast(device_type="cuda", enabled=isinstance(optimizer, AMPOptimizer))

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """fairseq's train step, with the forward pass (only) under bf16 autocast when ``autocast_bf16``."""
        model.train()
        model.set_num_updates(update_num)
        with torch.autograd.profiler.record_function("forward"), self._autocast(model, optimizer):
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        model.eval()
        with torch.no_grad(), self._autocast(model):
            return criterion(model, sample)

    def positive_mask(self, meta, rows: slice = ALL):
        """Rows ``rows`` ([n, N]) of the relation P over the N gathered views, as the configured strategy defines it."""
        if self._strategy is None:
            raise RuntimeError("positive_mask called before any dataset was loaded")
        return self._strategy.positive_mask(meta, rows)
