"""goodviews-evaluate's uncertainty: warnings about small samples, intervals in the JSON and the printout."""

import numpy as np

from fairseq_goodviews.evaluation.evaluate import add_intervals, format_metrics, small_sample_warnings
from fairseq_goodviews.scoring.classification import split_metrics, split_statistic

NAMES = ["AFIB", "GSVT", "SB", "SR"]


def test_few_records_and_classes_with_few_positives_are_named():
    targets = np.array([0] * 12 + [1] * 3 + [2] * 10 + [3] * 0)
    warnings = small_sample_warnings(targets, NAMES)
    assert warnings[0].startswith("only 25 records scored (fewer than 30)")
    assert warnings[1].startswith("fewer than 10 positive records for GSVT (3): their AUROC")
    assert len(warnings) == 2
    multi = np.zeros((40, 4))
    multi[:12, 0] = multi[:9, 1] = 1
    assert small_sample_warnings(multi, NAMES) == [
        "fewer than 10 positive records for GSVT (9): their AUROC/AUPRC and the macro averages that include "
        "them are unstable"
    ]
    assert small_sample_warnings(np.arange(40) % 4, NAMES) == []


def test_intervals_sit_beside_the_plain_metrics_and_print_as_value_low_high():
    rng = np.random.default_rng(0)
    targets = np.arange(60) % 4
    probs = rng.dirichlet(np.ones(4), size=60) + np.eye(4)[targets] * 0.5
    probs /= probs.sum(axis=1, keepdims=True)
    result = split_metrics(probs, targets, NAMES)
    patients = [f"p{i // 3}" for i in range(60)]
    add_intervals(result, split_statistic(probs, targets, NAMES), 60, patients, replicates=200)
    assert isinstance(result["macro_auroc"], float)  # existing readers of the JSON keep working
    interval = result["intervals"]["macro_auroc"]
    assert (interval["method"], interval["n"], interval["replicates"]) == ("bootstrap_patients", 20, 200)
    low, high = interval["interval"]
    assert low < result["macro_auroc"] < high
    assert set(result["intervals"]) == {
        "accuracy",
        "macro_f1",
        "macro_auroc",
        "macro_auprc",
        *(f"auroc_{n}" for n in NAMES),
    }
    text = format_metrics(result)
    assert f"macro_auroc  {result['macro_auroc']:.4f} [{low:.4f}, {high:.4f}]" in text
    assert "95 % percentile bootstrap, 200 replicates over 20 patients" in text
