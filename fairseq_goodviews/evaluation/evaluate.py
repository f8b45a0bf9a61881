"""Score a trained classifier checkpoint on a split: ``goodviews-evaluate CHECKPOINT --data DIR``.

The checkpoint is rebuilt from its own config (the pretrained encoder weights it contains are
used; the pretraining checkpoint it was built from need not exist any more), optionally with a
different lead subset (leads outside it are zero-filled in their canonical slots). Every record
of the split is scored, as a whole: the mean prediction of consecutive crops covering it.

Single-label tasks report accuracy, macro F1, macro/per-class AUROC and macro AUPRC;
multi-label tasks ``macro_auroc``, ``per_class_auroc``, ``left_out`` (labels without both
classes in the split), ``macro_auprc`` and ``f_max``, plus ``challenge_score`` for the CinC 2021
label set, with per-class thresholds chosen on ``--threshold-split`` (default valid; recorded
as ``challenge_thresholds`` and ``thresholds_from``).
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
from fairseq_goodviews.leads import lead_names
from fairseq_goodviews.scoring.cinc2021 import choose_thresholds
from fairseq_goodviews.scoring.classification import record_probabilities, split_metrics


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
) -> dict[str, Any]:
    """The task's metrics of ``checkpoint`` on ``split`` (see the module docstring); with
    ``predictions``, every record's probabilities are also written there as CSV."""
    model, task = load_classifier(checkpoint, data, leads, device)
    probs, targets = predict(model, task, split, batch_size, num_workers)
    if predictions is not None:
        write_predictions(predictions, list(task.dataset(split).source.paths), probs, targets, list(task.class_names))
    thresholds, thresholds_from = None, None
    if task.label_set.challenge_scored:
        if (Path(task.cfg.data) / f"{threshold_split}.tsv").is_file():
            valid_probs, valid_targets = predict(model, task, threshold_split, batch_size, num_workers)
            thresholds, thresholds_from = choose_thresholds(valid_probs, valid_targets), threshold_split
        else:
            thresholds_from = f"0.5 for every class (no {threshold_split} split in {task.cfg.data})"
    result = split_metrics(probs, targets, task.class_names, task.label_set.challenge_scored, thresholds)
    result["dropped_unlabelled"] = task.dropped.get(split, 0)
    if thresholds_from is not None:
        result["thresholds_from"] = thresholds_from
    return result


def format_metrics(result: dict[str, Any]) -> str:
    """One line per metric; per-class AUROCs indented under ``per_class_auroc``."""
    lines = []
    for key, value in result.items():
        if isinstance(value, dict):
            lines.append(f"{key:>20s}")
            lines.extend(f"{name:>24s}  {v:.4f}" for name, v in value.items())
        elif isinstance(value, float):
            lines.append(f"{key:>20s}  {value:.4f}")
        elif isinstance(value, list) and value and isinstance(value[0], float):
            lines.append(f"{key:>20s}  " + " ".join(f"{v:.2f}" for v in value))
        else:
            lines.append(f"{key:>20s}  {value}")
    return "\n".join(lines)
