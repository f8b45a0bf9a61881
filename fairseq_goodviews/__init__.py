"""fairseq_goodviews: a fairseq plugin for contrastive ECG pretraining with many positive-pair views.

fairseq loads it with ``common.user_dir=/path/to/fairseq_goodviews``; fairseq is imported by
then, and importing the package registers its tasks, criterions and models. Code that imports
the package without fairseq (the preprocessing command-line tools and their worker processes)
does not pay for importing fairseq; call :func:`register_plugins` to register explicitly.
"""

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
    """Register the tasks, criterions, models and optimisers with fairseq (idempotent), and make fairseq's
    checkpoint copies atomic (:mod:`fairseq_goodviews.checkpoint_copies`)."""
    # Here, not at the top: the plugins import fairseq, which the preprocessing commands and their
    # worker processes never need (importing the package must stay cheap for them).
    from fairseq_goodviews import criterions, models, optim, tasks  # noqa: F401
    from fairseq_goodviews.checkpoint_copies import make_checkpoint_copies_atomic

    make_checkpoint_copies_atomic()


if sys.modules.get("fairseq") is not None:
    register_plugins()
