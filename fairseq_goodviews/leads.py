"""The canonical 12-lead order and lead-name matching.

Every array in the project stores leads in :data:`CANONICAL_LEADS` order; a record that lacks a
lead keeps a zero row in that lead's slot and ``lead_present[slot] = False``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fairseq_goodviews.errors import GoodviewsError

CANONICAL_LEADS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "aVR",
    "aVL",
    "aVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)
LIMB_LEADS: tuple[str, ...] = CANONICAL_LEADS[:6]
PRECORDIAL_LEADS: tuple[str, ...] = CANONICAL_LEADS[6:]

# Spellings seen in WFDB headers and hospital exports, lower-cased, mapped to canonical names.
_ALIASES = {
    "i": "I",
    "lead i": "I",
    "lead1": "I",
    "d1": "I",
    "di": "I",
    "ii": "II",
    "lead ii": "II",
    "lead2": "II",
    "d2": "II",
    "dii": "II",
    "mlii": "II",
    "iii": "III",
    "lead iii": "III",
    "lead3": "III",
    "d3": "III",
    "diii": "III",
    "avr": "aVR",
    "avl": "aVL",
    "avf": "aVF",
    "v1": "V1",
    "v2": "V2",
    "v3": "V3",
    "v4": "V4",
    "v5": "V5",
    "v6": "V6",
    "c1": "V1",
    "c2": "V2",
    "c3": "V3",
    "c4": "V4",
    "c5": "V5",
    "c6": "V6",
}


class UnknownLeadError(GoodviewsError, ValueError):
    """A lead name that is not one of the 12 standard leads (or a known alias)."""


def canonical_lead_name(name: str) -> str | None:
    """Return the canonical name of ``name`` (case-insensitive, aliases allowed) or None.

    None means the channel is not one of the 12 standard leads (e.g. Frank ``vx``, ``PLETH``).
    """
    key = name.strip().lower()
    return _ALIASES.get(key)


def lead_index(name: str) -> int:
    """Slot of a lead in :data:`CANONICAL_LEADS`; raises :class:`UnknownLeadError`."""
    canonical = canonical_lead_name(name)
    if canonical is None:
        raise UnknownLeadError(f"unknown lead name {name!r}; expected one of {', '.join(CANONICAL_LEADS)}")
    return CANONICAL_LEADS.index(canonical)


def parse_leads(leads: str | Sequence[str] | None) -> list[int]:
    """Turn ``"I,II,V2"`` (or a list of names, or None for all 12) into sorted slot indices."""
    if leads is None:
        return list(range(len(CANONICAL_LEADS)))
    names: Iterable[str] = leads.split(",") if isinstance(leads, str) else leads
    names = [n for n in (s.strip() for s in names) if n]
    if not names:
        raise UnknownLeadError("empty lead list")
    return sorted({lead_index(n) for n in names})


def lead_names(indices: Sequence[int]) -> list[str]:
    """Canonical names of lead slot ``indices``, in the order given."""
    return [CANONICAL_LEADS[i] for i in indices]


def lead_keep_mask(indices: Sequence[int] | None, n_leads: int = len(CANONICAL_LEADS)) -> np.ndarray:
    """bool [n_leads]: True at the slots ``indices`` (None: every slot), the leads a lead subset keeps."""
    if indices is None:
        return np.ones(n_leads, dtype=bool)
    keep = np.zeros(n_leads, dtype=bool)
    keep[list(indices)] = True
    return keep


#: Named lead sets (the PhysioNet/CinC 2021 sets plus lead II alone), by their lead count: the
#: leads a device records, in canonical order.
LEAD_SETS: dict[str, tuple[str, ...]] = {
    "12": CANONICAL_LEADS,
    "6": LIMB_LEADS,
    "4": ("I", "II", "III", "V2"),
    "3": ("I", "II", "V2"),
    "2": ("I", "II"),
    "1": ("II",),
}


def parse_lead_set(text: str) -> tuple[str, ...]:
    """The canonical lead names of a lead set: a name of :data:`LEAD_SETS` (``"6"``) or lead names
    joined by ``+`` (``"I+II+V2"``, any spelling :func:`canonical_lead_name` knows), in canonical
    order; raises :class:`UnknownLeadError` naming ``text``."""
    text = text.strip()
    if text in LEAD_SETS:
        return LEAD_SETS[text]
    try:
        return tuple(lead_names(parse_leads(text.split("+"))))
    except UnknownLeadError as exc:
        raise UnknownLeadError(
            f"lead set {text!r}: {exc} (or a named set: {', '.join(LEAD_SETS)}; join leads with '+')"
        ) from None


def lead_set_label(names: Sequence[str]) -> str:
    """A lead set as tables name it: ``12 leads``, ``6 limb leads``, else its leads joined by ``+``."""
    if tuple(names) == CANONICAL_LEADS:
        return "12 leads"
    if tuple(names) == LIMB_LEADS:
        return "6 limb leads"
    return "+".join(names)
