"""Task ``ecg_classification``: downstream classification (linear probe or fine-tune).

Two kinds of target, chosen by ``label_type``:

- ``single``: one class per record from the ``label`` column (Chapman's four merged rhythm
  classes by default, ``classes``), softmax + cross-entropy;
- ``multi``: a multi-hot target per record, sigmoid + BCE, from the multi-label set named by
  ``label_set`` (:mod:`fairseq_goodviews.labels.label_set`: the CinC 2021 classes of the ``dx``
  column, a PTB-XL statement task of the ``scp_codes`` column, or the ``classes`` among the
  names of the ``labels`` column).

Records with none of the task's labels are dropped (``unlabelled=drop``, counted in the log per
split) or refused (``unlabelled=error``). Training draws one random crop of ``sample_size``
samples per record; the other splits score the whole record: the mean of the predictions of
consecutive crops covering it (``whole_record``). Every record of every split is batched
(fairseq's ``required_batch_size_multiple`` is not applied to this task).

Validation scores a split as a whole (:mod:`fairseq_goodviews.scoring.classification`): the
record probabilities of every batch are collected in a meter and the metrics computed once over
the split. Where the label set is challenge-scored (CinC 2021), the per-class thresholds are
the task's state: chosen on the ``valid`` split and applied, in the same validation round, to
the splits scored after it (0.5 for every class until a ``valid`` split has been scored); the
score logged on ``valid`` itself is therefore in-sample, the one on ``test`` is not.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from fairseq import metrics
from fairseq.dataclass import ChoiceEnum
from fairseq.logging.meters import Meter
from fairseq.tasks import register_task
from omegaconf import II, MISSING, open_dict

from fairseq_goodviews.data.ecg_dataset import EcgClassificationDataset, EcgRecordSource, covering_crops
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.labels import CLASS_NAMES, MULTI_LABEL_SETS, RHYTHM_LABEL_SET, LabelSet, LabelSetError
from fairseq_goodviews.labels import label_set as build_label_set
from fairseq_goodviews.labels.ptbxl import SCP_STATEMENTS
from fairseq_goodviews.leads import parse_leads
from fairseq_goodviews.scoring.cinc2021 import ChallengeThresholds
from fairseq_goodviews.scoring.classification import split_metrics
from fairseq_goodviews.tasks.base import EcgRunConfig, EcgTask, check_data_folder, record_pretrained_encoder

logger = logging.getLogger(__name__)


@dataclass
class EcgClassificationConfig(EcgRunConfig):
    data: str = field(default=MISSING, metadata={"help": "folder with <split>.tsv manifests and <split>.csv metadata"})
    label_type: ChoiceEnum(["single", "multi"]) = field(
        default="single", metadata={"help": "single: one class per record (softmax); multi: multi-hot labels (sigmoid)"}
    )
    classes: str = field(
        default=",".join(CLASS_NAMES),
        metadata={
            "help": "comma-separated class names: of the 'label' column (label_type=single) or of the "
            "'labels' column (label_set=labels)"
        },
    )
    label_set: Optional[str] = field(
        default=None,
        metadata={
            "help": "label_type=multi: cinc2021 (dx column), ptbxl_{all,diagnostic,subdiagnostic,"
            "superdiagnostic,form,rhythm} (scp_codes column) or labels (labels column, classes from task.classes)"
        },
    )
    scp_statements: Optional[str] = field(
        default=None,
        metadata={
            "help": "PTB-XL's scp_statements.csv for the ptbxl_* label sets (default: the one in data, "
            "else in the src_dir recorded in data/prepare_report.json)"
        },
    )
    unlabelled: ChoiceEnum(["drop", "error"]) = field(
        default="drop",
        metadata={"help": "records with none of the task's labels: drop them (and log how many) or stop"},
    )
    leads: Any = field(
        default=None,
        metadata={
            "help": "leads to keep, as a list (task.leads=[I,II,V2]) or a quoted string "
            "(task.leads='I,II,V2'); the others are zero-filled; null = all 12"
        },
    )
    sample_rate: float = field(default=500.0, metadata={"help": "sample rate the records must have, Hz"})
    sample_size: int = field(default=5000, metadata={"help": "samples per crop (random crop in training)"})
    whole_record: bool = field(
        default=True,
        metadata={
            "help": "valid/test: score the mean prediction of consecutive crops covering each record "
            "(else one centred crop)"
        },
    )
    train_fraction: float = field(
        default=1.0, metadata={"help": "fraction of the training labels used (label-efficiency runs), stratified"}
    )
    seed: int = II("common.seed")


class LabelledRecordDataset(EcgClassificationDataset):
    """Records with a class index [n] or multi-hot [n, K] target.

    With ``whole_record`` an item holds every consecutive crop of its record (the last one
    aligned to the record's end), and a batch's ``crop_record`` [C] says which item of the batch
    each of its C crops belongs to (``net_input.source`` is [C, 12, sample_size]); ``split``
    names the split the batch comes from.
    """

    def __init__(
        self,
        source: EcgRecordSource,
        targets: np.ndarray,
        sample_size: int,
        leads: Sequence[int],
        seed: int,
        random_crop: bool,
        whole_record: bool,
        split: str,
    ):
        super().__init__(source, np.zeros(len(source), dtype=np.int64), sample_size, leads, seed, random_crop)
        self.labels = targets
        self.whole_record = whole_record and not random_crop
        self.split = split

    def _crops(self, index: int) -> np.ndarray:
        length = int(self.source.sizes[index])
        if not self.whole_record or length <= self.sample_size:
            rng = np.random.default_rng([self.seed, self.epoch, index]) if self.random_crop else None
            signal, _ = self.source.load(index, self.sample_size, rng)
            return signal[None]
        signal, _ = self.source.load(index, length, None)
        return covering_crops(signal, self.sample_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        crops = self._crops(index)
        crops[:, ~self.keep] = 0.0
        return {"id": index, "source": crops, "label": self.labels[index]}

    def collater(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            return {}
        crops = [s["source"] for s in samples]
        labels = np.stack([s["label"] for s in samples])
        target = torch.from_numpy(labels.astype(np.float32)) if labels.ndim == 2 else torch.from_numpy(labels)
        return {
            "id": torch.tensor([s["id"] for s in samples], dtype=torch.long),
            "net_input": {"source": torch.from_numpy(np.concatenate(crops))},
            "crop_record": torch.cat([torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(crops)]),
            "target": target,
            "split": self.split,
            "nsentences": len(samples),
            "ntokens": sum(len(c) for c in crops) * self.sample_size,
        }


class ScoreMeter(Meter):
    """The record probabilities and targets of every batch of one split, and their metrics over
    the split (:func:`~fairseq_goodviews.scoring.classification.split_metrics`)."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        self.probs: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.split: str | None = None
        self.label_set: LabelSet | None = None
        self.thresholds: ChallengeThresholds | None = None
        self._metrics: dict[str, Any] | None = None

    def update(
        self,
        probs: np.ndarray,
        targets: np.ndarray,
        split: str | None,
        label_set: LabelSet,
        thresholds: ChallengeThresholds,
    ) -> None:
        """Add a batch: ``probs`` [n, K] and ``targets`` ([n] or [n, K]) of its records, scored with
        ``label_set`` and, where it is challenge-scored, the task's ``thresholds``."""
        self.probs.append(probs)
        self.targets.append(targets)
        self.split, self.label_set, self.thresholds = split, label_set, thresholds
        self._metrics = None

    def state_dict(self) -> dict:
        """Scores belong to one pass over a split and are not carried into checkpoints.

        (fairseq saves meter states in checkpoints, and numpy arrays there would make them
        unloadable with torch's safe ``weights_only`` loading.)
        """
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        self.reset()

    def metrics(self) -> dict[str, Any]:
        if self._metrics is None:
            probs, targets = np.concatenate(self.probs), np.concatenate(self.targets)
            scored = self.label_set.challenge_scored
            thresholds = self.thresholds.for_split(self.split, probs, targets) if scored else None
            result = split_metrics(probs, targets, self.label_set.classes, scored, thresholds)
            for name, value in result.pop("per_class_auroc", {}).items():
                result[f"auroc_{name}"] = value
            self._metrics = result
        return self._metrics

    @property
    def smoothed_value(self) -> float:
        return self.metrics()["macro_auroc"]


def _derived(key: str):
    return lambda meters: meters["_scores"].metrics()[key]


@register_task("ecg_classification", dataclass=EcgClassificationConfig)
class EcgClassificationTask(EcgTask):
    cfg: EcgClassificationConfig

    def __init__(self, cfg: EcgClassificationConfig):
        super().__init__(cfg)
        self.leads = parse_leads(cfg.leads)
        self.thresholds = ChallengeThresholds()
        self.dropped: dict[str, int] = {}

    @classmethod
    def setup_task(cls, cfg: EcgClassificationConfig, **kwargs) -> "EcgClassificationTask":
        check_data_folder(cfg.data)
        task = cls(cfg)
        if not task.class_names:  # an unusable label set stops here, before any model is built
            raise LabelSetError(f"task.classes is empty: {cfg.classes!r}")
        return task

    def build_model(self, cfg, from_checkpoint: bool = False):
        """Write the class count and the pretrained encoder's config into ``cfg`` (the run's saved
        model config) before building, so the checkpoint records the model it holds: it rebuilds
        without the task's label set or the pretraining checkpoint, whatever the number of classes
        and the encoder's architecture (an imported one need not be the preset's encoder)."""
        with open_dict(cfg):
            cfg.num_classes = len(self.class_names)
        record_pretrained_encoder(cfg)
        return super().build_model(cfg, from_checkpoint)

    @property
    def multi_label(self) -> bool:
        return self.cfg.label_type == "multi"

    @cached_property
    def label_set(self) -> LabelSet:
        """The task's label set: the classes ``classes`` of the ``label`` column (label_type=single)
        or the multi-label set ``label_set``."""
        classes = [c.strip() for c in self.cfg.classes.split(",") if c.strip()]
        if not self.multi_label:
            return build_label_set(RHYTHM_LABEL_SET, classes)
        if self.cfg.label_set not in MULTI_LABEL_SETS:
            raise LabelSetError(
                f"task.label_type=multi needs task.label_set, one of {', '.join(MULTI_LABEL_SETS)} "
                f"(got {self.cfg.label_set!r})"
            )
        return build_label_set(self.cfg.label_set, classes, self._scp_statements_path)

    @property
    def class_names(self) -> list[str]:
        return list(self.label_set.classes)

    @property
    def label_column(self) -> str:
        """The metadata column the targets come from."""
        return self.label_set.column

    def _scp_statements_path(self) -> Path:
        if self.cfg.scp_statements:
            return Path(self.cfg.scp_statements)
        tried = [Path(self.cfg.data) / SCP_STATEMENTS]
        report = Path(self.cfg.data) / "prepare_report.json"
        if report.is_file():
            try:
                src_dir = json.loads(report.read_text()).get("config", {}).get("src_dir")
            except (json.JSONDecodeError, AttributeError):
                src_dir = None  # a damaged report only loses the fallback location
            if src_dir:
                tried.append(Path(src_dir) / SCP_STATEMENTS)
        for path in tried:
            if path.is_file():
                return path
        raise LabelSetError(
            f"{SCP_STATEMENTS} (PTB-XL's statement table) not found at {' or '.join(map(str, tried))}; "
            "set task.scp_statements to the file that came with your PTB-XL download"
        )

    def load_dataset(self, split: str, combine: bool = False, **kwargs) -> None:
        column = self.label_column
        table_name = str(Path(self.cfg.data) / f"{split}.csv")
        table = read_metadata(self.cfg.data, split, required=(column,))
        targets, labelled = self.label_set.targets(table, table_name)
        unlabelled = np.flatnonzero(~labelled)
        if len(unlabelled) and self.cfg.unlabelled == "error":
            first = table["path"].iloc[unlabelled[0]]
            raise LabelSetError(
                f"{table_name}: {len(unlabelled)} record(s) with none of the task's {len(self.class_names)} labels "
                f"(first: {first}; the {self.label_set.description}); set task.unlabelled=drop to leave them out"
            )
        source = EcgRecordSource(Path(self.cfg.data) / f"{split}.tsv", self.cfg.sample_rate)
        keep = np.flatnonzero(labelled)
        if len(unlabelled):
            source.keep_only(keep)
            targets = targets[keep]
        self.dropped[split] = len(unlabelled)
        if not len(keep):
            raise LabelSetError(
                f"{table_name}: none of its {len(table)} record(s) has one of the task's labels "
                f"(the {self.label_set.description})"
            )
        logger.info("%s: %d records with labels, %d without (dropped)", split, len(keep), len(unlabelled))
        dataset = LabelledRecordDataset(
            source,
            targets,
            self.cfg.sample_size,
            self.leads,
            self.cfg.seed,
            random_crop=split == "train",
            whole_record=self.cfg.whole_record,
            split=split,
        )
        if split == "train" and self.cfg.train_fraction < 1.0:
            strata = targets.argmax(axis=1) if targets.ndim == 2 else targets
            dataset.keep_only(stratified_subset(strata, self.cfg.train_fraction, self.cfg.seed))
        self.datasets[split] = dataset

    def get_batch_iterator(self, dataset, **kwargs):
        """fairseq's iterator with ``required_batch_size_multiple=1``: a multiple > 1 drops the
        remainder records of a split (13 records at batch size 8 and multiple 8 give one batch of 8)."""
        kwargs["required_batch_size_multiple"] = 1
        return super().get_batch_iterator(dataset, **kwargs)

    def reduce_metrics(self, logging_outputs: list[dict[str, Any]], criterion) -> None:
        """fairseq's reduction (the criterion's loss and accuracy), then the split-level metrics of
        the validation outputs, which carry every record's ``probs`` and ``targets``: collected in
        a :class:`ScoreMeter` and computed once over the split (per-batch AUROC would be
        meaningless), with this task's label set and thresholds."""
        super().reduce_metrics(logging_outputs, criterion)
        scored = [log for log in logging_outputs if "probs" in log]
        if not scored:
            return
        for log in scored:
            metrics.log_custom(
                ScoreMeter, "_scores", log["probs"], log["targets"], log.get("split"), self.label_set, self.thresholds
            )
        if scored[0]["targets"].ndim == 1:
            keys = ["macro_auroc", "macro_auprc", "macro_f1"]
            per_class = self.class_names
        else:
            keys = ["macro_auroc", "macro_auprc", "f_max", "n_scored_labels"]
            if self.label_set.challenge_scored:
                keys.append("challenge_score")
            # Per-label AUROC only for the labels with both classes in the split (the others are NaN).
            n = sum(len(log["targets"]) for log in scored)
            counts = sum(log["targets"].sum(axis=0) for log in scored)
            per_class = [c for c, count in zip(self.class_names, counts, strict=True) if 0 < count < n]
        for key in ("n", *keys, *(f"auroc_{c}" for c in per_class)):
            metrics.log_derived(key, _derived(key))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least one record per class), chosen with ``seed``."""
    rng = np.random.default_rng([seed, 7919])
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        keep.extend(rng.choice(members, size=count, replace=False).tolist())
    return np.sort(np.array(keep, dtype=np.int64))
