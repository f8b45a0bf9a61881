"""goodviews-train: fairseq's hydra training on one of the package's configs, from any folder.

``goodviews-train pretraining/simclr task.data=data/chapman preset=cpu_small`` is
``fairseq-hydra-train --config-dir <package>/config/pretraining --config-name simclr ...``: the
same hydra composition and training loop (``fairseq_cli.hydra_train``), with the configs found in
the installed package (they are package data) instead of a path into a clone. Relative paths in
the overrides mean the folder the command starts in, and the run's checkpoints and log go to
``checkpoints/<config name>/`` there unless ``checkpoint.save_dir`` says otherwise.
"""

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from fairseq_goodviews import register_plugins
from fairseq_goodviews.cli.runner import run_command
from fairseq_goodviews.config import CONFIG_ROOT
from fairseq_goodviews.errors import GoodviewsError

#: The folders of primary configs under ``config/`` (the other folders hold config groups).
STAGES = ("pretraining", "finetuning")

# The processes fairseq spawns for several GPUs on one machine run this module as their main
# script and start in fairseq's training function, never in main(): registering on import is
# what gives them the plugin's tasks, criterions and models (no common.user_dir).
register_plugins()


class UnknownConfigError(GoodviewsError, ValueError):
    """A config name that is none of the package's configs; the message lists them."""


def available_configs() -> list[str]:
    """Every config ``goodviews-train`` runs, as ``stage/name`` (``pretraining/simclr``, ...)."""
    return [
        f"{stage}/{path.stem}"
        for stage in STAGES
        for path in sorted((CONFIG_ROOT / stage).glob("*.yaml"))
        if path.stem != "base"
    ]


def config_location(name: str) -> tuple[Path, str]:
    """The ``--config-dir`` and ``--config-name`` of ``stage/name`` (``.yaml`` may end it)."""
    stage, _, config = name.removesuffix(".yaml").partition("/")
    if f"{stage}/{config}" not in available_configs():
        raise UnknownConfigError(f"no config {name!r}; available: {', '.join(available_configs())}")
    return CONFIG_ROOT / stage, config


def hydra_train(config_dir: Path, config_name: str, overrides: Sequence[str]) -> None:
    """Run ``fairseq_cli.hydra_train`` as ``fairseq-hydra-train --config-dir ... --config-name ...``
    would, in this process (hydra reads its arguments from ``sys.argv``)."""
    argv = sys.argv
    sys.argv = [argv[0], "--config-dir", str(config_dir), "--config-name", config_name, *overrides]
    try:
        with warnings.catch_warnings():
            # Imported here, under this filter: defining fairseq's entry point makes hydra warn
            # that it names no config version, which no user can act on.
            warnings.filterwarnings("ignore", message=r"\s*The version_base parameter is not specified")
            from fairseq_cli import hydra_train as fairseq_hydra_train
        fairseq_hydra_train.cli_main()
    finally:
        sys.argv = argv


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="goodviews-train",
        description="Train with one of the package's hydra configs through fairseq's hydra training, from any "
        "folder: relative paths mean the folder the command starts in, and checkpoints go to "
        "checkpoints/<config name>/ there (checkpoint.save_dir=... to choose).",
        epilog="configs: "
        + ", ".join(available_configs())
        + ". Example: goodviews-train pretraining/simclr task.data=data/chapman preset=cpu_small",
    )
    parser.add_argument(
        "config", nargs="?", help="the config, as stage/name (pretraining/simclr, finetuning/linear_probe)"
    )
    parser.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        help="hydra overrides (task.data=DIR preset=cpu_small model.model_path=CKPT ...) and hydra's own options",
    )
    parser.add_argument(
        "--config-dir",
        choices=STAGES,
        dest="print_config_dir",
        help="print the folder of a stage's configs and exit, for fairseq-hydra-train --config-dir "
        "$(goodviews-train --config-dir pretraining) --config-name simclr ...",
    )

    def train(args: argparse.Namespace) -> None:
        if args.print_config_dir:
            print(CONFIG_ROOT / args.print_config_dir)
            return
        if args.config is None:
            raise UnknownConfigError(f"name a config; available: {', '.join(available_configs())}")
        config_dir, config_name = config_location(args.config)
        hydra_train(config_dir, config_name, args.overrides)

    return run_command(parser, train, argv)


if __name__ == "__main__":
    sys.exit(main())
