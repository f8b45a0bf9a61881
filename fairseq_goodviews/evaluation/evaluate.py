"""Score a trained classifier checkpoint on a split: ``goodviews-evaluate CHECKPOINT --data DIR``.

The checkpoint is rebuilt from its own config (the pretrained encoder weights it contains are
used; the pretraining checkpoint it was built from need not exist any more), optionally with a
different lead subset (leads outside it are zero-filled in their canonical slots). Every record
of the split is scored, as a whole: the mean prediction of consecutive crops covering it.

Single-label tasks report accuracy, macro F1, macro/per-class AUROC and macro AUPRC;
multi-label tasks ``macro_auroc``, ``per_class_auroc``, ``left_out`` (labels without both
classes in the split), ``macro_auprc`` and ``f_max``, plus ``challenge_score`` for the CinC 2021
label set, with per-class thresholds chosen on ``--threshold-split`` (default valid; recorded
by class name as ``challenge_thresholds``, and ``thresholds_from``).

How sure the figures are: ``warnings`` (few records, few positives of a class, thresholds fitted
on the scored split) and, with ``bootstrap`` replicates, a 95 % percentile bootstrap interval of
every metric in ``intervals`` (:mod:`fairseq_goodviews.scoring.bootstrap`), keyed like the
metrics; the metrics themselves stay plain numbers.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from fairseq import tasks
from omegaconf import open_dict

from fairseq_goodviews import register_plugins
from fairseq_goodviews.evaluation.device import scoring_device, to_device
from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.checkpoints import CheckpointError, read_checkpoint
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.leads import lead_names
from fairseq_goodviews.scoring.bootstrap import MIN_RECORDS, bootstrap_intervals, intervals_note, with_interval
from fairseq_goodviews.scoring.cinc2021 import choose_thresholds
from fairseq_goodviews.scoring.classification import Statistic, record_probabilities, split_metrics, split_statistic


def load_classifier(
    checkpoint: str | Path, data: str | None = None, leads: Sequence[int] | None = None, device: str | None = None
):
    """(model, task) of a classification checkpoint, in eval mode, on ``device`` (see :func:`scoring_device`),
    keeping the leads at the canonical slots ``leads`` (None: all 12)."""
    target = scoring_device(device)
    register_plugins()
    state = read_checkpoint(checkpoint)
    cfg = state["cfg"]
    if (cfg.get("task") or {}).get("_name") != "ecg_classification":
        raise CheckpointError(
            f"{checkpoint}: not a checkpoint of an ecg_classification run (linear probe or fine-tune)"
        )
    with open_dict(cfg):
        cfg.model.model_path = None
        if cfg.model.get("freeze_encoder") and not any(k.startswith("feature_norm.") for k in state["model"]):
            cfg.model.standardize_features = False  # a probe trained before feature standardisation
        if data is not None:
            cfg.task.data = str(data)
        cfg.task.leads = None if leads is None else lead_names(leads)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    model.load_state_dict(state["model"], strict=True)
    model.to(target).eval()
    return model, task


@torch.no_grad()
def predict(model, task, split: str, batch_size: int = 64, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Record probabilities [n, K] and targets ([n] or [n, K]) of every labelled record of ``split``,
    in manifest order; the forward passes run where ``model`` is."""
    task.load_dataset(split)
    dataset = task.dataset(split)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=dataset.collater
    )
    device = next(model.parameters()).device
    probs, targets = [], []
    for batch in loader:
        logits = model(**to_device(batch["net_input"], device))["logits"].float().cpu()
        n_records = len(batch["target"])
        probs.append(record_probabilities(logits, batch["crop_record"], n_records, task.multi_label).numpy())
        targets.append(batch["target"].numpy())
    return np.concatenate(probs), np.concatenate(targets)


def write_predictions(
    path: str | Path, records: list[str], probs: np.ndarray, targets: np.ndarray, class_names: list[str]
) -> None:
    """One row per record: its path, its target(s) and the predicted probability of every class."""

    frame = pd.DataFrame({"record": records})
    if targets.ndim == 1:
        frame["target"] = [class_names[int(t)] for t in targets]
    else:
        for k, name in enumerate(class_names):
            frame[f"target_{name}"] = targets[:, k].astype(int)
    for k, name in enumerate(class_names):
        frame[f"prob_{name}"] = probs[:, k]
    with atomic_open(path, newline="") as handle:
        frame.to_csv(handle, index=False, float_format="%.6g")


#: Fewer positive records of a class than this draws a warning naming the class.
MIN_POSITIVES = 10


