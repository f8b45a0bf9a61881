"""The hydra configs as fairseq-hydra-train composes them: groups shared once, options as plain overrides."""
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
    assert cfg.criterion._name and cfg.optimizer._name == "adam" and cfg.model._name
    assert cfg.common.log_format == "simple" and cfg.dataset.required_batch_size_multiple == 1
    assert OmegaConf.to_container(cfg.checkpoint)["save_dir"] == "checkpoints/${hydra:job.config_name}"
    assert cfg.hydra.run.dir == "."  # relative paths mean the folder the command started in


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
