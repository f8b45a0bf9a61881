"""Hydra plugin of fairseq_goodviews: its shared config groups and strategy schemas.

Hydra imports every module under ``hydra_plugins`` when it starts (``fairseq-hydra-train``
included), before it composes a config. This plugin

- imports ``fairseq_goodviews`` (for its strategies), which registers the package's tasks,
  criterions and models with fairseq once fairseq is imported: training needs no
  ``common.user_dir``;
- appends ``pkg://fairseq_goodviews.config`` to the config search path, so the encoder
  architectures in ``config/encoder/`` serve the pretraining and the fine-tuning configs alike;
- stores every registered strategy's config dataclass as ``strategy/<name>`` in hydra's
  ConfigStore, so that a strategy config selects its schema (``/strategy@task.strategy: simclr``)
  and every documented strategy option is a plain override (``task.strategy.jitter_sigma=0.05``);
- leaves out the warnings and debug lines that say nothing to a user of the configs;
- stops ``fairseq-hydra-train`` with one line listing the available configs when
  ``--config-name`` names none of this plugin's config folder (fairseq would otherwise compose its
  bare schema under that name and fail on an unrelated key).
"""

import logging
import sys
import warnings
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

logger = logging.getLogger(__name__)


def _is_goodviews_config_dir(folder: Path) -> bool:
    """A folder of this plugin's primary configs (pretraining/ or finetuning/, or a copy of one)."""
    return (folder / "base.yaml").is_file() and (folder / "preset").is_dir() and (folder / "schedule").is_dir()


def check_config_name(argv: list[str]) -> None:
    """Exit with one line naming the available configs if ``argv`` asks fairseq-hydra-train for a
    config that this plugin's ``--config-dir`` does not hold."""
    if not argv or not Path(argv[0]).name.startswith("fairseq-hydra-train"):
        return
    try:
        from hydra._internal.utils import get_args

        args = get_args(argv[1:])
    except (SystemExit, Exception):  # hydra reports its own argument errors
        return
    if not args.config_dir or not args.config_name:
        return
    folder = Path(args.config_dir).expanduser()
    if not _is_goodviews_config_dir(folder):
        return
    name = args.config_name.removesuffix(".yaml")
    if (folder / f"{name}.yaml").is_file():
        return
    available = sorted(p.stem for p in folder.glob("*.yaml") if p.stem != "base")
    sys.stderr.write(
        f"fairseq-hydra-train: error: no config {name!r} in {args.config_dir}; available: {', '.join(available)}\n"
    )
    sys.exit(2)


class GoodviewsSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        check_config_name(sys.argv)
        # fairseq-hydra-train stores its schema under the primary config's own name, which hydra
        # validates against and then warns about at every run: the configs are written for it
        # (`_self_` before `base`), so the warning says nothing to a user.
        warnings.filterwarnings(
            "ignore",
            message=r"\s*'[^']*' is validated against ConfigStore schema with the same name",
            category=UserWarning,
        )
        # A module of fairseq sets the root logger to DEBUG when fairseq is imported, which would
        # open every training run with hydra's own debug lines.
        if "fairseq" in sys.modules and logging.getLogger().level == logging.DEBUG:
            logging.getLogger().setLevel(logging.INFO)
        # The data loader's page-locked memory only matters with a GPU; fairseq asks for it everywhere.
        warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator is found")
        search_path.append(provider="fairseq_goodviews", path="pkg://fairseq_goodviews.config")
        # Hydra loads this plugin for every application in the environment: a broken strategy
        # module must not stop those, so the error is reported here and the strategy configs then
        # fail with "Could not find 'strategy/<name>'".
        try:
            from fairseq_goodviews.strategies import register_strategy_schemas

            register_strategy_schemas()
        except Exception as exc:
            logger.warning("fairseq_goodviews: strategy schemas not registered: %s: %s", type(exc).__name__, exc)
