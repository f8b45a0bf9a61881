"""What every ``fairseq-hydra-train`` run imports, imported once by the fork server of
:mod:`~fairseq_goodviews.table1.preloaded` (importing this module does it, quietly)."""

import warnings

from fairseq_goodviews import quiet_fairseq_logging, register_plugins

quiet_fairseq_logging()
with warnings.catch_warnings():
    # Defining fairseq's entry point makes hydra warn that it names no config version.
    warnings.filterwarnings("ignore", message=r"\s*The version_base parameter is not specified")
    import fairseq_cli.hydra_train  # noqa: F401
import torch._dynamo  # noqa: F401, E402  (torch.optim's optimisers import it when first built)

register_plugins()
