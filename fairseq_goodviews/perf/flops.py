"""Model FLOPs per record of one training step, and how busy they keep a device.

A record's cost is the forward and backward pass of its views through the pretraining model,
counted by :class:`torch.utils.flop_counter.FlopCounterMode` on the CPU (it counts the matrix
multiplications, convolutions and attention; elementwise operations, the loss and the optimiser
are left out), with the views the config's strategy makes: the paper ResNet-18 (``simclr``, two
views of ``task.sample_size`` samples) and W2V+CMSC+RLM (``w2v_cmsc_rlm``, its ``n_segments``
segments of ``segment_length`` samples; wav2vec 2.0's masking, quantiser and negatives included). A measured rate of records/s times
GFLOP/record is the achieved TFLOP/s; its share of the device's dense bf16 peak
(:data:`PEAK_BF16_TFLOPS`, from the vendor's data sheets) is said only for a GPU in that table.

    goodviews-perf flops --out DIR [--preset paper] [--w2v-preset w2v_paper]
"""

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from fairseq.dataclass.utils import merge_with_parent
from torch.utils.flop_counter import FlopCounterMode

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
from fairseq_goodviews.models.wav2vec2_ecg import Wav2Vec2EcgConfig, Wav2Vec2EcgModel
from fairseq_goodviews.strategies import STRATEGY_REGISTRY
from fairseq_goodviews.strategies.base import strategy_config
from fairseq_goodviews.strategies.cmsc import TimeSegments, resolve_segment_length

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "pretraining"
#: Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a pattern of ``torch.cuda.get_device_name()``:
#: NVIDIA's data sheets (their figures "with sparsity" halved). The first pattern that matches counts.
PEAK_BF16_TFLOPS = (
    (r"\bGH200\b", 989.0),
    (r"\bH200\b(?!.*\bNVL\b)", 989.0),  # H200 SXM
    (r"\bH100\b.*\b(SXM|HBM3)\b", 989.0),  # H100 SXM5 ("NVIDIA H100 80GB HBM3")
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bA100\b", 312.0),
    (r"\bA30\b", 165.0),
    (r"\bA10\b", 125.0),
    (r"\bL40S\b", 362.0),
    (r"\bL4\b", 121.0),
)
#: The model classes of the pretraining configs, by ``model._name``.
MODELS = {"resnet1d": (Resnet1dModel, Resnet1dConfig), "wav2vec2_ecg": (Wav2Vec2EcgModel, Wav2Vec2EcgConfig)}
#: Records per counted batch (the count is divided by it); two, so that batch norm sees a batch.
COUNTED_RECORDS = 2


@dataclass(frozen=True)
class FlopCount:
    """One model's training FLOPs per record, and the views they were counted on."""

    config: str
    preset: str
    views_per_record: int
    view_samples: int
    gflop_per_record: float


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU ``device_name`` (as torch names it); None when not in the table."""
    for pattern, peak in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name, re.IGNORECASE):
            return peak
    return None


def training_flops(model: torch.nn.Module, source: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass of ``model`` (train mode) over ``source`` [views, leads, T].

    The backward pass starts from the sum of every floating-point tensor output the model returns.
    """
    model.train()
    with FlopCounterMode(display=False) as counter:
        out = model(source)
        outputs = out.values() if isinstance(out, dict) else [out]
        tensors = [t for t in outputs if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
        torch.stack([t.float().sum() for t in tensors]).sum().backward()
    return counter.get_total_flops()


def views_of(strategy: Any, sample_size: int) -> tuple[int, int]:
    """(views per dataset item, samples per view) of the ``task.strategy`` node on crops of
    ``sample_size`` samples; an item of a cross-record strategy is a record and its partner."""
    config = strategy_config(strategy)
    cls = STRATEGY_REGISTRY[config._name]
    views = cls.views_per_record(config) * (2 if cls.cross_record else 1)
    if issubclass(cls, TimeSegments):
        return views, resolve_segment_length(sample_size, config.n_segments, config.segment_length)
    return views, sample_size


def flops_per_record(config: str, preset: str, sample_size: int | None = None) -> FlopCount:
    """The pretraining ``config`` with ``preset``: its model's FLOPs over one record's views
    (crops of ``sample_size`` samples, default the preset's ``task.sample_size``)."""
    cfg = compose(CONFIG_DIR.parent, CONFIG_DIR.name, config, [f"preset={preset}"])
    views, samples = views_of(cfg.task.strategy, sample_size or int(cfg.task.sample_size))
    model_class, config_class = MODELS[str(cfg.model._name)]
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = model_class.build_model(merge_with_parent(config_class(), cfg.model))
        source = torch.randn(COUNTED_RECORDS * views, int(cfg.model.in_leads), samples)
        flops = training_flops(model, source)
    return FlopCount(config, preset, views, samples, flops / COUNTED_RECORDS / 1e9)


def utilisation(records_per_s: float, gflop_per_record: float, device_name: str) -> dict[str, Any]:
    """Achieved TFLOP/s of ``records_per_s``, and its share of ``device_name``'s bf16 peak
    (None on the CPU or for a GPU not in :data:`PEAK_BF16_TFLOPS`)."""
    tflops = records_per_s * gflop_per_record / 1e3
    peak = peak_bf16_tflops(device_name) if device_name != "cpu" else None
    return {"tflops": tflops, "peak_bf16_tflops": peak, "share_of_peak": tflops / peak if peak else None}


def format_utilisation(use: dict[str, Any], device_name: str) -> str:
    """``12.3 TFLOP/s`` and, for a GPU in the peak table, ``, 4.1 % of the H200's bf16 peak (989)``."""
    text = f"{use['tflops']:.3g} TFLOP/s"
    if use["share_of_peak"] is not None:
        return text + f", {100 * use['share_of_peak']:.1f} % of its dense bf16 peak ({use['peak_bf16_tflops']:g})"
    if device_name != "cpu":
        return text + f" (share of peak not known: {device_name!r} is not in the peak table)"
    return text


def run(strategy: str, preset: str, w2v_preset: str, sample_size: int | None = None) -> dict[str, Any]:
    """GFLOP per record of the ResNet ``strategy`` with ``preset`` (crops of ``sample_size`` samples,
    default the preset's) and of W2V+CMSC+RLM with ``w2v_preset``."""
    counts = [flops_per_record(strategy, preset, sample_size), flops_per_record("w2v_cmsc_rlm", w2v_preset)]
    return {
        "models": [asdict(count) for count in counts],
        "counted": "matmuls, convolutions and attention of the forward and backward pass (FlopCounterMode)",
    }


def format_result(result: dict[str, Any]) -> str:
    """One line per model: its config and preset, the views counted and GFLOP/record."""
    lines = [f"{'model':<30}{'views x samples':>18}{'GFLOP/record':>15}"]
    for row in result["models"]:
        name = f"{row['config']} ({row['preset']})"
        views = f"{row['views_per_record']} x {row['view_samples']}"
        lines.append(f"{name:<30}{views:>18}{row['gflop_per_record']:>15.2f}")
    return "\n".join(lines)
