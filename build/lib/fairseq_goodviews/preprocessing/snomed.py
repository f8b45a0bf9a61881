"""PhysioNet/CinC Challenge 2020 phase-1 diagnosis abbreviations -> SNOMED CT codes.

The phase-1 training set of the 2020 Challenge (the CPSC 2018 data, folder ``Training_WFDB``)
writes its diagnoses as abbreviations (``#Dx: AF``, ``#Dx: RBBB,PVC``); the later 2020 release
and the 2021 Challenge write the same records with SNOMED CT codes. :data:`PHASE1_DX_TO_SNOMED`
maps each phase-1 abbreviation to the code those releases use for it, so both forms of a record
get the same labels.

Source: the Challenge's ``dx_mapping_scored.csv`` and ``dx_mapping_unscored.csv``
(physionetchallenges/evaluation-2020, 2021). Their ``CPSC`` column counts exactly the nine CPSC
2018 classes: sinus rhythm 426783006 (918 records), atrial fibrillation 164889003 (1221),
1st degree AV block 270492004 (722), LBBB 164909002 (236), RBBB 59118001 (1857), premature
atrial contraction 284470004 (616), ventricular ectopics 164884008 (700, CPSC's "PVC"),
ST depression 429622005 (869) and ST elevation 164931005 (220).
"""

from __future__ import annotations

from collections.abc import Iterable

PHASE1_DX_TO_SNOMED: dict[str, str] = {
    "normal": "426783006",  # sinus rhythm (SNR)
    "af": "164889003",  # atrial fibrillation
    "i-avb": "270492004",  # 1st degree AV block (IAVB)
    "iavb": "270492004",
    "lbbb": "164909002",  # left bundle branch block
    "rbbb": "59118001",  # right bundle branch block
    "pac": "284470004",  # premature atrial contraction
    "pvc": "164884008",  # ventricular ectopics (the 2020-2021 code of CPSC's PVC records)
    "std": "429622005",  # ST depression
    "ste": "164931005",  # ST elevation
}


def dx_to_snomed(codes: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """Diagnoses as SNOMED CT codes: numeric codes kept, phase-1 abbreviations mapped.

    Returns ``(codes, unknown)``: the codes in their order without repeats, and the entries that
    are neither a numeric code nor a known abbreviation (left out of ``codes``).
    """
    mapped: list[str] = []
    unknown: list[str] = []
    for code in codes:
        text = code.strip()
        if not text:
            continue
        snomed = text if text.isdigit() else PHASE1_DX_TO_SNOMED.get(text.lower())
        if snomed is None:
            unknown.append(text)
        elif snomed not in mapped:
            mapped.append(snomed)
    return tuple(mapped), unknown
