"""PhysioNet/CinC Challenge 2021 -> per-record ``.mat`` files, splits and manifests.

Layout read: WFDB headers with ``.mat`` signal files (format ``16+24``), searched recursively,
e.g. ``SRC/training/<subset>/g1/A0001.hea``; the 2020 releases (``Training_WFDB/A0001.hea``) and
the reduced-lead forms (``six_leads/E07502.hea``) too. Header comments ``#Age``, ``#Sex`` and
``#Dx`` (SNOMED CT codes; the 2020 phase-1 abbreviations ``AF``, ``RBBB``, ... are mapped to the
same codes, see :mod:`.snomed`) become the ``age``, ``sex`` and ``dx`` (space-separated codes: the
multi-hot label set) columns; diagnoses that are neither go to ``dx_unknown``. ``source`` is the
record's subset: a subset folder under SRC (2020 folder names mapped to the 2021 ones), else the
subset the Challenge's record name says (:func:`subset_of_record`: ``A`` CPSC 2018, ``Q`` CPSC
extra, ``I`` St Petersburg INCART, ``S`` PTB, ``HR`` PTB-XL, ``E`` Georgia, ``JS`` up to 10646
Chapman-Shaoxing and above it Ningbo), else the first folder that is not ``training``,
``validation``, ``test`` or a ``g<N>`` group.

``rhythm`` and ``label``: the Dx codes that correspond to Chapman's rhythm codes
(:data:`SNOMED_RHYTHMS`) are mapped to them, and ``label`` is the merged four-class rhythm
(AFIB/GSVT/SB/SR). A record with codes of several classes gets the first class of
:data:`~fairseq_goodviews.labels.CLASS_PRIORITY` (e.g. sinus bradycardia + sinus arrhythmia -> SB);
a record with none keeps an empty label (it is still written, for pretraining). The record
files' ``label`` vector (what fairseq-signals' classifier reads) is the 26 scored CinC 2021
classes of the Dx codes, as fairseq-signals' own PhysioNet 2021 preprocessing writes it.

``--exclude-subsets chapman_shaoxing,ningbo`` leaves out the subsets that hold the Chapman/Ningbo
data, so that a model pretrained here can be evaluated on Chapman without leakage; excluded
records are listed in ``skipped.csv`` (category ``filtered``). Record ids are unique across the
published subsets; were two to clash, the subset name is prefixed to both.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fairseq_goodviews.io.records import RecordError
from fairseq_goodviews.labels import CINC2021_LABEL_SET, RHYTHM_TO_CLASS, dominant_rhythm
from fairseq_goodviews.preprocessing.items import (
    FILTERED,
    MISSING_FILE,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SourceItem,
)
from fairseq_goodviews.preprocessing.pipeline import prepare
from fairseq_goodviews.preprocessing.wfdb_dir import (
    WfdbConverter,
    age_value,
    converter_config,
    list_records,
)
from fairseq_goodviews.preprocessing.wfdb_reader import read_header_comments

# SNOMED CT code -> Chapman rhythm code (labels.RHYTHM_TO_CLASS gives the merged class).
# Codes and names as in the Challenge's dx_mapping_scored/unscored tables.
SNOMED_RHYTHMS: dict[str, str] = {
    "164889003": "AFIB",  # atrial fibrillation (AF)
    "195080001": "AFIB",  # atrial fibrillation and flutter
    "426749004": "AFIB",  # chronic atrial fibrillation
    "164890007": "AF",  # atrial flutter (AFL; Chapman's "AF" is flutter)
    "426761007": "SVT",  # supraventricular tachycardia (SVT)
    "67198005": "SVT",  # paroxysmal supraventricular tachycardia (PSVT)
    "713422000": "AT",  # atrial tachycardia (ATach)
    "233896004": "AVNRT",  # atrioventricular node reentrant tachycardia
    "251166008": "AVNRT",  # AV node reentrant tachycardia (second code in use)
    "233897008": "AVRT",  # atrioventricular reentrant tachycardia
    "195101003": "SAAWR",  # wandering atrial pacemaker (Chapman: sinus atrium to atrial wandering rhythm)
    "427084000": "ST",  # sinus tachycardia (STach)
    "426177001": "SB",  # sinus bradycardia (SB)
    "426783006": "SR",  # sinus rhythm (SNR)
    "427393009": "SA",  # sinus arrhythmia (SA; Chapman: sinus irregularity)
}

# Subset folder names of the 2021 Challenge, and the 2020 names that mean the same data.
SUBSETS: tuple[str, ...] = (
    "chapman_shaoxing",
    "cpsc_2018",
    "cpsc_2018_extra",
    "georgia",
    "ningbo",
    "ptb",
    "ptb-xl",
    "st_petersburg_incart",
)
_SUBSET_ALIASES: dict[str, str] = {
    "wfdb_chapmanshaoxing": "chapman_shaoxing",
    "wfdb_cpsc2018": "cpsc_2018",
    "wfdb_cpsc2018_2": "cpsc_2018_extra",
    "wfdb_ga": "georgia",
    "wfdb_ningbo": "ningbo",
    "wfdb_ptb": "ptb",
    "wfdb_ptbxl": "ptb-xl",
    "wfdb_stpetersburg": "st_petersburg_incart",
}
_GENERIC_FOLDERS = {"training", "validation", "test", "data", "wfdb"}
# Record names of the Challenge data and the subset each prefix belongs to.
_RECORD_NAME = re.compile(r"^(?P<prefix>A|Q|I|S|E|HR|JS)(?P<number>\d{4,5})$")
_PREFIX_SUBSETS: dict[str, str] = {
    "A": "cpsc_2018",
    "Q": "cpsc_2018_extra",
    "I": "st_petersburg_incart",
    "S": "ptb",
    "HR": "ptb-xl",
    "E": "georgia",
}
_LAST_CHAPMAN_RECORD = 10646  # JS00001-JS10646 Chapman-Shaoxing, JS10647-JS45551 Ningbo


def subset_of_record(name: str) -> str:
    """The subset a Challenge record name belongs to (``E00271`` -> georgia), or "" if not one."""
    match = _RECORD_NAME.match(name)
    if match is None:
        return ""
    if match["prefix"] == "JS":
        return "chapman_shaoxing" if int(match["number"]) <= _LAST_CHAPMAN_RECORD else "ningbo"
    return _PREFIX_SUBSETS[match["prefix"]]


def subset_of(record: Path, root: Path) -> str:
    """The Challenge subset a record belongs to, from its folders under ``root`` ("" if none)."""
    folders = record.relative_to(root).parts[:-1]
    for folder in folders:
        name = _SUBSET_ALIASES.get(folder.lower(), folder.lower())
        if name in SUBSETS:
            return name
    from_name = subset_of_record(record.name)
    if from_name:
        return from_name
    for folder in folders:
        lowered = folder.lower()
        if lowered not in _GENERIC_FOLDERS and not (lowered[:1] == "g" and lowered[1:].isdigit()):
            return lowered
    return ""


def rhythm_from_dx(codes: Iterable[str]) -> tuple[str, str]:
    """``(rhythm, label)`` from SNOMED codes: Chapman rhythm code and merged class, or ``("", "")``."""
    rhythm = dominant_rhythm(SNOMED_RHYTHMS[c] for c in codes if c in SNOMED_RHYTHMS)
    return (rhythm, RHYTHM_TO_CLASS[rhythm]) if rhythm else ("", "")


def parse_subsets(text: str | None) -> list[str]:
    """``"chapman_shaoxing,ningbo"`` -> names (2020 aliases accepted); unknown names are an error."""
    names = [raw.strip().lower() for raw in (text or "").split(",") if raw.strip()]
    return [_SUBSET_ALIASES.get(name, name) for name in names]


def physionet2021_items(
    src_dir: str | Path,
    *,
    exclude_subsets: Sequence[str] = (),
) -> tuple[list[SourceItem], list[Skipped], dict[str, Any]]:
    """List the records under ``src_dir``; return (items, rejected up front, facts for the report).

    Raises :class:`PrepareError` for a folder without records or an ``exclude_subsets`` name that
    is neither a Challenge subset nor a subset found under ``src_dir`` (a typo there would leak).
    """
    src_dir = Path(src_dir)
    records = list_records(src_dir)
    subsets = [subset_of(r, src_dir) for r in records]
    unknown = sorted(set(exclude_subsets) - set(SUBSETS) - set(subsets))
    if unknown:
        raise PrepareError(
            f"--exclude-subsets: unknown subset(s) {', '.join(unknown)}; Challenge subsets: "
            f"{', '.join(SUBSETS)}; found under {src_dir}: {', '.join(sorted(set(subsets) - {''})) or 'none'}"
        )
    clashes = {name for name, n in Counter(r.name for r in records).items() if n > 1}
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    excluded = set(exclude_subsets)
    for record, subset in zip(records, subsets, strict=True):
        key = f"{subset}_{record.name}" if record.name in clashes and subset else record.name
        file = str(record) + ".hea"
        if subset in excluded:
            skipped.append(Skipped(key, file, f"subset {subset} excluded (--exclude-subsets)", FILTERED))
            continue
        try:
            info = read_header_comments(record)
        except (RecordError, OSError) as exc:
            skipped.append(Skipped(key, file, str(exc), MISSING_FILE))
            continue
        rhythm, label = rhythm_from_dx(info.dx)
        meta = {
            "age": age_value(info.age),
            "sex": info.sex,
            "dx": " ".join(info.dx),
            "rhythm": rhythm,
            "label": label,
            "source": subset,
            "record_name": record.name,
        }
        if info.dx_unknown:
            meta["dx_unknown"] = " ".join(info.dx_unknown)
        items.append(SourceItem(key=key, patient_id=key, meta=meta, source=record))
    facts = {
        "headers": len(records),
        "excluded_subsets": sorted(excluded),
        "subsets": {s: subsets.count(s) for s in sorted(set(subsets))},
    }
    return items, skipped, facts


def prepare_physionet2021(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    exclude_subsets: Sequence[str] = (),
    converter: WfdbConverter | None = None,
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a PhysioNet/CinC 2021 folder into ``out_dir`` (see :func:`~.pipeline.prepare`)."""
    converter = converter or WfdbConverter()
    items, skipped, facts = physionet2021_items(src_dir, exclude_subsets=exclude_subsets)
    config = {"src_dir": str(Path(src_dir).resolve()), **converter_config(converter), **facts}
    return prepare(
        items,
        converter,
        out_dir,
        options=options,
        skipped=skipped,
        source="physionet2021",
        config=config,
        labels=CINC2021_LABEL_SET,
    )
