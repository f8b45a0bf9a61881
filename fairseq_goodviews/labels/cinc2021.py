"""The PhysioNet/CinC Challenge 2021 classes.

Carried over from the Challenge's published evaluation tables (repository
``physionetchallenges/evaluation-2021``: ``dx_mapping_scored.csv`` and the final 26-class
``weights.csv``; Reyna et al., "Will Two Do? Varying Dimensions in Electrocardiography: the
PhysioNet/Computing in Cardiology Challenge 2021", CinC 2021): 30 scored SNOMED CT codes, four
pairs of which are scored as one diagnosis (CLBBB|LBBB, CRBBB|RBBB, PAC|SVPB, PVC|VPB), so 26
classes, in the order of ``weights.csv``; the normal class is sinus rhythm 426783006. The
challenge score over these classes is :mod:`fairseq_goodviews.scoring.cinc2021`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairseq_goodviews.labels.base import multi_hot

#: (abbreviation, SNOMED CT codes scored as that class) in the order of the official weights.csv.
CINC2021_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AF", ("164889003",)),
    ("AFL", ("164890007",)),
    ("BBB", ("6374002",)),
    ("Brady", ("426627000",)),
    ("CLBBB|LBBB", ("733534002", "164909002")),
    ("CRBBB|RBBB", ("713427006", "59118001")),
    ("IAVB", ("270492004",)),
    ("IRBBB", ("713426002",)),
    ("LAD", ("39732003",)),
    ("LAnFB", ("445118002",)),
    ("LPR", ("164947007",)),
    ("LQRSV", ("251146004",)),
    ("LQT", ("111975006",)),
    ("NSIVCB", ("698252002",)),
    ("NSR", ("426783006",)),
    ("PAC|SVPB", ("284470004", "63593006")),
    ("PR", ("10370003",)),
    ("PRWP", ("365413008",)),
    ("PVC|VPB", ("427172004", "17338001")),
    ("QAb", ("164917005",)),
    ("RAD", ("47665007",)),
    ("SA", ("427393009",)),
    ("SB", ("426177001",)),
    ("STach", ("427084000",)),
    ("TAb", ("164934002",)),
    ("TInv", ("59931005",)),
)
CINC2021_CLASS_NAMES: tuple[str, ...] = tuple(name for name, _ in CINC2021_CLASSES)
#: SNOMED CT code -> class index (both codes of an equivalent pair map to the same class).
CINC2021_CODE_TO_CLASS: dict[str, int] = {
    code: index for index, (_, codes) in enumerate(CINC2021_CLASSES) for code in codes
}
NORMAL_CODE = "426783006"
NORMAL_CLASS = CINC2021_CODE_TO_CLASS[NORMAL_CODE]


def cinc2021_multi_hot(codes: Sequence[str]) -> np.ndarray:
    """Multi-hot [26] float32 target of a record's SNOMED CT codes (unscored codes are ignored)."""
    return multi_hot([codes], CINC2021_CODE_TO_CLASS, len(CINC2021_CLASSES))[0]
