"""Checkpoint files: a file that is not one is a one-line error naming it, never torch's advice."""

import argparse
import zipfile

import pytest
import torch
from omegaconf import DictConfig

from fairseq_goodviews.io.checkpoints import CheckpointError, read_checkpoint, read_torch_file

STATE = {"model": {"w": torch.ones(2)}, "cfg": {"model": {"_name": "resnet1d"}, "task": {"_name": "ecg_pretraining"}}}


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "checkpoint_last.pt"
    torch.save(STATE, path)
    return path


def refusal(path, option=None) -> str:
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path, option)
    message = str(info.value)
    assert "\n" not in message and "weights_only" not in message
    return message


def test_a_checkpoint_gives_its_weights_and_config(checkpoint):
    state = read_checkpoint(checkpoint)
    assert isinstance(state["cfg"], DictConfig) and state["cfg"].model._name == "resnet1d"
    assert torch.equal(state["model"]["w"], torch.ones(2))


def test_files_that_are_not_checkpoints_say_what_they_hold(tmp_path, checkpoint):
    data = checkpoint.read_bytes()
    cases = {
        "truncated.pt": (data[: len(data) // 2], "not a fairseq checkpoint (a truncated or damaged PyTorch file)"),
        "empty.pt": (b"", "not a fairseq checkpoint (an empty or truncated file)"),
        "text.pt": (b"junk\n", "not a fairseq checkpoint (not a PyTorch file)"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        assert refusal(tmp_path / name) == f"{tmp_path / name}: {expected}"
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("a.txt", "x")
    assert refusal(tmp_path / "other.zip").endswith("(a zip archive that is not a PyTorch file)")


def test_contents_that_are_not_a_checkpoint_are_named(tmp_path):
    torch.save({"args": argparse.Namespace(lr=1.0), "model": {}}, tmp_path / "pickled.pt")
    assert refusal(tmp_path / "pickled.pt").endswith(
        "(safe loading refuses the Python object argparse.Namespace in the file)"
    )
    torch.save([1, 2], tmp_path / "list.pt")
    assert refusal(tmp_path / "list.pt").endswith("not a fairseq checkpoint (it holds a list)")
    torch.save({"w": torch.ones(1)}, tmp_path / "bare.pt")
    assert refusal(tmp_path / "bare.pt").endswith("not a fairseq checkpoint (no 'model' or 'cfg'; it holds 'w')")
    torch.save({"model": {}, "cfg": {"task": {}}}, tmp_path / "nomodel.pt")
    assert refusal(tmp_path / "nomodel.pt").endswith("(its cfg has no model config)")


def test_missing_files_and_folders_name_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refusal("gone.pt", "model.model_path") == (
        f"model.model_path=gone.pt: checkpoint not found (relative paths mean the folder you started in: {tmp_path})"
    )
    assert refusal(tmp_path) == f"{tmp_path}: a folder, not a checkpoint file"


def test_a_refused_object_can_carry_the_callers_hint(tmp_path):
    torch.save({"args": argparse.Namespace(lr=1.0)}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match=r"argparse.Namespace in the file\); use --trust-pickle$"):
        read_torch_file(tmp_path / "pickled.pt", "checkpoint", refusal_hint="use --trust-pickle")
    assert read_torch_file(tmp_path / "pickled.pt", "checkpoint", trust_pickle=True)["args"].lr == 1.0
