"""A tiny multi-label (CinC 2021 label set) linear probe through fairseq-hydra-train, then goodviews-evaluate."""

import json
import math
import os
import re

import pytest

from conftest import FINETUNE_CONFIGS, add_dx_column, hydra_train, write_tiny_dataset
from fairseq_goodviews.cli.evaluate import main as evaluate_main
from fairseq_goodviews.cli.lead_subsets import main as lead_subsets_main
from fairseq_goodviews.labels.cinc2021 import CINC2021_CLASS_NAMES

FINETUNE = FINETUNE_CONFIGS
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def multilabel_dataset(tmp_path_factory):
    return add_dx_column(
        write_tiny_dataset(tmp_path_factory.mktemp("tiny_dx"), n_per_split=(48, 13, 13), sample_size=1500)
    )


@pytest.mark.slow
def test_multi_label_probe_logs_and_writes_auroc_fmax_and_challenge_score(multilabel_dataset, tmp_path, capsys):
    save = tmp_path / "probe"
    run = hydra_train(
        FINETUNE,
        "linear_probe",
        [
            "preset=cpu_small",
            "task.sample_size=1000",
            "dataset.batch_size=8",
            "dataset.num_workers=0",
            "optimization.max_epoch=2",
            f"task.data={multilabel_dataset}",
            f"checkpoint.save_dir={save}",
            "task.label_type=multi",
            "task.label_set=cinc2021",
            "dataset.valid_subset='valid,test'",  # test scored in validation too, to compare with goodviews-evaluate
        ],
        tmp_path,
        env=ENV,
    )
    log = run.stdout + run.stderr
    for subset in ("valid", "test"):
        line = re.findall(rf"valid on '{subset}' subset \| .*", log)[-1]
        for key in ("macro_auroc", "macro_auprc", "f_max", "challenge_score", "auroc_AF", "auroc_CRBBB|RBBB"):
            assert re.search(rf"\| {re.escape(key)} [-0-9.]+", line), f"{key} not logged on {subset}"
        # 13 records at batch size 8: every record is scored (fairseq's multiple of 8 would drop 5).
        assert re.search(r"\| n 13 \|", line)
        assert "auroc_LAD" not in line  # a label without positives is not logged per label
    logged_test_auroc = float(re.findall(r"valid on 'test' subset \| .*?macro_auroc ([0-9.]+)", log)[-1])

    out = tmp_path / "metrics.json"
    capsys.readouterr()
    assert evaluate_main([str(save / "checkpoint_last.pt"), "--split", "test", "--json", str(out)]) == 0
    printed = capsys.readouterr()
    result = json.loads(out.read_text())
    # How sure: 95 % intervals beside the plain numbers, warnings on stderr and in the JSON.
    for key in ("macro_auroc", "macro_auprc", "f_max", "challenge_score", "per_class_auroc/AF"):
        interval = result["intervals"][key]
        assert (interval["method"], interval["n"], interval["replicates"]) == ("bootstrap_patients", 7, 1000)
        assert interval["interval"][0] <= interval["interval"][1]
    assert re.search(r"macro_auroc  [0-9.]+ \[[0-9.]+, [0-9.]+\]", printed.out)
    assert result["warnings"][0].startswith("only 13 records scored (fewer than 30)")
    assert "fewer than 10 positive records for AF (" in result["warnings"][1]
    assert "goodviews-evaluate: warning: only 13 records scored" in printed.err
    assert list(result["challenge_thresholds"]) == list(CINC2021_CLASS_NAMES)  # thresholds by class name
    assert re.search(r"\n +AF  0\.[0-9]+", printed.out)
    fitted_on_test = tmp_path / "fitted_on_test.json"
    argv = [str(save / "checkpoint_last.pt"), "--split", "test", "--threshold-split", "test", "--bootstrap", "0"]
    assert evaluate_main([*argv, "--json", str(fitted_on_test)]) == 0
    optimistic = json.loads(fitted_on_test.read_text())
    assert "intervals" not in optimistic
    assert optimistic["warnings"][-1].startswith("the challenge thresholds were fitted on the scored split (test)")
    assert {"macro_auroc", "per_class_auroc", "macro_auprc", "f_max", "challenge_score", "left_out"} <= set(result)
    assert result["n"] == 13 and result["thresholds_from"] == "valid"
    assert set(result["per_class_auroc"]) == set(CINC2021_CLASS_NAMES)
    # Only the four rhythms and RBBB occur: the other 21 labels have no positive and are left out.
    assert len(result["left_out"]) == 21 and "AF" not in result["left_out"]
    assert math.isfinite(result["challenge_score"]) and 0 < result["f_max"] <= 1
    assert 0.5 < result["macro_auroc"] <= 1
    assert result["macro_auroc"] == pytest.approx(logged_test_auroc, abs=1e-5)

    subsets = tmp_path / "subsets.json"
    assert lead_subsets_main([str(save / "checkpoint_last.pt"), "--json", str(subsets)]) == 0
    payload = json.loads(subsets.read_text())
    assert [len(s["leads"]) for s in payload["subsets"]] == [12, 6, 4, 3, 2, 1]
    assert payload["subsets"][2]["leads"] == ["I", "II", "III", "V2"]
    assert payload["subsets"][0]["metrics"]["challenge_score"] == pytest.approx(result["challenge_score"])
    for entry in payload["subsets"]:
        assert {"macro_auroc", "f_max", "challenge_score"} <= set(entry["metrics"])
