"""Every module in this folder but ``base`` and ``augment`` (the view transforms) registers one
positive-pair strategy; importing the package loads them all.

Strategies outside the package register the same way from any installed distribution that names
their module in the ``fairseq_goodviews.strategies`` entry-point group, e.g. in its pyproject.toml::

    [project.entry-points."fairseq_goodviews.strategies"]
    my_view = "my_package.my_view"
"""

import importlib
import pkgutil
from importlib.metadata import entry_points

from fairseq_goodviews.strategies.base import (  # noqa: F401
    STRATEGY_REGISTRY,
    PositiveStrategy,
    StrategyConfig,
    View,
    build_strategy,
    register_strategy,
    register_strategy_schemas,
    strategy_config,
)

#: The entry-point group of strategy modules from other distributions.
ENTRY_POINT_GROUP = "fairseq_goodviews.strategies"

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "augment"):
        importlib.import_module(f"{__name__}.{_module.name}")

for _entry in entry_points(group=ENTRY_POINT_GROUP):
    try:
        _entry.load()
    except Exception as exc:  # name the plugin: its own traceback would not say where it was declared
        raise ImportError(f"strategy plugin {_entry.name!r} ({_entry.value}) failed to load: {exc}") from exc
