"""fairseq_goodviews: a fairseq plugin for contrastive ECG pretraining with many positive-pair views.

Importing the package after fairseq registers its tasks, criterions and models: under
``fairseq-hydra-train`` the package's hydra plugin (``hydra_plugins/goodviews_configs``) imports
it, so no ``common.user_dir`` is needed (fairseq's own ``common.user_dir=/path/to/fairseq_goodviews``
still works). Code that imports the package without fairseq (the preprocessing command-line tools
and their worker processes) does not pay for importing fairseq; call :func:`register_plugins` to
register explicitly.
"""

import functools
import logging
import sys

__version__ = "0.1.0"

# fairseq's import logs a tensorboardX hint that says nothing to this plugin's users.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)


def quiet_fairseq_logging() -> None:
    """Import fairseq now, and keep its logging set-up from flooding a command's output.

    Importing fairseq configures the root logger at DEBUG (hydra's and matplotlib's debug lines
    would then fill the output of in-process config composition, scoring and plots) and logs a
    tensorboardX hint (silenced when this package is imported): the root logger is set back to WARNING.
    """
    import fairseq  # noqa: F401

    logging.getLogger().setLevel(logging.WARNING)


def register_plugins() -> None:
    """Register the tasks, criterions, models and optimisers with fairseq (idempotent), make fairseq's
    checkpoint copies atomic (:mod:`fairseq_goodviews.checkpoint_copies`), and keep fairseq's trainer
    from taking absent parameters for shared ones (:func:`catalog_present_shared_params`)."""
    # Here, not at the top: the plugins import fairseq, which the preprocessing commands and their
    # worker processes never need (importing the package must stay cheap for them).
    from fairseq import trainer

    from fairseq_goodviews import criterions, models, optim, tasks  # noqa: F401
    from fairseq_goodviews.checkpoint_copies import make_checkpoint_copies_atomic

    make_checkpoint_copies_atomic()
    if trainer._catalog_shared_params is not catalog_present_shared_params:
        catalog_present_shared_params.fairseq_catalog = trainer._catalog_shared_params
        trainer._catalog_shared_params = catalog_present_shared_params


def catalog_present_shared_params(module, memo=None, prefix: str = "") -> list[list[str]] | None:
    """fairseq's catalogue of a model's shared parameters (groups of dotted names, one tensor each),
    without the absent ones.

    fairseq groups parameters by identity, and every absent parameter (the ``bias=None`` of a
    bias-free convolution) is the same ``None``: it would log each one as ``detected shared
    parameter`` and tie it to the first. fairseq's catalogue calls itself for the submodules
    (then ``memo`` is given and nothing is returned); the whole model's groups are filtered here.
    """
    groups = catalog_present_shared_params.fairseq_catalog(module, memo, prefix)
    if groups is None:
        return None
    return [names for names in groups if functools.reduce(getattr, names[0].split("."), module) is not None]


if sys.modules.get("fairseq") is not None:
    register_plugins()
