"""FLOPs per record counted by torch's FlopCounterMode, and their share of a GPU's bf16 peak."""

import pytest
import torch

from conftest import PRETRAIN_CONFIGS
from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.perf.flops import (
    flops_per_record,
    format_utilisation,
    peak_bf16_tflops,
    training_flops,
    utilisation,
    views_of,
)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),  # SXM5
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA A10G", None),  # not the A10
        ("NVIDIA H100 NVL", None),  # not in the table: no share said
        ("Tesla V100-SXM2-16GB", None),  # no bf16 tensor cores
    ],
)
def test_peak_by_device_name(name, peak):
    assert peak_bf16_tflops(name) == peak


def test_utilisation_is_rate_times_flops_and_its_share_only_for_a_known_gpu():
    use = utilisation(1735.0, 23.5, "NVIDIA H200")
    assert use["tflops"] == pytest.approx(40.77, abs=0.01) and use["share_of_peak"] == pytest.approx(40.7725 / 989)
    assert format_utilisation(use, "NVIDIA H200") == "40.8 TFLOP/s, 4.1 % of its dense bf16 peak (989)"
    unknown = utilisation(100.0, 10.0, "Some GPU")
    assert unknown["share_of_peak"] is None and "not in the peak table" in format_utilisation(unknown, "Some GPU")
    assert format_utilisation(utilisation(100.0, 10.0, "cpu"), "cpu") == "1 TFLOP/s"


def test_a_linear_layer_costs_the_forward_matmul_once_more_per_gradient():
    layer, forward = torch.nn.Linear(10, 5), 2 * 3 * 10 * 5
    # data needs no gradient: forward + the weight's gradient
    assert training_flops(layer, torch.randn(3, 10)) == 2 * forward
    # an input that needs one (a layer inside a model): + the input's gradient
    assert training_flops(layer, torch.randn(3, 10, requires_grad=True)) == 3 * forward


def test_views_follow_the_strategy():
    def strategy(name):
        return compose(PRETRAIN_CONFIGS.parent, "pretraining", name, ["preset=paper"]).task.strategy

    assert views_of(strategy("simclr"), 5000) == (2, 5000)
    assert views_of(strategy("cmsc"), 5000) == (2, 2500)  # two segments of the crop
    assert views_of(strategy("patient"), 5000) == (2, 5000)  # a record and its partner


def test_the_paper_resnet18_costs_23_5_gflop_per_record(one_thread):
    count = flops_per_record("simclr", "paper")
    assert (count.views_per_record, count.view_samples) == (2, 5000)
    assert count.gflop_per_record == pytest.approx(23.52, abs=0.01)
    # convolutions scale with the view length
    assert flops_per_record("simclr", "paper", 2500).gflop_per_record == pytest.approx(23.52 / 2, rel=0.01)


def test_w2v_counts_its_segments(one_thread):
    count = flops_per_record("w2v_cmsc_rlm", "w2v_cpu_small")
    cfg = compose(PRETRAIN_CONFIGS.parent, "pretraining", "w2v_cmsc_rlm", ["preset=w2v_cpu_small"])
    assert count.views_per_record == cfg.task.strategy.n_segments == 2
    assert count.view_samples == cfg.task.strategy.segment_length
    assert count.gflop_per_record > 0
