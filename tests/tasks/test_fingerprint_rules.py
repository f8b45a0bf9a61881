"""What a run fingerprint compares, without training: stopping settings continue a run, a damaged
fingerprint is one line, and a task built in code (not by a composed run) records nothing."""

import pytest

from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig
from fairseq_goodviews.tasks.fingerprint import (
    RunFingerprintError,
    check_run_fingerprint,
    differences,
    read_fingerprint,
)


def test_more_epochs_or_updates_continue_the_same_run_but_a_new_learning_rate_does_not():
    old = {"optimization.max_epoch": 2, "optimization.max_update": 0, "optimization.lr": "[0.001]"}
    longer = {**old, "optimization.max_epoch": 5, "optimization.max_update": 900}
    assert differences(old, longer) == []
    assert differences(old, {**old, "optimization.lr": "[0.01]"}) == ["optimization.lr: [0.001] -> [0.01]"]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_damaged_fingerprint_is_one_line_naming_the_file(tmp_path, text):
    path = tmp_path / "run_fingerprint.json"
    path.write_text(text)
    with pytest.raises(RunFingerprintError, match=r"run_fingerprint\.json: .*delete it to resume") as info:
        read_fingerprint(path)
    assert "\n" not in str(info.value)


def test_a_task_config_built_in_code_records_no_fingerprint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_run_fingerprint(EcgPretrainingConfig())
    assert list(tmp_path.iterdir()) == []
