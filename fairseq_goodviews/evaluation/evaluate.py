"""Score a trained classifier checkpoint on a split: ``goodviews-evaluate CHECKPOINT --data DIR``.

The checkpoint is rebuilt from its own config (the pretrained encoder weights it contains are
used; the pretraining checkpoint it was built from need not exist any more), optionally with a
different lead subset (leads outside it are zero-filled in their canonical slots).
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
from fairseq import checkpoint_utils, tasks
from omegaconf import open_dict

from fairseq_goodviews import register_plugins

from fairseq_goodviews.evaluation.metrics import classification_metrics
from fairseq_goodviews.io.atomic import atomic_open


def load_classifier(checkpoint: str | Path, data: Optional[str] = None, leads: Optional[str] = None):
    """(model, task) of a classification checkpoint, on CPU, in eval mode."""
    register_plugins()
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: checkpoint not found")
    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    cfg = state.get("cfg")
    if cfg is None or cfg.get("task", {}).get("_name") != "ecg_classification":
        raise ValueError(f"{checkpoint}: not a checkpoint of an ecg_classification run (linear probe or fine-tune)")
    with open_dict(cfg):
        cfg.model.model_path = None
        if data is not None:
            cfg.task.data = str(data)
        cfg.task.leads = leads
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    model.load_state_dict(state["model"], strict=True)
    model.eval()
    return model, task


@torch.no_grad()
def predict(model, task, split: str, batch_size: int = 64, num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and targets of every record of ``split``, in manifest order."""
    task.load_dataset(split)
    dataset = task.dataset(split)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=dataset.collater
    )
    probs, targets = [], []
    for batch in loader:
        logits = model(**batch["net_input"])["logits"]
        probs.append(torch.softmax(logits.float(), dim=1).numpy())
        targets.append(batch["target"].numpy())
    return np.concatenate(probs), np.concatenate(targets)


def evaluate_checkpoint(
    checkpoint: str | Path, data: Optional[str] = None, split: str = "test", leads: Optional[str] = None,
    batch_size: int = 64, num_workers: int = 0,
) -> Dict[str, float]:
    model, task = load_classifier(checkpoint, data, leads)
    probs, targets = predict(model, task, split, batch_size, num_workers)
    return classification_metrics(probs, targets, task.class_names)


def write_json(path: str | Path, payload) -> None:
    with atomic_open(path) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=float)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="a checkpoint written by fairseq-hydra-train for ecg_classification")
    parser.add_argument("--data", help="manifest folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--leads", help="comma-separated leads to keep, e.g. I,II,V2 (default: all 12)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="write the metrics here as JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.leads, args.batch_size)
    except (FileNotFoundError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    for key, value in result.items():
        print(f"{key:>16s}  {value:.4f}" if isinstance(value, float) else f"{key:>16s}  {value}")
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
