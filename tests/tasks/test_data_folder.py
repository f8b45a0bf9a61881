"""task.data that does not exist or was never prepared: one line naming it, before any model is built."""

import pytest
from omegaconf import OmegaConf

from fairseq_goodviews.synthetic.chapman import generate_chapman
from fairseq_goodviews.synthetic.wfdb_layouts import write_physionet2021_tree, write_ptbxl_tree, write_wfdb_dir_tree
from fairseq_goodviews.tasks.base import DataFolderError, check_data_folder
from fairseq_goodviews.tasks.ecg_classification import EcgClassificationConfig, EcgClassificationTask
from fairseq_goodviews.tasks.ecg_identification import EcgIdentificationConfig, EcgIdentificationTask
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask


def refusal(data) -> str:
    with pytest.raises(DataFolderError) as info:
        check_data_folder(str(data))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_missing_folder_names_the_folder_relative_paths_start_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert refusal("data/chapmn") == (
        f"task.data=data/chapmn: no such folder (relative paths mean the folder you started in: {tmp_path})"
    )
    assert refusal(tmp_path / "gone") == f"task.data={tmp_path / 'gone'}: no such folder"
    (tmp_path / "file.tsv").write_text("x")
    assert refusal(tmp_path / "file.tsv").endswith(": a file, not a folder of prepared records")


@pytest.mark.parametrize(
    "write, holds, command",
    [
        (lambda root: generate_chapman(root, 4), "the raw Chapman/Shaoxing database", "goodviews-prepare-chapman"),
        (lambda root: write_ptbxl_tree(root, 2), "the raw PTB-XL database", "goodviews-prepare-ptbxl"),
        (lambda root: write_physionet2021_tree(root, 1), "WFDB records", "goodviews-prepare-physionet2021"),
        (lambda root: write_wfdb_dir_tree(root, 2), "WFDB records", "goodviews-prepare-wfdb-dir"),
    ],
)
def test_a_raw_database_names_its_preparer(tmp_path, write, holds, command):
    raw = tmp_path / "raw"
    write(raw)
    assert refusal(raw) == (
        f"task.data={raw}: not a prepared folder (no train.tsv); it holds {holds}: run {command} {raw} OUT first"
    )


def test_an_empty_folder_points_to_the_preparers(tmp_path):
    assert refusal(tmp_path).endswith("not a prepared folder (no train.tsv); prepare the database with a "
                                      "goodviews-prepare-* command")  # fmt: skip


@pytest.mark.parametrize(
    "task, config",
    [
        (EcgPretrainingTask, EcgPretrainingConfig),
        (EcgClassificationTask, EcgClassificationConfig),
        (EcgIdentificationTask, EcgIdentificationConfig),
    ],
)
def test_every_task_checks_its_folder_when_set_up(tmp_path, tiny_dataset, task, config):
    with pytest.raises(DataFolderError, match="no such folder"):
        task.setup_task(OmegaConf.structured(config(data=str(tmp_path / "gone"), seed=1)))
    assert task.setup_task(OmegaConf.structured(config(data=str(tiny_dataset), seed=1))).cfg.data == str(tiny_dataset)
