"""The downstream task a prepared folder supports, and the one the benchmark takes without --task:
folders written by the real preparers (PTB-XL and PhysioNet 2021 layouts) and a Chapman-style one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import add_dx_column
from fairseq_goodviews.cli.prepare_ptbxl import main as prepare_ptbxl_main
from fairseq_goodviews.cli.synthetic_ptbxl import main as synthetic_ptbxl_main
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.physionet2021 import prepare_physionet2021
from fairseq_goodviews.synthetic.wfdb_layouts import write_physionet2021_tree
from fairseq_goodviews.table1 import BenchmarkError
from fairseq_goodviews.table1.data import choose_task, split_for_seed, supported_tasks
from fairseq_goodviews.table1.downstream import TASKS


@pytest.fixture(scope="module")
def ptbxl_prepared(tmp_path_factory) -> Path:
    """``goodviews-synthetic-ptbxl`` then ``goodviews-prepare-ptbxl``, as a user prepares PTB-XL."""
    root = tmp_path_factory.mktemp("ptbxl")
    assert synthetic_ptbxl_main([str(root / "src"), "--patients", "40", "--seconds", "3"]) == 0
    argv = [str(root / "src"), str(root / "prepared"), "--no-progress", "--no-attributes"]
    assert prepare_ptbxl_main(argv) == 0
    return root / "prepared"


def test_a_prepared_ptbxl_folder_defaults_to_the_superdiagnostic_task(ptbxl_prepared):
    assert not (ptbxl_prepared / "scp_statements.csv").exists()  # found through the report's src_dir
    assert choose_task(ptbxl_prepared, None) == (
        "ptbxl_superdiagnostic",
        "detected: the task of the data's preparer (ptbxl)",
    )
    why_not = supported_tasks(ptbxl_prepared)
    assert list(why_not) == list(TASKS)
    assert why_not["ptbxl_rhythm"] is None and why_not["rhythm4"] is None
    assert "no 'dx' column" in why_not["cinc2021"]
    assert choose_task(ptbxl_prepared, "ptbxl_form") == ("ptbxl_form", "--task")


def test_the_per_seed_split_keeps_the_statement_table_reachable(ptbxl_prepared, tmp_path):
    # as the benchmark's synthetic PTB-XL set: the table beside the data, the raw folder deleted
    beside = tmp_path / "beside"
    shutil.copytree(ptbxl_prepared, beside)
    shutil.copyfile(ptbxl_prepared.parent / "src" / "scp_statements.csv", beside / "scp_statements.csv")
    (beside / "prepare_report.json").write_text('{"source": "ptbxl", "config": {"src_dir": "/nonexistent"}}')
    split = split_for_seed(beside, tmp_path / "out", seed=1)
    assert (split / "scp_statements.csv").is_file()
    assert choose_task(split, None)[0] == "ptbxl_superdiagnostic"


def test_without_the_statement_table_the_ptbxl_tasks_are_refused_in_one_line(ptbxl_prepared, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(ptbxl_prepared, moved)
    (moved / "prepare_report.json").write_text('{"source": "ptbxl", "config": {"src_dir": "/nonexistent"}}')
    with pytest.raises(BenchmarkError) as raised:
        choose_task(moved, "ptbxl_superdiagnostic")
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{moved} cannot support --task ptbxl_superdiagnostic")
    assert "no scp_statements.csv at" in message and message.endswith("it supports rhythm4")
    assert choose_task(moved, None) == ("rhythm4", "detected: the first task the data supports")


def test_a_prepared_physionet2021_folder_defaults_to_cinc2021(tmp_path):
    write_physionet2021_tree(tmp_path / "src", n_per_subset=6, seconds=3.0)
    prepare_physionet2021(tmp_path / "src", tmp_path / "prepared", options=PrepareOptions(progress=False))
    task, how = choose_task(tmp_path / "prepared", None)
    assert (task, how) == ("cinc2021", "detected: the task of the data's preparer (physionet2021)")
    # its rhythm labels support the paper's task too, when asked for
    assert choose_task(tmp_path / "prepared", "rhythm4") == ("rhythm4", "--task")


def test_a_folder_without_a_report_gets_the_first_task_it_supports(tiny_dataset, tmp_path):
    assert choose_task(tiny_dataset, None) == ("rhythm4", "detected: the first task the data supports")
    with pytest.raises(BenchmarkError, match=rf"^{tiny_dataset} cannot support --task cinc2021 .*no 'dx' column"):
        choose_task(tiny_dataset, "cinc2021")
    with_dx = add_dx_column(shutil.copytree(tiny_dataset, tmp_path / "dx"))
    assert choose_task(with_dx, None) == ("cinc2021", "detected: the first task the data supports")
    with pytest.raises(BenchmarkError, match="unknown --task 'ptbxl_bogus'; choose from cinc2021, "):
        choose_task(with_dx, "ptbxl_bogus")
