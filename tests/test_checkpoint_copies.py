"""fairseq's checkpoint copies (checkpoint_last.pt, checkpoint_best.pt) are atomic with the plugin loaded."""

import shutil

import pytest
from fairseq.file_io import PathManager

import fairseq_goodviews
from fairseq_goodviews import checkpoint_copies


def test_fairseq_copies_through_the_atomic_copy_once_the_plugin_is_registered(tmp_path):
    fairseq_goodviews.register_plugins()
    fairseq_goodviews.register_plugins()  # idempotent: not wrapped twice
    assert getattr(PathManager.copy, "_goodviews_atomic_copy", False)
    (tmp_path / "checkpoint3.pt").write_bytes(b"new checkpoint")
    (tmp_path / "checkpoint_last.pt").write_bytes(b"old checkpoint")
    assert PathManager.copy(str(tmp_path / "checkpoint3.pt"), str(tmp_path / "checkpoint_last.pt"), overwrite=True)
    assert (tmp_path / "checkpoint_last.pt").read_bytes() == b"new checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint3.pt", "checkpoint_last.pt"]


def test_a_copy_killed_halfway_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    (tmp_path / "checkpoint3.pt").write_bytes(b"new checkpoint" * 1000)
    (tmp_path / "checkpoint_last.pt").write_bytes(b"old checkpoint")

    def copy_half_then_die(src, dst):
        with open(src, "rb") as source, open(dst, "wb") as target:
            target.write(source.read(100))
        raise KeyboardInterrupt  # what a kill during the copy would leave behind

    monkeypatch.setattr(shutil, "copyfile", copy_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_copies.atomic_copy(str(tmp_path / "checkpoint3.pt"), str(tmp_path / "checkpoint_last.pt"))
    assert (tmp_path / "checkpoint_last.pt").read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint3.pt", "checkpoint_last.pt"]
