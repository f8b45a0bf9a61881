"""ecg_classification's split-level validation scores: the challenge score's thresholds are the task's
state, chosen on valid and applied to the splits scored after it; other label sets log no challenge score."""

import numpy as np
import pytest
from fairseq import metrics

from fairseq_goodviews.criterions.ecg_classification import EcgClassificationCriterion
from fairseq_goodviews.scoring.cinc2021 import challenge_metrics, choose_thresholds
from fairseq_goodviews.tasks.ecg_classification import EcgClassificationConfig, EcgClassificationTask


def _split(seed: int, n: int = 30, k: int = 26) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, k)) < 0.2).astype(np.float32)
    probs = np.where(targets > 0, rng.uniform(0.3, 0.45, targets.shape), rng.uniform(0.0, 0.25, targets.shape))
    return probs.astype(np.float32), targets


def _score(task, split: str, probs: np.ndarray, targets: np.ndarray) -> dict:
    """The values fairseq logs for one validation pass over ``split`` (two batches)."""
    logs = [
        {
            "loss": 1.0,
            "nsentences": len(t),
            "ntokens": len(t),
            "sample_size": len(t),
            "probs": p,
            "targets": t,
            "split": split,
        }
        for p, t in ((probs[:10], targets[:10]), (probs[10:], targets[10:]))
    ]
    with metrics.aggregate(new_root=True) as agg:
        task.reduce_metrics(logs, EcgClassificationCriterion(task))
        return agg.get_smoothed_values()


def _task(tmp_path, **overrides) -> EcgClassificationTask:
    cfg = EcgClassificationConfig(data=str(tmp_path), seed=1, label_type="multi", **overrides)
    return EcgClassificationTask(cfg)  # scoring only: no data folder to check


def test_test_split_is_scored_with_the_thresholds_chosen_on_valid(tmp_path):
    task = _task(tmp_path, label_set="cinc2021")
    valid, test = _split(0), _split(1)
    before = _score(task, "test", *test)
    assert before["challenge_score"] == pytest.approx(challenge_metrics(*test)["challenge_score"])  # 0.5 each
    _score(task, "valid", *valid)
    after = _score(task, "test", *test)
    expected = challenge_metrics(*test, choose_thresholds(*valid))["challenge_score"]
    assert after["challenge_score"] == pytest.approx(expected) and after["challenge_score"] != before["challenge_score"]
    # Another task (another run in the same process) starts from 0.5 again.
    assert _score(_task(tmp_path, label_set="cinc2021"), "test", *test)["challenge_score"] == before["challenge_score"]


def test_label_sets_without_the_challenge_log_no_challenge_score(tmp_path):
    task = _task(tmp_path, label_set="labels", classes="a,b,c")
    probs, targets = _split(0, k=3)
    logged = _score(task, "valid", probs, targets)
    assert "challenge_score" not in logged and 0 <= logged["f_max"] <= 1 and logged["n"] == 30
