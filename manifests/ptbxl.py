#!/usr/bin/env python
"""Prepare PTB-XL: ``python manifests/ptbxl.py SRC_DIR OUT_DIR [--segment-seconds 5] ...``.

A thin front end over :mod:`fairseq_goodviews.preprocessing.ptbxl`; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.preprocessing.ptbxl import main

if __name__ == "__main__":
    sys.exit(main())