def small_sample_warnings(targets: np.ndarray, class_names: Sequence[str]) -> list[str]:
    """Warnings about too few records, or too few positives of a class, in ``targets`` ([n] class
    indices or [n, K] multi-hot) for the metrics to be trusted."""
    warnings = []
    if len(targets) < MIN_RECORDS:
        warnings.append(
            f"only {len(targets)} records scored (fewer than {MIN_RECORDS}): the metrics are unstable, read their intervals"
        )
    if targets.ndim == 1:
        positives = np.bincount(targets.astype(np.int64), minlength=len(class_names))
    else:
        positives = (np.asarray(targets) > 0.5).sum(axis=0)
    few = [f"{name} ({count})" for name, count in zip(class_names, positives, strict=True) if 0 < count < MIN_POSITIVES]
    if few:
        warnings.append(
            f"fewer than {MIN_POSITIVES} positive records for {', '.join(few)}: their AUROC/AUPRC and the macro "
            "averages that include them are unstable"
        )
    return warnings


def add_intervals(
    result: dict[str, Any],
    statistic: Statistic,
    n: int,
    patients: Sequence[Any] | None,
    replicates: int,
    seed: int = 0,
) -> None:
    """Put the bootstrap intervals of ``statistic`` over ``n`` records (resampling ``patients`` as
    units where given) into ``result["intervals"]``, keyed like the metrics (``per_class_auroc/<label>``
    for a per-label AUROC), each ``{"interval": [lo, hi], "method", "n", "replicates", ...}``."""
    intervals = bootstrap_intervals(statistic, n, patients, replicates, seed)
    result["intervals"] = {name: interval.as_json() for name, interval in intervals.items()}


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    leads: Sequence[int] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    threshold_split: str = "valid",
    predictions: str | Path | None = None,
    device: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """The task's metrics of ``checkpoint`` on ``split`` (see the module docstring); with
    ``predictions``, every record's probabilities are also written there as CSV. ``warnings``
    lists what makes the figures shaky (few records or positives, thresholds fitted on the
    scored split); with ``bootstrap`` replicates, ``intervals`` holds every metric's 95 %
    interval (see :func:`add_intervals`; patients are the units where the split has ``patient_id``)."""
    model, task = load_classifier(checkpoint, data, leads, device)
    probs, targets = predict(model, task, split, batch_size, num_workers)
    if predictions is not None:
        write_predictions(predictions, list(task.dataset(split).source.paths), probs, targets, list(task.class_names))
    thresholds, thresholds_from = None, None
    warnings = small_sample_warnings(targets, task.class_names)
    if task.label_set.challenge_scored:
        if (Path(task.cfg.data) / f"{threshold_split}.tsv").is_file():
            valid_probs, valid_targets = predict(model, task, threshold_split, batch_size, num_workers)
            thresholds, thresholds_from = choose_thresholds(valid_probs, valid_targets), threshold_split
            if threshold_split == split:
                warnings.append(
                    f"the challenge thresholds were fitted on the scored split ({split}): its challenge score is "
                    "optimistic (use --threshold-split valid)"
                )
        else:
            thresholds_from = f"0.5 for every class (no {threshold_split} split in {task.cfg.data})"
    scored = task.label_set.challenge_scored
    result = split_metrics(probs, targets, task.class_names, scored, thresholds)
    result["dropped_unlabelled"] = task.dropped.get(split, 0)
    if thresholds_from is not None:
        result["thresholds_from"] = thresholds_from
    if "challenge_thresholds" in result:
        result["challenge_thresholds"] = dict(zip(task.class_names, result["challenge_thresholds"], strict=True))
    result["warnings"] = warnings
    if bootstrap:
        table = read_metadata(task.cfg.data, split)
        rows = task.dataset(split).source.rows
        patients = table["patient_id"].iloc[rows].tolist() if "patient_id" in table.columns else None
        statistic = split_statistic(probs, targets, task.class_names, scored, thresholds)
        add_intervals(result, statistic, len(targets), patients, bootstrap, seed)
    return result


def format_metrics(result: dict[str, Any]) -> str:
    """One line per metric, ``value [lo, hi]`` where ``result["intervals"]`` has the metric's
    interval; per-class AUROCs and thresholds indented under their key by class name."""
    intervals = result.get("intervals", {})
    lines = []
    for key, value in result.items():
        if key in ("intervals", "warnings"):
            continue
        if isinstance(value, dict):
            lines.append(f"{key:>20s}")
            lines.extend(f"{name:>24s}  {with_interval(v, intervals, f'{key}/{name}')}" for name, v in value.items())
        elif isinstance(value, float):
            lines.append(f"{key:>20s}  {with_interval(value, intervals, key)}")
        else:
            lines.append(f"{key:>20s}  {value}")
    if intervals:
        lines.append(f"{'intervals':>20s}  {intervals_note(intervals)}")
    return "\n".join(lines)
