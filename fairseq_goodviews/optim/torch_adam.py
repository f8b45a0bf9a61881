"""``torch_adam``: fairseq's ``adam`` update on PyTorch's multi-tensor kernels.

fairseq's ``adam`` runs PyTorch-level Python code per parameter (about ten kernel launches each)
unless NVIDIA's apex is installed, and its gradient-norm computation launches one norm per
parameter; on a GPU that host work is paid at every update, after the trainer's synchronisation
on the gradient norm, while the GPU waits. ``torch_adam`` is the same optimiser, Adam with
decoupled weight decay (fairseq's ``adam`` is AdamW in its weight decay, as its docstring says),
built on :class:`torch.optim.AdamW`'s fused kernel (one launch for all parameters; CUDA, and CPU
from PyTorch 2.4) or its ``foreach`` kernels where fused is unavailable, with the gradient norm
and clipping by :func:`torch.nn.utils.get_total_norm` / :func:`torch.nn.utils.clip_grads_with_norm_`
(one multi-tensor norm; PyTorch >= 2.6, fairseq's own clipping before).

PyTorch adds ``eps`` to the bias-corrected ``sqrt(v / (1 - beta2^t))``, fairseq to ``sqrt(v)``
before the correction; early in training this changes the update of every weight whose gradient
is not much larger than ``eps / sqrt(1 - beta2^t)``. ``torch_adam`` passes PyTorch
``eps / sqrt(1 - beta2^t)`` at update ``t``, which makes the two updates the same expression:
``lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)``. (A parameter without a gradient
at some update, e.g. a dropped layer under LayerDrop, lags the update count ``t`` by as many
updates; the resulting difference of ``eps`` vanishes as ``beta2^t`` does.)
"""

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ChoiceEnum(["auto", "fused", "foreach", "for_loop"])
_HAS_TOTAL_NORM = hasattr(torch.nn.utils, "get_total_norm") and hasattr(torch.nn.utils, "clip_grads_with_norm_")


@dataclass
class TorchAdamConfig(FairseqDataclass):
    adam_betas: Any = field(default=(0.9, 0.999), metadata={"help": "betas (beta1, beta2) of Adam"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon added to the bias-corrected sqrt(v)"})
    weight_decay: float = field(
        default=0.0,
        metadata={"help": "decoupled weight decay (AdamW; as fairseq's adam), per update: p -= lr * wd * p"},
    )
    implementation: IMPLEMENTATIONS = field(  # type: ignore[valid-type]
        default="auto",
        metadata={
            "help": "torch.optim.AdamW's kernel: auto (fused where the parameters' device and PyTorch "
            "support it, else foreach), fused, foreach or for_loop"
        },
    )
    lr: Any = II("optimization.lr")  # noqa: RUF009 (an interpolation, as in fairseq's own configs)


def adam_betas(value: Any) -> tuple[float, float]:
    """``(beta1, beta2)`` from a config value: a sequence of two numbers or a string ``"(0.9, 0.98)"``."""
    if isinstance(value, str):
        value = [part for part in value.strip("()[] ").split(",") if part.strip()]
    try:
        betas = tuple(float(beta) for beta in value)
    except (TypeError, ValueError):
        betas = ()
    if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
        raise ValueError(f"optimizer.adam_betas: expected two numbers in [0, 1), got {value!r}")
    return betas


def build_adamw(params: Sequence[torch.Tensor], implementation: str, **hyperparameters: Any) -> torch.optim.AdamW:
    """torch's AdamW with the requested kernel; ``auto`` is fused where supported, else foreach."""
    if implementation == "auto":
        try:
            return torch.optim.AdamW(params, fused=True, **hyperparameters)
        except RuntimeError:
            return torch.optim.AdamW(params, foreach=True, **hyperparameters)
    if implementation == "fused":
        try:
            return torch.optim.AdamW(params, fused=True, **hyperparameters)
        except RuntimeError as error:
            raise ValueError(f"optimizer.implementation=fused: PyTorch {torch.__version__} cannot: {error}") from None
    return torch.optim.AdamW(params, foreach=implementation == "foreach", **hyperparameters)


@register_optimizer("torch_adam", dataclass=TorchAdamConfig)
class TorchAdam(FairseqOptimizer):
    """fairseq's Adam (decoupled weight decay) on :class:`torch.optim.AdamW`'s multi-tensor kernels."""

    def __init__(self, cfg: TorchAdamConfig, params: Iterable[torch.Tensor]):
        super().__init__(cfg)
        params = list(params)
        self._optimizer = build_adamw(params, str(cfg.implementation), **self.optimizer_config)
        self._eps, self._updates = float(cfg.adam_eps), 0
        logger.info(f"torch_adam: torch.optim.AdamW, {self.kernel} kernel")

    def step(self, closure: Callable | None = None, scale: float = 1.0, groups: Any = None) -> None:
        """One update; ``eps`` is rescaled so that it applies before the bias correction, as in fairseq."""
        self._updates += 1
        for group in self._optimizer.param_groups:
            group["eps"] = self._eps / math.sqrt(1.0 - group["betas"][1] ** self._updates)
        super().step(closure, scale, groups)

    def load_state_dict(self, state_dict: dict, optimizer_overrides: dict | None = None) -> None:
        """Load a checkpoint's optimiser state; the update count resumes from its parameters' step counts."""
        super().load_state_dict(state_dict, optimizer_overrides)
        steps = [state["step"] for state in self._optimizer.state.values() if "step" in state]
        self._updates = int(max(steps)) if steps else 0

    @property
    def kernel(self) -> str:
        """The AdamW kernel in use: ``fused``, ``foreach`` or ``for_loop``."""
        defaults = self._optimizer.defaults
        return "fused" if defaults.get("fused") else "foreach" if defaults.get("foreach") else "for_loop"

    @property
    def optimizer_config(self) -> dict[str, Any]:
        """Hyperparameters that override those stored in a checkpoint when training resumes."""
        lr = self.cfg.lr
        return {
            "lr": float(lr[0] if isinstance(lr, Sequence) else lr),
            "betas": adam_betas(self.cfg.adam_betas),
            "eps": float(self.cfg.adam_eps),
            "weight_decay": float(self.cfg.weight_decay),
        }

    def clip_grad_norm(self, max_norm: float, aggregate_norm_fn: Callable | None = None) -> torch.Tensor:
        """The gradients' total L2 norm (float32), after clipping them to ``max_norm`` when it is > 0."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not _HAS_TOTAL_NORM or aggregate_norm_fn is not None or not grads:
            return super().clip_grad_norm(max_norm, aggregate_norm_fn)
        total_norm = torch.nn.utils.get_total_norm(grads, foreach=True).float()
        if max_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, float(max_norm), total_norm, foreach=True)
        return total_norm
