"""gather_views across two real gloo processes: exact metadata, rank offsets, summed gradients, three collectives."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo_runs import free_port

from conftest import HAS_GPU
from fairseq_goodviews.criterions import distributed as gather_module
from fairseq_goodviews.criterions.distributed import gather_views

SIZES = [3, 5]  # views per rank: unequal on purpose


def _views(rank: int):
    generator = torch.Generator().manual_seed(rank)
    n = SIZES[rank]
    meta = {
        "record": torch.arange(n, dtype=torch.long) + 1000 * rank + 2**40,  # beyond float32's exact integers
        "segment": torch.randint(0, 3, (n,), generator=generator, dtype=torch.int32),
        "attributes": torch.randn(n, 4, generator=generator, dtype=torch.float32) * 1e-3 + 1e6,
        "flag": torch.rand(n, generator=generator) < 0.5,
    }
    return torch.randn(n, 6, generator=generator), meta


def _worker(rank: int, port: int, results) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    calls = []
    all_gather = dist.all_gather
    gather_module.dist.all_gather = lambda *a, **k: (calls.append(1), all_gather(*a, **k))[1]
    try:
        embeddings, meta = _views(rank)
        embeddings.requires_grad_()
        candidates, gathered, offset = gather_views(embeddings, meta)
        n_collectives = len(calls)
        weights = torch.arange(candidates.numel(), dtype=torch.float32).reshape(candidates.shape)
        (candidates * weights * (rank + 1)).sum().backward()
        results[rank] = {
            "offset": offset,
            "collectives": n_collectives,
            "candidates": candidates.detach(),
            "meta": gathered,
            "grad": embeddings.grad,
        }
    finally:
        gather_module.dist.all_gather = all_gather
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_gather_exact_views_and_sum_gradients():
    results = mp.Manager().dict()
    mp.spawn(_worker, args=(free_port(), results), nprocs=2, join=True)
    expected = [_views(rank) for rank in range(2)]
    total = sum(SIZES)
    weights = torch.arange(total * 6, dtype=torch.float32).reshape(total, 6)
    for rank in range(2):
        out = results[rank]
        assert out["offset"] == sum(SIZES[:rank])
        assert out["collectives"] == 3, "sizes, embeddings and all metadata: one collective each"
        assert torch.equal(out["candidates"], torch.cat([e for e, _ in expected]))
        for key, value in expected[0][1].items():
            gathered = out["meta"][key]
            assert gathered.dtype == value.dtype
            assert torch.equal(gathered, torch.cat([m[key] for _, m in expected])), key
        # d/d(own rows) of sum over ranks r of (r + 1) * <candidates, weights>: 3 * own rows of weights.
        rows = slice(out["offset"], out["offset"] + SIZES[rank])
        assert torch.equal(out["grad"], 3 * weights[rows])


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")
def test_nccl_carries_exact_views_and_gradients_on_the_gpu():
    """The three collectives of gather_views over NCCL on CUDA tensors, with one rank (two NCCL
    ranks need two GPUs): exact 64-bit record ids and float metadata, gradient of own rows."""
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        device = torch.device("cuda")
        embeddings, meta = _views(0)
        embeddings = embeddings.to(device).requires_grad_()
        meta = {key: value.to(device) for key, value in meta.items()}
        sizes = gather_module._sizes(embeddings.shape[0], device)
        candidates = gather_module._GatherWithGrad.apply(embeddings, sizes)
        gathered = gather_module.gather_meta(meta, sizes)
        (candidates * 3.0).sum().backward()
    finally:
        dist.destroy_process_group()
    assert sizes == [SIZES[0]] and candidates.device.type == "cuda"
    assert torch.equal(candidates.detach(), embeddings.detach())
    for key, value in meta.items():
        assert gathered[key].dtype == value.dtype and torch.equal(gathered[key], value), key
    assert torch.equal(embeddings.grad, torch.full_like(embeddings, 3.0))
