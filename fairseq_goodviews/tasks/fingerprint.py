"""The fingerprint of a training run, kept in its save folder so that another run cannot reuse it.

fairseq resumes from the ``checkpoint_last.pt`` of ``checkpoint.save_dir`` whatever the data and
settings of the run that wrote it: the same command on other data, or a probe of another encoder,
would reload the old run and train nothing. The first run in a folder writes its fingerprint
(``run_fingerprint.json``): the task's settings, ``task.data`` resolved with a digest of its
manifests and metadata tables, and the model, criterion, optimiser, schedule, batch size and
seed (:data:`RUN_SETTINGS`). A run whose fingerprint differs stops before anything is loaded,
naming what differs; ``task.fresh_run=true`` moves the earlier run's checkpoints aside and starts
over, and the same fingerprint resumes as before.

Settings outside :data:`RUN_SETTINGS` never count, so they may change when a run resumes: the
save folder itself and every ``checkpoint.*`` option, ``dataset.*`` but the batch size (workers,
validation), ``common.*`` but the seed (logging, precision flags), ``distributed_training.*``
(world size, backend), hydra's own options, and :data:`IGNORED`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.atomic import write_json

FINGERPRINT_FILE = "run_fingerprint.json"
#: The task config field holding the settings outside the task that define a run (interpolations).
RUN_SETTINGS = {
    "model": "${model}",
    "criterion": "${criterion}",
    "optimizer": "${optimizer}",
    "lr_scheduler": "${lr_scheduler}",
    "optimization": "${optimization}",
    "dataset.batch_size": "${dataset.batch_size}",
    "common.seed": "${common.seed}",
}
#: Settings of how fast a step runs, not what it computes (cuDNN's algorithm search, the compiled
#: encoder): neither a run's fingerprint nor a benchmark's settings hold them.
SPEED_SETTINGS = ("task.cudnn_benchmark", "model.compile_encoder", "model.encoder.compile_encoder")
#: Fingerprint keys that may change on resumption: where the run saves and how it is started over,
#: when it stops (more epochs or updates continue the same run; the wall-clock limit of one job),
#: the partner check before training (it changes no step of the run), and :data:`SPEED_SETTINGS`.
IGNORED = (
    *SPEED_SETTINGS,
    "task.save_dir",
    "task.fresh_run",
    "task.run_settings",
    "task.max_without_partner",
    "optimization.max_epoch",
    "optimization.max_update",
    "optimization.stop_time_hours",
)
#: The data folder's files that define its records and labels (never the packs).
DATA_FILES = ("*.tsv", "*.csv", "*.json")


class RunFingerprintError(GoodviewsError):
    """A save folder that holds another run's checkpoints (its fingerprint differs)."""


def data_digest(data: str | Path) -> str:
    """SHA-256 over the names and contents of the manifests and metadata tables directly in ``data``."""
    digest = hashlib.sha256()
    folder = Path(data)
    for path in sorted(p for pattern in DATA_FILES for p in folder.glob(pattern)):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def flatten_settings(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Add the leaves of the nested ``value`` to ``out`` as ``prefix.key.key: value`` (lists as JSON text)."""
    if isinstance(value, dict):
        for key, item in value.items():
            flatten_settings(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value


def run_fingerprint(task_cfg: DictConfig) -> dict[str, Any]:
    """The flat ``{setting: value}`` fingerprint of the run whose task config is ``task_cfg``."""
    plain = OmegaConf.to_container(task_cfg, resolve=True, enum_to_str=True)
    settings: dict[str, Any] = {}
    flatten_settings("task", {k: v for k, v in plain.items() if k != "run_settings"}, settings)
    for name, value in plain["run_settings"].items():
        flatten_settings(name, value, settings)
    settings["task.data"] = str(Path(plain["data"]).resolve())
    settings["task.data_digest"] = data_digest(plain["data"])
    return {key: value for key, value in sorted(settings.items()) if key not in IGNORED}


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:12] if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text


def differences(old: dict[str, Any], new: dict[str, Any], ignored: Sequence[str] = IGNORED) -> list[str]:
    """``setting: old -> new`` for every setting not in ``ignored`` that differs (``(none)`` where one
    side lacks it)."""
    keys = sorted(k for k in old.keys() | new.keys() if k not in ignored and old.get(k, ()) != new.get(k, ()))
    return [f"{k}: {_short(old.get(k, '(none)'))} -> {_short(new.get(k, '(none)'))}" for k in keys]


def _set_aside(folder: Path) -> Path:
    """Move ``folder``'s checkpoints and fingerprint into a new ``earlier_run_<n>/``; returns it."""
    n = 1
    while (folder / f"earlier_run_{n}").exists():
        n += 1
    aside = folder / f"earlier_run_{n}"
    aside.mkdir()
    for path in [*folder.glob("checkpoint*.pt"), folder / FINGERPRINT_FILE]:
        if path.exists():
            path.rename(aside / path.name)
    return aside


def read_fingerprint(path: Path) -> dict[str, Any] | None:
    """The recorded fingerprint (None: the folder has none); :class:`RunFingerprintError` if damaged."""
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFingerprintError(f"{path}: unreadable run fingerprint ({exc}); delete it to resume") from None
    if not isinstance(recorded, dict):
        raise RunFingerprintError(f"{path}: not a run fingerprint (a JSON object); delete it to resume")
    return recorded


def check_run_fingerprint(task_cfg: DictConfig) -> None:
    """Refuse a run whose save folder holds another run; record the fingerprint of a new one.

    Every process compares; the first (rank 0, or the only one) writes the fingerprint when the
    folder has none, or, with ``task.fresh_run=true`` and another run there, sets that run's
    checkpoints aside first (the same run resumes, ``fresh_run`` or not); the others
    wait for it, so none of them loads a checkpoint that is being moved.
    """
    if not isinstance(task_cfg, DictConfig):  # a task built in code, not by a hydra-composed run
        return
    folder = Path(task_cfg.save_dir)
    path = folder / FINGERPRINT_FILE
    fingerprint = run_fingerprint(task_cfg)
    old = read_fingerprint(path)
    changed = differences(old, fingerprint) if old is not None else []
    if changed and not task_cfg.fresh_run:
        raise RunFingerprintError(
            f"{folder} holds the checkpoints of another run ({'; '.join(changed)}): start over there with "
            "task.fresh_run=true (its checkpoints move to an earlier_run_<n>/ folder inside it) or choose "
            "another folder with checkpoint.save_dir=..."
        )
    several = dist.is_available() and dist.is_initialized()
    if not several or dist.get_rank() == 0:
        if changed:
            _set_aside(folder)
        if old is None or changed:
            write_json(path, fingerprint)
    if several:
        dist.barrier()
