#!/usr/bin/env python
"""Prepare PhysioNet/CinC 2021: ``python manifests/physionet2021.py SRC_DIR OUT_DIR [--exclude-subsets chapman_shaoxing,ningbo] ...``.

A thin front end over :mod:`fairseq_goodviews.preprocessing.physionet2021`; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.preprocessing.physionet2021 import main

if __name__ == "__main__":
    sys.exit(main())
