"""All-gather across workers, with gradient, for tensors whose first dimension differs per rank."""

from typing import List

import torch
import torch.distributed as dist


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sizes(local: int, device: torch.device) -> List[int]:
    size = torch.tensor([local], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(_world())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _gather_padded(tensor: torch.Tensor, sizes: List[int]) -> torch.Tensor:
    longest = max(sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded.contiguous())
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenation of every rank's rows. Backward: the summed gradient of own rows.

    Every rank computes the loss of its own anchors against all gathered views, so the gradient
    of a rank's embeddings is the sum over ranks of the gradients flowing into its rows.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        sizes = _sizes(tensor.shape[0], tensor.device)
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.count = sizes[rank]
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start: ctx.start + ctx.count]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Gathered tensor and the offset of this rank's rows in it (tensor itself, 0 when not distributed)."""
    if _world() == 1:
        return tensor, 0
    sizes = _sizes(tensor.shape[0], tensor.device)
    return _GatherWithGrad.apply(tensor), sum(sizes[: dist.get_rank()])


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    if _world() == 1:
        return tensor
    return _gather_padded(tensor, _sizes(tensor.shape[0], tensor.device))
