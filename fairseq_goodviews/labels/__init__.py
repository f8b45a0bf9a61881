"""Downstream label tables and the label-set object built from them.

- :mod:`~fairseq_goodviews.labels.rhythm`: Chapman's four merged rhythm classes;
- :mod:`~fairseq_goodviews.labels.cinc2021`: the 26 scored PhysioNet/CinC 2021 classes;
- :mod:`~fairseq_goodviews.labels.ptbxl`: the PTB-XL statement tasks;
- :mod:`~fairseq_goodviews.labels.label_set`: :class:`LabelSet`, built by :func:`label_set`.

The names the rest of the project imports from here are re-exported below.
"""

from fairseq_goodviews.labels.base import LabelSetError
from fairseq_goodviews.labels.label_set import (
    CINC2021_LABEL_SET,
    MULTI_LABEL_SETS,
    RHYTHM_LABEL_SET,
    LabelSet,
    label_set,
)
from fairseq_goodviews.labels.rhythm import (
    CLASS_NAMES,
    CLASS_PRIORITY,
    RHYTHM_TO_CLASS,
    UnknownRhythmError,
    dominant_rhythm,
    rhythm_class,
)

__all__ = [
    "CINC2021_LABEL_SET",
    "CLASS_NAMES",
    "CLASS_PRIORITY",
    "MULTI_LABEL_SETS",
    "RHYTHM_LABEL_SET",
    "RHYTHM_TO_CLASS",
    "LabelSet",
    "LabelSetError",
    "UnknownRhythmError",
    "dominant_rhythm",
    "label_set",
    "rhythm_class",
]
