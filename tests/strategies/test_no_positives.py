"""A strategy whose anchors can have no positive on the data says so before any training."""
import pandas as pd
import pytest
from omegaconf import OmegaConf

from fairseq_goodviews.strategies import build_strategy
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask, NoPositivesError


def table(patients, **columns):
    return pd.DataFrame({"patient_id": patients, "record_id": [f"r{i}" for i in range(len(patients))], **columns})


def test_pclr_on_one_ecg_per_patient_has_no_positive_and_says_why():
    one_each = table(["a", "b", "c"])
    reason = build_strategy({"_name": "patient"}, one_each, one_each, 0).no_positive_reason()
    assert reason == "every patient has a single record (one ECG per patient)"
    repeated = table(["a", "a", "c"])
    assert build_strategy({"_name": "patient"}, repeated, repeated, 0).no_positive_reason() is None


def test_group_strategy_without_any_shared_group_has_no_positive():
    frame = table(["a", "b"], age=[20, 75], sex=["M", "F"])
    reason = build_strategy({"_name": "demographics"}, frame, frame, 0).no_positive_reason()
    assert "no record shares its" in reason


def test_pretraining_refuses_before_training(tiny_dataset):
    train = pd.read_csv(tiny_dataset / "train.csv")
    assert train["patient_id"].duplicated().any()  # the fixture has two records per patient: PCLR learns
    cfg = OmegaConf.structured(EcgPretrainingConfig(data=str(tiny_dataset), strategy={"_name": "patient"}, seed=1))
    EcgPretrainingTask.setup_task(cfg).load_dataset("train")
    single = tiny_dataset.parent / "single_visit"
    if not single.exists():
        import shutil

        shutil.copytree(tiny_dataset, single)
        frame = pd.read_csv(single / "train.csv")
        frame["patient_id"] = frame["record_id"]
        frame.to_csv(single / "train.csv", index=False)
    cfg.data = str(single)
    with pytest.raises(NoPositivesError, match="'patient' cannot pretrain on .*one ECG per patient"):
        EcgPretrainingTask.setup_task(cfg).load_dataset("train")
