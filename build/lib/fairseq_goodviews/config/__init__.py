"""The hydra configs of the project (package data, so they travel with ``pip install``).

``pretraining/`` and ``finetuning/`` are the ``--config-dir`` of ``fairseq-hydra-train``;
``encoder/`` holds the encoder architectures both stages share, put on their search path by the
hydra plugin in ``hydra_plugins/goodviews_configs``.
"""

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent
