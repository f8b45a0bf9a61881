#!/usr/bin/env python
"""Prepare any folder of WFDB records: ``python manifests/wfdb_dir.py SRC_DIR OUT_DIR [--target-rate 500] ...``.

A thin front end over :mod:`fairseq_goodviews.preprocessing.wfdb_dir`; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.preprocessing.wfdb_dir import main

if __name__ == "__main__":
    sys.exit(main())
