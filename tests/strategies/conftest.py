"""Fixtures of the strategy tests (helpers live in ``strategies/helpers.py``)."""

from pathlib import Path

import pytest

from strategies.helpers import write_ramp_dataset


@pytest.fixture(scope="session")
def ramp_dataset(tmp_path_factory) -> Path:
    return write_ramp_dataset(tmp_path_factory.mktemp("ramp"))


@pytest.fixture(scope="session")
def ramp_dataset_missing_leads(tmp_path_factory) -> Path:
    return write_ramp_dataset(tmp_path_factory.mktemp("ramp_leads"), missing_leads=True)
