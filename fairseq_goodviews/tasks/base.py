"""What every task of the project shares: ECG signals have no token dictionaries or length limits."""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from fairseq import metrics
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II, open_dict

from fairseq_goodviews.errors import GoodviewsError, relative_path_note
from fairseq_goodviews.host_memory import keep_freed_host_memory, training_process
from fairseq_goodviews.io.checkpoints import read_checkpoint
from fairseq_goodviews.models.ecg_classifier import checkpoint_encoder
from fairseq_goodviews.tasks.fingerprint import RUN_SETTINGS, check_run_fingerprint


@dataclass
class EcgRunConfig(FairseqDataclass):
    """The options every task config shares: where its run saves, and how it starts over there."""

    fresh_run: bool = field(
        default=False,
        metadata={
            "help": "start over when checkpoint.save_dir holds another run (its fingerprint differs): its "
            "checkpoints move to an earlier_run_<n>/ folder inside it; the same run resumes either way"
        },
    )
    save_dir: str = II("checkpoint.save_dir")
    run_settings: Any = field(
        default_factory=lambda: dict(RUN_SETTINGS),
        metadata={"help": "the settings outside the task that define the run (its fingerprint); not an option"},
    )


class DataFolderError(GoodviewsError, ValueError):
    """A ``task.data`` that is not a prepared folder; the message says what it is and what to run."""


#: A raw database's marker file -> what the folder holds, and the command that prepares it.
RAW_MARKERS = {
    "Diagnostics.xlsx": ("the raw Chapman/Shaoxing database", "goodviews-prepare-chapman"),
    "ptbxl_database.csv": ("the raw PTB-XL database", "goodviews-prepare-ptbxl"),
}


def _raw_database(folder: Path) -> tuple[str, str] | None:
    """(what ``folder`` holds, the command that prepares it) for a raw database, else None.

    WFDB records (a ``.hea`` header anywhere under it) go to PhysioNet 2021's preparer when the
    header lists ``#Dx`` diagnoses, else to the generic one.
    """
    for marker, found in RAW_MARKERS.items():
        if (folder / marker).is_file():
            return found
    header = next(folder.rglob("*.hea"), None)
    if header is None:
        return None
    diagnosed = re.search(r"^#\s*Dx", header.read_text(errors="replace"), re.MULTILINE)
    return "WFDB records", "goodviews-prepare-physionet2021" if diagnosed else "goodviews-prepare-wfdb-dir"


def check_data_folder(data: str, option: str = "task.data") -> None:
    """Refuse, in one line, a data folder that does not exist or was never prepared.

    A folder with no ``<split>.tsv`` manifest is not prepared: the message names the preparer to
    run when it holds a raw database (Chapman's ``Diagnostics.xlsx``, PTB-XL's
    ``ptbxl_database.csv``, WFDB ``.hea`` headers).
    """
    folder = Path(data)
    where = f"{option}={data}"
    if not folder.exists():
        raise DataFolderError(f"{where}: no such folder{relative_path_note(folder)}")
    if not folder.is_dir():
        raise DataFolderError(f"{where}: a file, not a folder of prepared records")
    if any(folder.glob("*.tsv")):
        return
    raw = _raw_database(folder)
    if raw is None:
        raise DataFolderError(
            f"{where}: not a prepared folder (no train.tsv); prepare the database with a goodviews-prepare-* command"
        )
    kind, command = raw
    raise DataFolderError(
        f"{where}: not a prepared folder (no train.tsv); it holds {kind}: run {command} {data} OUT first"
    )


def record_pretrained_encoder(cfg) -> None:
    """Write the encoder config of ``cfg.model_path``'s checkpoint into ``cfg.encoder`` (when set).

    ``cfg`` is a downstream run's model config, saved in every checkpoint: with the pretrained
    encoder's own config in it, the checkpoint rebuilds without the pretraining checkpoint, whatever
    that encoder's architecture (not only the preset's encoder).
    """
    if not cfg.get("model_path"):
        return
    encoder_cfg, _, _ = checkpoint_encoder(read_checkpoint(cfg.model_path, "model.model_path"))
    with open_dict(cfg):
        cfg.encoder = encoder_cfg


class EcgTask(FairseqTask):
    """A fairseq task over ECG records: no source or target dictionary, no maximum length.

    Setting one up in fairseq's training command keeps glibc's freed host memory for reuse in
    that process (:func:`fairseq_goodviews.host_memory.keep_freed_host_memory`) and checks, before
    fairseq loads a checkpoint, that the save folder holds no other run
    (:func:`fairseq_goodviews.tasks.fingerprint.check_run_fingerprint`); elsewhere (evaluation, a
    Python session) neither happens.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        if training_process():
            keep_freed_host_memory()
            check_run_fingerprint(cfg)

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None

    def max_positions(self):
        return None

    @staticmethod
    def logging_outputs_can_be_summed(criterion) -> bool:
        """A downstream criterion's training logs are plain numbers (``training_logs_summable``),
        summed across workers in one all-reduce; its validation logs carry every record's scores,
        which fairseq gathers. Other criteria keep their own answer."""
        if criterion.training and getattr(criterion, "training_logs_summable", False):
            return True
        return criterion.logging_outputs_can_be_summed()

    def build_criterion(self, cfg, from_checkpoint: bool = False):
        self._criterion = super().build_criterion(cfg, from_checkpoint)
        return self._criterion

    def reduce_metrics(self, logging_outputs: list[dict[str, Any]], criterion) -> None:
        """The criterion's metrics, with the batch counted in records: ``bsz`` (records per batch)
        and, in training, ``rps`` (records per second); fairseq's words per batch and per second
        (``wpb``, ``wps``, from ``ntokens``) are not logged."""
        records = sum(log.get("nsentences", 0) for log in logging_outputs)
        metrics.log_scalar("bsz", records, priority=190, round=1)
        # fairseq's train step logs into its "train" aggregator; validation into a fresh root one,
        # where a rate would time the whole validation's first batch only.
        if any(aggregator is metrics.get_meters("train") for aggregator in metrics.get_active_aggregators()):
            metrics.log_speed("rps", records, priority=90, round=1)
        criterion.__class__.reduce_metrics(logging_outputs)

    def begin_valid_epoch(self, epoch, model):
        """Refuse, in one line, a validation that fairseq could only gather on GPUs.

        A criterion whose validation logging is not summable (every record's scores, for AUROC)
        is gathered by fairseq's ``all_gather_list``, which stages the pickled outputs in a CUDA
        buffer: with several CPU processes it would fail deep inside fairseq.
        """
        super().begin_valid_epoch(epoch, model)
        several = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if several and not torch.cuda.is_available() and not self._criterion_summable():
            raise RuntimeError(
                f"{type(self).__name__}: validation over {dist.get_world_size()} processes needs GPUs "
                "(fairseq gathers every record's scores through a CUDA buffer); validate with one "
                "process (dataset.disable_validation=true here, then goodviews-evaluate) or on GPUs"
            )

    def _criterion_summable(self) -> bool:
        criterion = getattr(self, "_criterion", None)
        if criterion is None:
            return True
        try:
            return bool(criterion.logging_outputs_can_be_summed())
        except AttributeError:  # fairseq's wav2vec criterion answers only after its first forward
            return False
