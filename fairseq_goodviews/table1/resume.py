"""What each run of a benchmark is, so that a finished run is reused only for the run it was.

Before it launches anything, a benchmark works out every planned run's settings: the flat config
its training run composes (its config and the experiment's overrides, as ``fairseq-hydra-train``
composes them; the paths of this output folder and the settings of speed alone,
``SPEED_SETTINGS``, left out), its encoder family, a digest of the data
folder it reads (:func:`~fairseq_goodviews.tasks.fingerprint.data_digest`: manifests, metadata
tables, the preparation report) and, for a run on a pretrained encoder, a digest of that
pretraining run's settings, so that a redone pretraining redoes its probes. Every ``result.json``
records the settings it was made with; a finished run whose settings differ from the planned ones
(another preset into the same folder, another split mode, a changed config) stops the benchmark in
one line naming them, unless ``--rerun-changed`` sets those runs aside and redoes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.table1.plan import BenchmarkError, RunSpec
from fairseq_goodviews.tasks.fingerprint import SPEED_SETTINGS, data_digest, differences, flatten_settings

#: Settings that say where a run reads and writes in this output folder, not what it is.
PATH_SETTINGS = ("task.data", "checkpoint.save_dir", "common.user_dir", "model.model_path")


class ChangedRunsError(BenchmarkError):
    """Finished runs in the output folder were made with other settings than the plan's."""


def settings_digest(settings: Mapping[str, Any]) -> str:
    """SHA-256 of a run's settings (key order does not count)."""
    return hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def _data_digest(folder: Path) -> str:
    return data_digest(folder)


def planned_settings(plan: Sequence[RunSpec], config_root: Path, data_for, identification_crop: Optional[int]):
    """``run_id -> {setting: value}`` of every run of ``plan`` (dependencies come first in a plan).

    ``data_for(spec)`` is the folder the run reads.
    """
    settings: Dict[str, Dict[str, Any]] = {}
    for spec in plan:
        flat: Dict[str, Any] = {"run.encoder": spec.encoder, "run.data_digest": _data_digest(Path(data_for(spec)))}
        if spec.stage == "none":  # scored without training: identification with the pretrained encoder
            flat.update({"run.config": spec.protocol, "run.crop": identification_crop})
            if spec.leads is not None:  # a classification run's leads are its composed task.leads
                flat["run.leads"] = list(spec.leads)
        else:
            flat["run.config"] = f"{spec.stage}/{spec.config_name}"
            composed = OmegaConf.to_container(
                compose(config_root, spec.stage, spec.config_name, spec.overrides), enum_to_str=True
            )
            composed.pop("hydra", None)
            flatten_settings("", composed, flat)
        if spec.depends_on:
            flat["run.pretrain"] = settings_digest(settings[spec.depends_on])
        for key in (*PATH_SETTINGS, *SPEED_SETTINGS):
            flat.pop(key, None)
        settings[spec.run_id] = dict(sorted(flat.items()))
    return settings


def changed_runs(
    finished: Mapping[str, Mapping[str, Any]], planned: Mapping[str, Mapping[str, Any]]
) -> Dict[str, List[str]]:
    """``run_id -> [setting: old -> new, ...]`` of the finished runs whose recorded settings are not
    the planned ones (a result without recorded settings predates them: every setting differs)."""
    changed = {}
    for run_id, result in finished.items():
        recorded = result.get("settings")
        if recorded != planned[run_id]:
            changed[run_id] = differences(recorded or {}, planned[run_id], ignored=()) or [
                "settings recorded in another form"
            ]
    return changed


def refuse_changed(runs_dir: Path, changed: Mapping[str, Sequence[str]]) -> None:
    """The one-line error of a benchmark whose output folder holds runs made with other settings."""
    first = sorted(changed)[0]
    shown = "; ".join(changed[first][:3]) + (f"; and {len(changed[first]) - 3} more" if len(changed[first]) > 3 else "")
    raise ChangedRunsError(
        f"{runs_dir}: {len(changed)} finished run(s) were made with other settings than this command asks for "
        f"({first}: {shown}): use another --out, or pass --rerun-changed to set them aside and redo them"
    )


def set_aside(run_dir: Path) -> Path:
    """Move a changed run's folder to ``<run>.earlier-<n>`` beside it; returns where it went."""
    n = 1
    while run_dir.with_name(f"{run_dir.name}.earlier-{n}").exists():
        n += 1
    aside = run_dir.with_name(f"{run_dir.name}.earlier-{n}")
    run_dir.rename(aside)
    return aside


def run_schedule(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """What a run's schedule was, from its settings: epochs or updates, learning rate, records per
    worker x workers x update_freq, crop samples (None for a run that does not train)."""
    if "optimization.lr" not in settings:
        return {}

    def first(key: str, default: Any) -> Any:
        value = settings.get(key)
        if isinstance(value, str) and value.startswith("["):
            value = json.loads(value)
        if isinstance(value, list):
            value = value[0] if value else default
        return default if value is None else value

    max_update = first("optimization.max_update", 0)
    return {
        "max_epoch": first("optimization.max_epoch", 0) or None,
        "max_update": max_update or None,
        "lr": float(first("optimization.lr", 0.0)),
        "batch_size": first("dataset.batch_size", None),
        "workers": first("distributed_training.distributed_world_size", 1),
        "update_freq": first("optimization.update_freq", 1),
        "sample_size": first("task.sample_size", None),
    }


def schedule_text(schedule: Optional[Mapping[str, Any]]) -> str:
    """``10 epochs, lr 0.001, 64 x 1 x 1 records, crops of 2500`` (``—`` for none)."""
    if not schedule:
        return "—"
    length = f"{schedule['max_epoch']} epochs" if schedule.get("max_epoch") else f"{schedule.get('max_update')} updates"
    return (
        f"{length}, lr {schedule['lr']:g}, {schedule['batch_size']} x {schedule['workers']} x "
        f"{schedule['update_freq']} records, crops of {schedule['sample_size']}"
    )
