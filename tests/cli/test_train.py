"""goodviews-train's own answers: the configs it lists, an unknown one, the folder it prints."""

from pathlib import Path

import pytest

from fairseq_goodviews.cli.train import available_configs, config_location, main
from fairseq_goodviews.config import CONFIG_ROOT


def test_help_lists_every_pretraining_and_finetuning_config(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the epilog
    for name in (
        "pretraining/simclr",
        "pretraining/w2v_cmsc_rlm",
        "finetuning/linear_probe",
        "finetuning/identification",
    ):
        assert name in text
    assert "pretraining/base" not in text and "finetuning/base" not in text  # bases are not runnable configs


def test_available_configs_are_the_yaml_files_of_both_stages():
    pretraining = {f"pretraining/{p.stem}" for p in (CONFIG_ROOT / "pretraining").glob("*.yaml")}
    finetuning = {f"finetuning/{p.stem}" for p in (CONFIG_ROOT / "finetuning").glob("*.yaml")}
    assert set(available_configs()) == (pretraining | finetuning) - {"pretraining/base", "finetuning/base"}
    assert len(available_configs()) == 12


@pytest.mark.parametrize("name", ["pretraining/simclrr", "simclr", "finetuning/simclr", "encoder/resnet18", "../x"])
def test_an_unknown_config_is_one_line_listing_the_available_ones(name, capsys):
    assert main([name, "task.data=data/chapman"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"goodviews-train: error: no config {name!r}; available: pretraining/attributes, ")
    assert err.endswith("finetuning/linear_probe")


def test_no_config_is_one_line(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("goodviews-train: error: name a config; available: ")


def test_config_location_is_the_packaged_folder_and_name():
    assert config_location("pretraining/simclr") == (CONFIG_ROOT / "pretraining", "simclr")
    assert config_location("finetuning/linear_probe.yaml") == (CONFIG_ROOT / "finetuning", "linear_probe")


@pytest.mark.parametrize("stage, config", [("pretraining", "simclr"), ("finetuning", "linear_probe")])
def test_config_dir_prints_the_folder_for_fairseq_hydra_train(stage, config, capsys):
    assert main(["--config-dir", stage]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == CONFIG_ROOT / stage and (folder / f"{config}.yaml").is_file()
