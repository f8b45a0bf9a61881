"""All-gather of every worker's views: embeddings with gradient, view metadata in one collective.

Workers may hold different numbers of views. One call of :func:`gather_views` costs three
collectives whatever the number of workers or metadata keys: the per-worker view counts (read
back to the host once), the embeddings, and every metadata key packed into one int64 tensor
(floats travel as their float64 bit patterns, so the round trip is exact).
"""

from collections.abc import Mapping

import torch
import torch.distributed as dist


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sizes(local: int, device: torch.device) -> list[int]:
    """Number of views of every rank (one collective, one host synchronisation)."""
    size = torch.tensor([local], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(_world())]
    dist.all_gather(sizes, size)
    return torch.cat(sizes).tolist()


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Every rank's rows of ``tensor`` [n_rank, ...] concatenated in rank order: [sum(sizes), ...]."""
    longest = max(sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded.contiguous())
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes, strict=True)])


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenation of every rank's rows. Backward: the summed gradient of own rows.

    Every rank computes the loss of its own anchors against all gathered views, so the gradient
    of a rank's embeddings is the sum over ranks of the gradients flowing into its rows.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.start = sum(sizes[: dist.get_rank()])
        ctx.count = tensor.shape[0]
        return _gather_padded(tensor, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start : ctx.start + ctx.count], None


def _as_int64_columns(value: torch.Tensor) -> torch.Tensor:
    """[n, ...] of any dtype -> [n, k] int64, losslessly (floats as float64 bit patterns)."""
    flat = value.reshape(value.shape[0], -1)
    if flat.is_floating_point():
        return flat.to(torch.float64).view(torch.int64)
    return flat.to(torch.int64)


def _from_int64_columns(columns: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_as_int64_columns` for a tensor shaped and typed like ``like`` (any first dimension)."""
    if like.is_floating_point():
        columns = columns.contiguous().view(torch.float64)
    return columns.to(like.dtype).reshape(columns.shape[0], *like.shape[1:])


def gather_meta(meta: Mapping[str, torch.Tensor], sizes: list[int]) -> dict[str, torch.Tensor]:
    """Every rank's view metadata (each value [n_rank, ...]) concatenated in rank order, in one collective.

    Every rank must pass the same keys, dtypes and trailing shapes (the collater makes them so).
    """
    packed = [_as_int64_columns(value) for value in meta.values()]
    gathered = _gather_padded(torch.cat(packed, dim=1), sizes)
    out, start = {}, 0
    for (key, value), columns in zip(meta.items(), packed, strict=True):
        width = columns.shape[1]
        out[key] = _from_int64_columns(gathered[:, start : start + width], value)
        start += width
    return out


def gather_views(
    embeddings: torch.Tensor, meta: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Gather this worker's views into the global batch.

    ``embeddings`` [n, d] (with gradient) and ``meta`` (each value [n, ...]) are this worker's
    views. Returns ``candidates`` [N, d], the global ``meta`` (each value [N, ...], on the
    embeddings' device) and ``offset``, the index of this worker's first view in the global batch.
    Without a process group these are the inputs themselves and 0.
    """
    meta = {key: value.to(embeddings.device) for key, value in meta.items()}
    if _world() == 1:
        return embeddings, meta, 0
    sizes = _sizes(embeddings.shape[0], embeddings.device)
    offset = sum(sizes[: dist.get_rank()])
    return _GatherWithGrad.apply(embeddings, sizes), gather_meta(meta, sizes), offset
