"""``preset=throughput``: the paper recipe but for what large batches need, and it trains."""

import json
import math

import pytest
from omegaconf import OmegaConf

from conftest import PRETRAIN_CONFIGS, hydra_train
from fairseq_goodviews.config.compose import compose

#: What the preset changes from preset=paper (everything else is the paper's).
CHANGED = {
    "dataset.batch_size",
    "dataset.num_workers",
    "optimization.lr",
    "lr_scheduler.warmup_updates",
    "task.cudnn_benchmark",
}


def flat(cfg) -> dict:
    """``{dotted.key: value}`` of a composed config."""
    out = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            out[prefix] = node

    walk("", OmegaConf.to_container(cfg))
    return out


@pytest.mark.parametrize("strategy", ["simclr", "cmsc", "patient"])
def test_only_the_batch_its_learning_rate_warm_up_and_speed_settings_differ_from_the_paper(strategy):
    paper = flat(compose(PRETRAIN_CONFIGS.parent, "pretraining", strategy, ["preset=paper"]))
    fast = flat(compose(PRETRAIN_CONFIGS.parent, "pretraining", strategy, ["preset=throughput"]))
    assert {key for key in paper.keys() | fast.keys() if paper.get(key) != fast.get(key)} == CHANGED
    scale = fast["dataset.batch_size"] / paper["dataset.batch_size"]
    assert scale == 4 and fast["task.autocast_bf16"] and fast["task.cudnn_benchmark"]
    # the square-root rule for Adam, reached by a linear warm-up
    assert fast["optimization.lr"][0] == pytest.approx(paper["optimization.lr"][0] * math.sqrt(scale))
    assert fast["lr_scheduler.warmup_updates"] > 0 and fast["lr_scheduler._name"] == "fixed"


@pytest.mark.slow
def test_the_preset_trains_a_tiny_step_on_the_cpu_with_its_warm_up(tiny_dataset, tmp_path):
    reduced = ["dataset.batch_size=8", "dataset.num_workers=0", "task.sample_size=500", "model.base_width=8"]
    result = hydra_train(
        PRETRAIN_CONFIGS,
        "simclr",
        [
            "preset=throughput",
            f"task.data={tiny_dataset}",
            *reduced,
            "optimization.max_update=2",
            "checkpoint.no_save=true",
            "dataset.disable_validation=true",
            "common.log_format=json",
            "common.log_interval=1",
            f"checkpoint.save_dir={tmp_path}/ckpt",
        ],
        tmp_path,
    )
    logs = [json.loads(line[line.index("{") :]) for line in result.stdout.splitlines() if "train_inner" in line]
    assert [int(log["num_updates"]) for log in logs] == [1, 2]
    # warm-up: the learning rate climbs by 2e-4 / 120 per update from 2e-4 / 120
    assert [float(log["lr"]) for log in logs] == pytest.approx([2e-4 * 2 / 120, 2e-4 * 3 / 120], rel=1e-3)
    assert math.isfinite(float(logs[-1]["loss"]))
