"""fairseq_goodviews: a fairseq plugin for contrastive ECG pretraining with many positive-pair views.

Loaded by fairseq through ``common.user_dir=/path/to/fairseq_goodviews``; importing the package
registers its tasks, criterions and models. The preprocessing and I/O modules do not need fairseq.
"""
__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ImportError:  # preprocessing-only installs work without fairseq
    pass
else:
    from fairseq_goodviews import criterions, models, tasks  # noqa: F401
