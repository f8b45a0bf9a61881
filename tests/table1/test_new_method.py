"""Adding a pretraining method is one module plus one config (or one config alone), nothing else.

A throw-away strategy comes from a temporary module (declared, as any other distribution would,
in the ``fairseq_goodviews.strategies`` entry-point group) with one config; a renamed copy of the
W2V+CMSC+RLM config reuses a model and a criterion. Both run through the benchmark's tiny preset
from the command line, and the report describes them from what they declare.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import USER_DIR

pytestmark = pytest.mark.slow

STRATEGY_MODULE = '''
"""Throw-away strategy: two crops of the same record, each from its own random offset."""
from dataclasses import dataclass, field
from typing import List

import numpy as np

from fairseq_goodviews.strategies.base import PositiveStrategy, StrategyConfig, View, register_strategy


@dataclass
class TwoCropsConfig(StrategyConfig):
    crop_fraction: float = field(default=0.8, metadata={"help": "length of each crop, as a fraction of the record"})


@register_strategy("two_crops", dataclass=TwoCropsConfig)
class TwoCrops(PositiveStrategy):
    display_name = "Two random crops"

    @classmethod
    def views_per_record(cls, cfg: TwoCropsConfig) -> int:
        return 2

    def view_length(self, sample_size: int) -> int:
        return int(sample_size * self.cfg.crop_fraction)

    def make_views(self, signal: np.ndarray, lead_present: np.ndarray, rng: np.random.Generator) -> List[View]:
        length = self.view_length(signal.shape[1])
        starts = rng.integers(signal.shape[1] - length + 1, size=2)
        return [View(np.ascontiguousarray(signal[:, s:s + length]), lead_present) for s in starts]
'''

STRATEGY_CONFIG = """
# Two random crops of the same ECG are positives.
defaults:
  - /strategy@task.strategy: two_crops
  - _self_
  - base

task:
  strategy:
    crop_fraction: 0.8
"""


def test_a_new_strategy_module_and_a_renamed_config_run_through_the_benchmark(tmp_path, tiny_dataset):
    plugin = tmp_path / "plugin"
    (plugin / "two_crops_view-0.1.dist-info").mkdir(parents=True)
    (plugin / "two_crops_view.py").write_text(STRATEGY_MODULE)
    (plugin / "two_crops_view-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: two-crops-view\nVersion: 0.1\n"
    )
    (plugin / "two_crops_view-0.1.dist-info" / "entry_points.txt").write_text(
        "[fairseq_goodviews.strategies]\ntwo_crops = two_crops_view\n"
    )
    configs = tmp_path / "config"
    shutil.copytree(USER_DIR / "config", configs)
    (configs / "pretraining" / "two_crops.yaml").write_text(textwrap.dedent(STRATEGY_CONFIG))
    shutil.copy(configs / "pretraining" / "w2v_cmsc_rlm.yaml", configs / "pretraining" / "my_w2v.yaml")

    out = tmp_path / "bench"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")])))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairseq_goodviews.cli.benchmark",
            "--preset",
            "tiny",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--config-root",
            str(configs),
            "--strategies",
            "two_crops,my_w2v",
            "--seeds",
            "1",
            "--label-fractions",
            "1.0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    methods = results["benchmark"]["methods"]
    assert methods["two_crops"]["table_name"] == "Two random crops" and methods["two_crops"]["model"] == "resnet1d"
    assert methods["my_w2v"]["model"] == "wav2vec2_ecg" and methods["my_w2v"]["strategy"] == "cmsc"
    rows = {row["method"]: row for row in results["table"] if row["protocol"] == "linear_probe"}
    assert rows["two_crops"]["name"] == "Two random crops" and rows["two_crops"]["status"] == "ok"
    assert rows["my_w2v"]["name"] == "W2V+CMSC+RLM" and 0.0 <= rows["my_w2v"]["macro_auroc"]["mean"] <= 1.0
    pretrain = {r["run_id"]: r for r in results["runs"]}["my_w2v-s1-pretrain"]
    assert "preset=w2v_cpu_small" in pretrain["overrides"] and "schedule=w2v_tiny" in pretrain["overrides"]
    assert "| Two random crops |" in (out / "results.md").read_text()
