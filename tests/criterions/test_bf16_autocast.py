"""bf16 autocast through the task's train and valid steps: bf16 convolutions, float32 loss, finite gradients.

On the CPU always, and on the GPU where one is visible (examples/gpu_check.sh runs them there).
"""

import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import DEVICES
from fairseq_goodviews.criterions.multi_positive_infonce import MultiPositiveInfoNceCriterion
from fairseq_goodviews.evaluation.device import to_device
from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
from fairseq_goodviews.optim.torch_adam import TorchAdam
from strategies.helpers import collate, make_task, write_ramp_dataset


def _setup(tmp_path, autocast_bf16: bool, device: str):
    data = write_ramp_dataset(tmp_path / "ramp", n_per_split=(8, 4, 4))
    task = make_task(data, {"_name": "simclr", "jitter_prob": 1.0})
    task.cfg.autocast_bf16 = autocast_bf16
    task.load_dataset("train")
    batch = collate(task, "train")
    batch["net_input"]["source"] = batch["net_input"]["source"] / 1e4  # the ramp's mV values are huge
    batch = to_device(batch, torch.device(device))
    torch.manual_seed(0)
    model = Resnet1dModel.build_model(Resnet1dConfig(base_width=8, layers=[1, 1, 1, 1], embedding_dim=16)).to(device)
    optimizer = TorchAdam(
        OmegaConf.create(
            {"lr": [1e-3], "adam_betas": [0.9, 0.999], "adam_eps": 1e-8, "weight_decay": 0.0, "implementation": "auto"}
        ),
        list(model.parameters()),
    )
    return task, batch, model, MultiPositiveInfoNceCriterion(task, 0.07), optimizer


@pytest.mark.parametrize("device", DEVICES)
def test_train_and_valid_steps_under_bf16_autocast(tmp_path, device):
    task, batch, model, criterion, optimizer = _setup(tmp_path, True, device)
    seen = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv1d))
    first_conv.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    loss, sample_size, log = task.train_step(batch, model, criterion, optimizer, update_num=0)
    assert seen and seen[0] == torch.bfloat16, "the convolutions ran in bf16"
    assert loss.dtype == torch.float32 and math.isfinite(log["loss"]) and sample_size > 0
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay float32"
    valid_loss, _, _ = task.valid_step(batch, model, criterion)
    assert valid_loss.dtype == torch.float32 and torch.isfinite(valid_loss)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_loss_is_close_to_the_float32_loss(tmp_path, device):
    losses = {}
    for autocast in (False, True):
        task, batch, model, criterion, _ = _setup(tmp_path / str(autocast), autocast, device)
        losses[autocast], _, _ = task.valid_step(batch, model, criterion)
    assert abs(losses[True].item() - losses[False].item()) < 0.05 * abs(losses[False].item())
