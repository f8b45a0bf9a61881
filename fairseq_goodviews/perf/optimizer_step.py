"""Host cost of one optimiser update: fairseq's ``adam`` against ``torch_adam``.

For the parameters of a pretraining preset's encoder (default: the paper's ResNet-18), one update
is fairseq's gradient norm (``clip_grad_norm`` with ``clip_norm`` 0, as the configs run) and the
Adam step. Measured, for each optimiser: the operators one update dispatches to a kernel (counted
by a ``TorchDispatchMode``, views excluded; on a GPU each is at least one kernel launch paid on
the host, and fairseq's trainer waits for the GPU, on the gradient norm's finiteness, just
before) and the median host time of an update on this CPU, with the real parameter sizes and with
one-element parameters (the time left when the arithmetic is negligible, as it is on a GPU), side
by side in one run.

    goodviews-perf optimizer-step --out DIR [--preset paper]
"""

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fairseq.dataclass.utils import merge_with_parent
from fairseq.optim.adam import FairseqAdam
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
from fairseq_goodviews.optim.torch_adam import TorchAdam

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "pretraining"


def _parameters(preset: str) -> list[torch.Tensor]:

    cfg = compose(CONFIG_DIR.parent, CONFIG_DIR.name, "simclr", [f"preset={preset}", "task.data=unused"])
    torch.manual_seed(0)
    return list(Resnet1dModel.build_model(merge_with_parent(Resnet1dConfig(), cfg.model)).parameters())


def _optimisers(params: list[torch.Tensor]) -> dict[str, Any]:

    settings = {"lr": [1e-4], "adam_betas": [0.9, 0.999], "adam_eps": 1e-8, "weight_decay": 0.0}
    fairseq_cfg = {**settings, "use_old_adam": False, "fp16_adam_stats": False, "tpu": False}
    return {
        "fairseq adam": FairseqAdam(OmegaConf.create(fairseq_cfg), params),
        "torch_adam": TorchAdam(OmegaConf.create({**settings, "implementation": "auto"}), params),
    }


def _update(optimizer) -> Callable[[], None]:
    def update() -> None:
        optimizer.clip_grad_norm(0.0)
        optimizer.step()

    return update


class _OperatorCount(TorchDispatchMode):
    """Counts the operators dispatched to a kernel: aten ops that compute (not views; no profiler marks)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "aten" and not func.is_view:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def operator_calls(update: Callable[[], None]) -> int:
    """Operators one ``update()`` dispatches to a kernel (aten ops, views excluded)."""
    update()
    with _OperatorCount() as count:
        update()
    return count.calls


def median_ms(update: Callable[[], None], repeats: int) -> float:
    """Median host milliseconds of ``update()`` over ``repeats`` calls, after five untimed ones."""
    for _ in range(5):
        update()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        update()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(preset: str, repeats: int) -> dict[str, Any]:
    """Operator calls and median host ms (``repeats`` updates) of each optimiser's update, with one torch thread.

    The process's torch thread count is set back afterwards.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        shapes = [p.shape for p in _parameters(preset)]
        result: dict[str, Any] = {"preset": preset, "parameter_tensors": len(shapes), "optimisers": {}}
        for size in ("real", "one-element"):
            for name in ("fairseq adam", "torch_adam"):
                params = [torch.nn.Parameter(torch.randn(s if size == "real" else (1,))) for s in shapes]
                for p in params:
                    p.grad = torch.randn_like(p)
                update = _update(_optimisers(params)[name])
                entry = result["optimisers"].setdefault(name, {})
                if size == "real":
                    entry["operator_calls_per_update"] = operator_calls(update)
                entry[f"host_ms_{size}"] = median_ms(update, repeats)
    finally:
        torch.set_num_threads(threads)
    return result


def format_result(result: dict[str, Any]) -> str:
    """Both optimisers side by side, and fairseq's ``adam`` over ``torch_adam`` in calls and host time."""
    lines = [
        f"one update (gradient norm + Adam step), {result['parameter_tensors']} parameter tensors "
        f"of the {result['preset']} ResNet:",
        f"{'optimiser':<16}{'operator calls':>16}{'ms, real sizes':>16}{'ms, 1 element':>16}",
    ]
    for name, entry in result["optimisers"].items():
        lines.append(
            f"{name:<16}{entry['operator_calls_per_update']:>16}{entry['host_ms_real']:>16.2f}"
            f"{entry['host_ms_one-element']:>16.2f}"
        )
    fairseq, torch_adam = result["optimisers"]["fairseq adam"], result["optimisers"]["torch_adam"]
    lines.append(
        f"fairseq adam / torch_adam: {fairseq['operator_calls_per_update'] / torch_adam['operator_calls_per_update']:.0f}x "
        f"the operator calls, {fairseq['host_ms_one-element'] / torch_adam['host_ms_one-element']:.1f}x the host time"
    )
    return "\n".join(lines)
