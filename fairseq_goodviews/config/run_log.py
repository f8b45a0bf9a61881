"""The log file of a training run, kept in its save folder beside its checkpoints and fingerprint."""

import logging
from pathlib import Path


class SaveFolderLog(logging.FileHandler):
    """A :class:`logging.FileHandler` that creates the folder of its file (a new run's save folder).

    ``run/local.yaml`` names it as hydra's job log handler, with ``checkpoint.save_dir`` as the folder.
    """

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False) -> None:
        Path(filename).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(filename, mode, encoding, delay)
