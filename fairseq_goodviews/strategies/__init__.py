"""Every module in this folder registers one positive-pair strategy; importing the package loads them all."""
import importlib
import pkgutil

from fairseq_goodviews.strategies.base import (  # noqa: F401
    STRATEGY_REGISTRY,
    PositiveStrategy,
    StrategyConfig,
    View,
    build_strategy,
    register_strategy_schemas,
    register_strategy,
    strategy_config,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
