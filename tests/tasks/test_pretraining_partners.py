"""Pretraining stops when most records of a cross-record strategy have no partner, and a split
without any partner is reported as unmeasurable rather than scoring a loss of 0."""

import logging

import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import write_tiny_dataset
from fairseq_goodviews.strategies import build_strategy
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask, TooFewPartnersError


def _demographics(n, ages, sexes):
    return pd.DataFrame({"path": [f"r{i}.mat" for i in range(n)], "age": ages, "sex": sexes})


def test_every_cross_record_strategy_counts_its_records_without_partner():
    table = _demographics(6, [25, 27, 45, 66, 81, None], ["M", "M", "F", "F", "M", "F"])
    assert build_strategy({"_name": "demographics"}, table, table, 0).records_without_partner() == 4
    coarse = {"_name": "demographics", "age_bins": [18]}
    assert build_strategy(coarse, table, table, 0).records_without_partner() == 1  # the missing age
    patients = pd.DataFrame({"patient_id": ["a", "a", "b", "c"], "record_id": ["1", "2", "3", "4"]})
    assert build_strategy({"_name": "patient"}, patients, patients, 0).records_without_partner() == 2
    assert build_strategy({"_name": "simclr"}, patients, patients, 0).records_without_partner() == 0


def _with_train(tmp_path, edit):
    data = write_tiny_dataset(tmp_path / "data", n_per_split=(12, 4, 4))
    train = pd.read_csv(data / "train.csv", keep_default_na=False)
    edit(train)
    train.to_csv(data / "train.csv", index=False)
    return data


def _task(data, **strategy):
    cfg = OmegaConf.structured(
        EcgPretrainingConfig(data=str(data), strategy={"_name": "demographics", **strategy}, seed=1)
    )
    return EcgPretrainingTask.setup_task(cfg)


def test_most_training_records_without_partner_stop_pretraining_in_one_line(tmp_path):
    def distinct_groups(train):  # 10 of 12 records alone in their age group and sex
        train["age"] = [20, 22, 35, 45, 55, 65, 75, 85, 25, 34, 44, 54]
        train["sex"] = ["M", "M", "M", "M", "M", "M", "M", "M", "F", "F", "F", "F"]

    data = _with_train(tmp_path, distinct_groups)
    with pytest.raises(TooFewPartnersError) as stop:
        _task(data).load_dataset("train")
    message = str(stop.value)
    assert "\n" not in message
    assert message.startswith(f"{data / 'train.csv'}: strategy 'demographics' finds no partner for 10 of its 12")
    assert "(83 %, more than task.max_without_partner=0.5)" in message
    assert "coarser age groups" in message
    _task(data, age_bins=[18, 50]).load_dataset("train")  # coarser bins: 1 of 12 alone
    lenient = _task(data)
    lenient.cfg.max_without_partner = 0.9
    lenient.load_dataset("train")


def test_a_validation_split_without_partners_is_reported_as_unmeasurable(tmp_path, caplog):
    data = write_tiny_dataset(tmp_path / "data", n_per_split=(12, 4, 4))
    valid = pd.read_csv(data / "valid.csv", keep_default_na=False)
    valid["age"], valid["sex"] = [20, 40, 60, 80], ["M", "M", "M", "M"]
    valid.to_csv(data / "valid.csv", index=False)
    task = _task(data)
    with caplog.at_level(logging.WARNING):
        task.load_dataset("valid")
    assert "finds no partner for any of its 4 records: the valid loss cannot be measured" in caplog.text
