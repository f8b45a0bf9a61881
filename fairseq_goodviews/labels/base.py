"""What every label table shares: its error, the class list its messages show, and the multi-hot coding of
per-record code lists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fairseq_goodviews.errors import GoodviewsError

#: How many class names a message lists before it counts the rest.
LISTED_CLASSES = 10


class LabelSetError(GoodviewsError, ValueError):
    """A label set that cannot be built (missing statement table, unknown task, ...)."""


def listed_classes(classes: Sequence[str], limit: int = LISTED_CLASSES) -> str:
    """The class names for a message: all of them, or the first ``limit`` and how many more."""
    shown = ", ".join(classes[:limit])
    return shown if len(classes) <= limit else f"{shown} and {len(classes) - limit} more"


def multi_hot(code_lists: Sequence[Iterable[str]], code_to_class: Mapping[str, int], n_classes: int) -> np.ndarray:
    """[n, n_classes] float32 multi-hot targets of per-record code lists; unknown codes are ignored."""
    targets = np.zeros((len(code_lists), n_classes), dtype=np.float32)
    for row, codes in enumerate(code_lists):
        for code in codes:
            index = code_to_class.get(str(code).strip())
            if index is not None:
                targets[row, index] = 1.0
    return targets
