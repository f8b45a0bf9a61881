"""The README's chain, run as written: relative paths, from a fresh folder that is not the clone.

The commands are read from the README's ``readme-chain`` block; only the sizes change (fewer
records, one epoch). The folder starts empty (``.venv/bin/<command>`` runs the console script of
the interpreter running the tests, and the training configs come from the package), so every
relative path resolves against the folder the commands start in, as they do for a user. The same
pretraining command run again resumes its own run.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def readme_chain() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-chain:.*?-->\n```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no readme-chain block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    venv_bin = str(Path(sys.executable).parent)
    # The package under test is the clone's (the environment may hold another install of it).
    env = dict(os.environ, PATH=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]), PYTHONPATH=str(REPO_ROOT))
    if command[0].startswith(".venv/bin/"):
        command = [str(Path(venv_bin) / Path(command[0]).name), *command[1:]]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, f"{shlex.join(command)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_readme_chain_runs_as_written_with_relative_paths(tmp_path):
    small = {"--records": "80"}
    lines = readme_chain()
    assert len(lines) == 6
    # The console scripts, as installed by make setup: no script of the clone is run by path.
    assert all(shlex.split(line)[0].startswith(".venv/bin/") for line in lines)
    outputs = []
    for line in lines:
        command = shlex.split(line)
        command = [small.get(previous, word) for previous, word in zip(["", *command[:-1]], command, strict=True)]
        if command[0].endswith("goodviews-train"):
            command += ["optimization.max_epoch=1", "dataset.num_workers=0", "task.sample_size=1000"]
        outputs.append(run(command, tmp_path))

    assert (tmp_path / "data" / "chapman" / "train.tsv").is_file()
    # --pack on the preparer: the pretraining reads the pack, with no option asking for it.
    assert "train: " in outputs[1].stdout and "train.packed" in outputs[1].stdout
    assert "data/chapman/train.tsv: reading the records from the pack" in outputs[2].stdout + outputs[2].stderr
    assert (tmp_path / "checkpoints" / "simclr" / "checkpoint_last.pt").is_file()
    assert (tmp_path / "checkpoints" / "linear_probe" / "checkpoint_best.pt").is_file()
    assert not (tmp_path / "outputs").exists()  # no hydra run folder: relative paths mean this folder
    metrics = json.loads((tmp_path / "test.json").read_text())
    assert 0.0 <= metrics["macro_auroc"] <= 1.0
    predictions = (tmp_path / "test_predictions.csv").read_text().splitlines()
    n_test = len((tmp_path / "data" / "chapman" / "test.tsv").read_text().splitlines()) - 1
    assert len(predictions) == n_test + 1 and predictions[0].startswith("record,target,prob_")
    assert "I, II, III, V2" in outputs[-1].stdout or "4 leads" in outputs[-1].stdout

    # The pretraining command again, one epoch longer: it resumes its own run instead of restarting.
    again = [*shlex.split(lines[2]), "optimization.max_epoch=2", "dataset.num_workers=0", "task.sample_size=1000"]
    log = run(again, tmp_path)
    text = log.stdout + log.stderr
    assert "Loaded checkpoint checkpoints/simclr/checkpoint_last.pt" in text
    assert [int(e) for e in re.findall(r"\[train\]\[INFO\] - epoch (\d+) \|", text)] == [2]
