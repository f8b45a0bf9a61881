"""The log of a training run: its file in the save folder, and fairseq's bookkeeping left out.

``run/local.yaml`` names these in hydra's job logging, so ``goodviews-train`` and
``fairseq-hydra-train`` log alike, on the console and in ``hydra_train.log``.
"""

import logging
from pathlib import Path

import torch

#: fairseq's INFO lines that say nothing about an ECG run, by logger: the message prefixes
#: dropped ("" drops every INFO line of that logger). Warnings and errors always pass.
BOOKKEEPING: dict[str, tuple[str, ...]] = {
    # batch-iterator reuse and the number of batches, at every epoch of every split
    "fairseq.tasks.fairseq_task": ("",),
    "fairseq.data.iterators": ("",),
    # text-model vocabulary (tokens, experts), and the saving steps before the one "Saved checkpoint" line
    "fairseq_cli.train": ("num. expert model params", "max tokens per device", "Start iterating over samples"),
    "fairseq.trainer": ("Preparing to load checkpoint", "Saving checkpoint to", "Finished saving checkpoint to"),
    "fairseq.checkpoint_utils": ("Preparing to save checkpoint",),
}


class SaveFolderLog(logging.FileHandler):
    """A :class:`logging.FileHandler` that creates the folder of its file (a new run's save folder).

    ``run/local.yaml`` names it as hydra's job log handler, with ``checkpoint.save_dir`` as the folder.
    """

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False) -> None:
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(filename, mode, encoding, delay)


class FairseqBookkeeping(logging.Filter):
    """Drops fairseq's INFO lines listed in :data:`BOOKKEEPING` and the model's printout (the
    architecture is in the run's config line, its class and size in the lines after it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or record.name not in BOOKKEEPING:
            return True
        if isinstance(record.msg, torch.nn.Module):
            return False
        return not (isinstance(record.msg, str) and record.msg.startswith(BOOKKEEPING[record.name]))
