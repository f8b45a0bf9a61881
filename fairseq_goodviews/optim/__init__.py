"""Optimisers registered with fairseq (``optimizer._name``)."""

from fairseq_goodviews.optim import torch_adam  # noqa: F401
