#!/usr/bin/env python
"""Prepare Chapman/Shaoxing: ``python manifests/chapman.py SRC_DIR OUT_DIR [--min-age 18] ...``.

A thin front end over :mod:`fairseq_goodviews.preprocessing.chapman`; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.preprocessing.chapman import main

if __name__ == "__main__":
    sys.exit(main())
