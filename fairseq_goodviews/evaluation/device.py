"""Where evaluation runs: the first GPU when one is visible, else the CPU, or what ``--device`` names.

Scoring (``goodviews-evaluate``, ``goodviews-lead-subsets``, ``goodviews-embed``,
``goodviews-identify``) moves the model there once and each batch as it is read; probabilities
and embeddings come back to the CPU as float32 NumPy arrays, so metrics are computed the same way
wherever the forward pass ran.
"""

from __future__ import annotations

from typing import Any

import torch
from fairseq.utils import apply_to_sample

from fairseq_goodviews.errors import GoodviewsError


class DeviceError(GoodviewsError, ValueError):
    """A ``--device`` that cannot be used here; the message names it and why."""


def scoring_device(name: str | None = None) -> torch.device:
    """``name`` ('cpu', 'cuda', 'cuda:1'); ``None`` or 'auto': the current GPU when one is visible, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name}: not a torch device name (cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA GPU is visible to torch here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def to_device(sample: Any, device: torch.device) -> Any:
    """Every tensor in a (nested) batch moved to ``device``; other values unchanged."""

    return apply_to_sample(lambda tensor: tensor.to(device, non_blocking=True), sample)
