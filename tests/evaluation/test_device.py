"""Where scoring runs: --device of the evaluation commands (the GPU path itself runs in examples/gpu_check.sh)."""

import pytest
import torch

from conftest import HAS_GPU
from fairseq_goodviews.cli import embed, evaluate, identify, lead_subsets
from fairseq_goodviews.evaluation.device import DeviceError, scoring_device, to_device


def test_auto_picks_the_gpu_when_one_is_visible_else_the_cpu():
    expected = "cuda" if HAS_GPU else "cpu"
    assert scoring_device().type == expected and scoring_device("auto").type == expected
    assert scoring_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    "name, problem", [("tpu", "not a torch device"), ("mps", "only cpu and cuda"), ("cuda:99", "")]
)
def test_unusable_devices_are_named(name, problem):
    with pytest.raises(DeviceError, match=f"--device {name}: {problem}"):
        scoring_device(name)


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one_is_one_line_per_command(tmp_path, capsys):
    checkpoint = tmp_path / "any.pt"
    checkpoint.write_bytes(b"")
    common = [str(checkpoint), "--data", str(tmp_path), "--device", "cuda"]
    assert embed.main([*common, "--out", str(tmp_path / "e.npz")]) == 2
    for command in (identify.main, evaluate.main, lead_subsets.main):
        assert command(common) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 4 and all("--device cuda: no CUDA GPU is visible to torch here" in line for line in lines)


def test_batches_move_to_the_device_whole():
    batch = {"source": torch.zeros(2, 12, 10), "meta": {"crop_record": torch.arange(2)}, "ids": ["a", "b"]}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["ids"] == ["a", "b"] and moved["meta"]["crop_record"].device.type == "cpu"
