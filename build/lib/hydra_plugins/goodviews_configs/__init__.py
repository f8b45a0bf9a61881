"""Hydra plugin of fairseq_goodviews: its shared config groups and strategy schemas.

Hydra imports every module under ``hydra_plugins`` when it starts (``fairseq-hydra-train``
included), before it composes a config. This plugin

- appends ``pkg://fairseq_goodviews.config`` to the config search path, so the encoder
  architectures in ``config/encoder/`` serve the pretraining and the fine-tuning configs alike;
- stores every registered strategy's config dataclass as ``strategy/<name>`` in hydra's
  ConfigStore, so that a strategy config selects its schema (``/strategy@task.strategy: simclr``)
  and every documented strategy option is a plain override (``task.strategy.jitter_sigma=0.05``).
"""

import logging
import warnings

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

logger = logging.getLogger(__name__)


class GoodviewsSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        # fairseq-hydra-train stores its schema under the primary config's own name, which hydra
        # validates against and then warns about at every run: the configs are written for it
        # (`_self_` before `base`), so the warning says nothing to a user.
        warnings.filterwarnings(
            "ignore",
            message=r"\s*'[^']*' is validated against ConfigStore schema with the same name",
            category=UserWarning,
        )
        search_path.append(provider="fairseq_goodviews", path="pkg://fairseq_goodviews.config")
        # Hydra loads this plugin for every application in the environment: a broken strategy
        # module must not stop those, so the error is reported here and the strategy configs then
        # fail with "Could not find 'strategy/<name>'".
        try:
            from fairseq_goodviews.strategies import register_strategy_schemas

            register_strategy_schemas()
        except Exception as exc:
            logger.warning("fairseq_goodviews: strategy schemas not registered: %s: %s", type(exc).__name__, exc)
