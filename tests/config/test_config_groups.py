"""The hydra configs as fairseq-hydra-train composes them: groups shared once, options as plain overrides."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fairseq.dataclass.initialize import hydra_init
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import FINETUNE_CONFIGS, PRETRAIN_CONFIGS
from fairseq_goodviews.strategies import STRATEGY_REGISTRY

PRETRAINING = sorted(p.stem for p in PRETRAIN_CONFIGS.glob("*.yaml") if p.stem != "base")


def composed(config_dir, name, *overrides):
    """As fairseq-hydra-train composes: fairseq's schema stored under the config's own name."""
    hydra_init(name)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.1"):
        return compose(config_name=name, overrides=["task.data=/data", *overrides], return_hydra_config=True)


@pytest.mark.parametrize("name", PRETRAINING)
def test_every_pretraining_config_composes_with_its_strategy_schema(name):
    cfg = composed(PRETRAIN_CONFIGS, name, "preset=cpu_small" if name != "w2v_cmsc_rlm" else "preset=w2v_cpu_small")
    assert cfg.task._name == "ecg_pretraining" and cfg.task.strategy._name in STRATEGY_REGISTRY
    assert cfg.criterion._name and cfg.optimizer._name == "torch_adam" and cfg.model._name
    # a progress bar on a terminal (fairseq logs plain lines when stderr is not one)
    assert cfg.common.log_format == "tqdm" and cfg.dataset.required_batch_size_multiple == 1
    assert OmegaConf.to_container(cfg.checkpoint)["save_dir"] == "checkpoints/${hydra:job.config_name}"
    # relative paths mean the folder the command started in: no run folder, no change of folder
    assert cfg.hydra.run.dir == "." and cfg.hydra.job.chdir is False


def test_strategy_options_are_plain_overrides_and_a_typo_is_an_error():
    cfg = composed(PRETRAIN_CONFIGS, "simclr", "task.strategy.jitter_sigma=0.05", "task.strategy.n_views=3")
    assert cfg.task.strategy.jitter_sigma == 0.05 and cfg.task.strategy.n_views == 3
    assert cfg.task.strategy.jitter_prob == 0.5  # the config's own value over the dataclass default (0)
    with pytest.raises(ConfigCompositionException, match="jitter_sigmaa"):
        composed(PRETRAIN_CONFIGS, "simclr", "task.strategy.jitter_sigmaa=0.05")


def test_presets_share_one_encoder_definition_between_pretraining_and_finetuning():
    for preset, width in (("paper", 64), ("cpu_small", 16)):
        pretrain = composed(PRETRAIN_CONFIGS, "cmsc", f"preset={preset}")
        probe = composed(FINETUNE_CONFIGS, "linear_probe", f"preset={preset}")
        assert pretrain.model == probe.model.encoder and pretrain.model.base_width == width
    w2v = composed(PRETRAIN_CONFIGS, "w2v_cmsc_rlm", "preset=w2v_cpu_small")
    assert w2v.model == composed(FINETUNE_CONFIGS, "finetune", "preset=w2v_cpu_small").model.encoder


def test_downstream_configs_differ_only_in_freezing_and_schedule():
    probe, finetune = composed(FINETUNE_CONFIGS, "linear_probe"), composed(FINETUNE_CONFIGS, "finetune")
    assert probe.model.freeze_encoder and not finetune.model.freeze_encoder
    assert (probe.optimization.max_epoch, list(probe.optimization.lr)) == (10, [0.01])
    assert (finetune.optimization.max_epoch, list(finetune.optimization.lr)) == (50, [1e-4])
    assert probe.task == finetune.task and probe.dataset.required_batch_size_multiple == 1


@pytest.mark.parametrize("override", ["task.leads=[I,II,V2]", "task.leads='I,II,V2'"])
def test_leads_as_a_list_or_a_quoted_string(tiny_dataset, override):
    from fairseq_goodviews.leads import parse_leads
    from fairseq_goodviews.tasks.ecg_classification import EcgClassificationConfig, EcgClassificationTask

    cfg = composed(FINETUNE_CONFIGS, "linear_probe", override)
    assert parse_leads(OmegaConf.to_container(cfg.task)["leads"]) == [0, 1, 7]
    task_cfg = OmegaConf.merge(
        OmegaConf.structured(EcgClassificationConfig),
        {**OmegaConf.to_container(cfg.task), "data": str(tiny_dataset), "seed": 1},
    )
    task = EcgClassificationTask.setup_task(task_cfg)
    task.load_dataset("valid")
    source = task.dataset("valid")[0]["source"]
    source = source.reshape(-1, *source.shape[-2:])
    assert source.shape[1] == 12 and abs(source[:, [0, 1, 7]]).sum() > 0
    assert (source[:, [2, 3, 4, 5, 6, 8, 9, 10, 11]] == 0).all()  # the others zero-filled in their slots


@pytest.mark.parametrize(
    "folder, typo, listed",
    [(PRETRAIN_CONFIGS, "simclrr", "simclr, w2v_cmsc_rlm"), (FINETUNE_CONFIGS, "linear_prob", "linear_probe")],
)
def test_a_misspelled_config_name_lists_the_available_ones(folder, typo, listed, tmp_path):
    exe = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    result = subprocess.run(
        [exe, "--config-dir", str(folder), "--config-name", typo], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fairseq-hydra-train: error: no config '{typo}' in {folder}; available: ")
    assert listed in last and "base" not in last.split("available: ")[1].split(", ")
