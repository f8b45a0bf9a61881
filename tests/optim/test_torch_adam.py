"""``torch_adam`` trains as fairseq's ``adam`` does, clips as fairseq clips, and resumes exactly.

The reference is fairseq's own ``adam`` (its per-parameter Python Adam, what fairseq runs
without apex) and fairseq's own ``clip_grad_norm_``, not code of this project.
"""

import pytest
import torch
from fairseq import utils
from fairseq.optim.adam import FairseqAdam
from omegaconf import OmegaConf

from conftest import DEVICES
from fairseq_goodviews.optim.torch_adam import TorchAdam, adam_betas


def _model(device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv1d(12, 8, 5, bias=False),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 60, 4),
    ).to(device)


def _cfg(**options) -> OmegaConf:
    return OmegaConf.create(
        {
            "lr": [1e-3],
            "adam_betas": [0.9, 0.98],
            "adam_eps": 1e-6,
            "weight_decay": 0.01,
            "use_old_adam": False,
            "fp16_adam_stats": False,
            "implementation": "auto",
            **options,
        }
    )


def _train(model: torch.nn.Module, optimizer, steps: range, device: str) -> None:
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(16, 12, 64, generator=generator).to(device)
        target = torch.randn(16, 4, generator=generator).to(device)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), target).backward()
        optimizer.clip_grad_norm(0.0)
        optimizer.step()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("implementation", ["auto", "foreach", "for_loop"])
def test_torch_adam_follows_fairseq_adam_with_decoupled_weight_decay(device, implementation):
    reference, candidate = _model(device), _model(device)
    _train(reference, FairseqAdam(_cfg(), list(reference.parameters())), range(40), device)
    optimizer = TorchAdam(_cfg(implementation=implementation), list(candidate.parameters()))
    _train(candidate, optimizer, range(40), device)
    moved = max(
        (p - q).abs().max().item() for p, q in zip(reference.parameters(), _model(device).parameters(), strict=True)
    )
    differ = max(
        (p - q).abs().max().item() for p, q in zip(reference.parameters(), candidate.parameters(), strict=True)
    )
    assert moved > 1e-2, "the weights moved"
    assert differ < 1e-4 * moved, f"torch_adam differs from fairseq's adam by {differ} (weights moved {moved})"


@pytest.mark.parametrize("device", DEVICES)
def test_auto_uses_the_fused_kernel_where_pytorch_has_one(device):
    optimizer = TorchAdam(_cfg(), list(_model(device).parameters()))
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except RuntimeError:
        assert optimizer.kernel == "foreach"
    else:
        assert optimizer.kernel == "fused"


@pytest.mark.parametrize("max_norm", [0.0, 0.05])
def test_gradient_norm_and_clipping_match_fairseq(max_norm):
    model = _model("cpu")
    x, target = torch.randn(16, 12, 64), torch.randn(16, 4)
    torch.nn.functional.mse_loss(model(x), target).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    expected_norm = utils.clip_grad_norm_(list(model.parameters()), max_norm)
    expected = [p.grad.clone() for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    norm = TorchAdam(_cfg(), list(model.parameters())).clip_grad_norm(max_norm)
    assert norm.dtype == torch.float32 and torch.allclose(norm, expected_norm, rtol=1e-6)
    assert all(torch.allclose(p.grad, e, rtol=1e-6, atol=0) for p, e in zip(model.parameters(), expected, strict=True))
    if max_norm == 0.0:
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True)), "no clipping at 0"
    else:
        assert expected_norm > max_norm and not torch.equal(model[0].weight.grad, grads[0]), "clipped"


def test_resuming_from_the_state_dict_continues_exactly():
    straight = _model("cpu")
    _train(straight, TorchAdam(_cfg(), list(straight.parameters())), range(20), "cpu")
    first = _model("cpu")
    optimizer = TorchAdam(_cfg(), list(first.parameters()))
    _train(first, optimizer, range(10), "cpu")
    state, weights = optimizer.state_dict(), {k: v.clone() for k, v in first.state_dict().items()}
    resumed = _model("cpu")
    resumed.load_state_dict(weights)
    optimizer = TorchAdam(_cfg(), list(resumed.parameters()))
    optimizer.load_state_dict(state, optimizer_overrides={"lr": 1e-3})
    _train(resumed, optimizer, range(10, 20), "cpu")
    assert all(torch.equal(p, q) for p, q in zip(straight.parameters(), resumed.parameters(), strict=True))


def test_adam_betas_from_a_list_or_fairseq_string_and_a_clear_error_otherwise():
    assert adam_betas([0.9, 0.98]) == (0.9, 0.98) == adam_betas("(0.9, 0.98)")
    for bad in ("(0.9)", "0.9, x", [0.9, 1.5], None):
        with pytest.raises(ValueError, match=r"optimizer\.adam_betas"):
            adam_betas(bad)
