"""Compose a run's config in-process, as ``fairseq-hydra-train`` would, without starting a run."""

import copy
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from fairseq_goodviews.errors import GoodviewsError


class ConfigCompositionError(GoodviewsError, RuntimeError):
    """A config that hydra cannot compose; the message names the yaml and the missing piece."""


#: Settings whose override no composition depends on (no config group choice or default reads
#: them), with their types: composed without them and set afterwards, so that runs that differ in
#: them alone (the seeds of a benchmark) share one composition.
VALUE_ONLY_SETTINGS = {"common.seed": int}


def compose(config_root: Path, stage: str, name: str, overrides: Sequence[str] = ()) -> Any:
    """The config ``fairseq-hydra-train --config-dir ROOT/STAGE --config-name NAME`` would compose
    (a copy: composing is slow, so each distinct request is composed once per process)."""
    values, rest = {}, []
    for override in overrides:
        key, equals, value = override.partition("=")
        if equals and key in VALUE_ONLY_SETTINGS:
            values[key] = VALUE_ONLY_SETTINGS[key](value)
        else:
            rest.append(override)
    cfg = copy.deepcopy(_compose(Path(config_root), stage, name, tuple(rest)))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


@functools.lru_cache(maxsize=256)
def _compose(config_root: Path, stage: str, name: str, overrides: tuple[str, ...]) -> Any:
    """The yaml's composition alone: a structured config stored under the same name (fairseq's
    ``hydra_init`` stores its whole schema so when it trains in this process) is set aside while
    composing, so the result does not depend on what ran in the process before."""
    GlobalHydra.instance().clear()
    repo = ConfigStore.instance().repo
    schema = repo.pop(f"{name}.yaml", None)
    try:
        with initialize_config_dir(config_dir=str(config_root / stage), version_base="1.1"):
            return hydra_compose(config_name=name, overrides=["task.data=/unused", *overrides])
    except Exception as exc:  # hydra's composition errors name the missing piece: keep its first line
        raise ConfigCompositionError(f"{config_root / stage / name}.yaml: {str(exc).splitlines()[0]}") from None
    finally:
        GlobalHydra.instance().clear()
        if schema is not None:
            repo[f"{name}.yaml"] = schema
