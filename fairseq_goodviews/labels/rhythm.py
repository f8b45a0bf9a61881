"""Chapman's four merged rhythm classes (Zheng et al. 2020) and the rhythm codes behind them."""

from __future__ import annotations

from collections.abc import Iterable

from fairseq_goodviews.errors import GoodviewsError

CLASS_NAMES: tuple[str, ...] = ("AFIB", "GSVT", "SB", "SR")

# Chapman's 11 rhythm codes -> merged class. ``SA`` is sinus irregularity (the paper's table
# says ``SI``, which never occurs in Diagnostics.xlsx; it is accepted as an alias).
RHYTHM_TO_CLASS: dict[str, str] = {
    "AFIB": "AFIB",
    "AF": "AFIB",
    "SVT": "GSVT",
    "AT": "GSVT",
    "SAAWR": "GSVT",
    "ST": "GSVT",
    "AVNRT": "GSVT",
    "AVRT": "GSVT",
    "SB": "SB",
    "SR": "SR",
    "SA": "SR",
    "SI": "SR",
}


class UnknownRhythmError(GoodviewsError, ValueError):
    """A rhythm code outside the Chapman vocabulary."""


def rhythm_class(rhythm: str) -> str:
    """Merged class of a Chapman rhythm code; raises :class:`UnknownRhythmError`."""
    code = str(rhythm).strip().upper()
    if code not in RHYTHM_TO_CLASS:
        raise UnknownRhythmError(f"unknown rhythm code {rhythm!r}; known codes: {', '.join(sorted(RHYTHM_TO_CLASS))}")
    return RHYTHM_TO_CLASS[code]


# Where one record carries rhythm codes of several classes (PhysioNet 2021, PTB-XL), the first
# class in this order wins: a specific abnormal rhythm over the sinus rhythm often co-annotated.
CLASS_PRIORITY: tuple[str, ...] = ("AFIB", "GSVT", "SB", "SR")


def dominant_rhythm(rhythms: Iterable[str]) -> str | None:
    """The Chapman rhythm code among ``rhythms`` whose class ranks first in :data:`CLASS_PRIORITY`.

    Unknown codes are ignored; None when no code maps to a class. Ties within a class keep the
    first code given.
    """
    best: str | None = None
    for rhythm in rhythms:
        code = str(rhythm).strip().upper()
        if code not in RHYTHM_TO_CLASS:
            continue
        if best is None or CLASS_PRIORITY.index(RHYTHM_TO_CLASS[code]) < CLASS_PRIORITY.index(RHYTHM_TO_CLASS[best]):
            best = code
    return best
