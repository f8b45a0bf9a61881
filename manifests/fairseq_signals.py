#!/usr/bin/env python
"""Import a fairseq-signals manifest folder: ``python manifests/fairseq_signals.py SRC_DIR OUT_DIR [--label-names FILE] ...``.

A thin front end over :mod:`fairseq_goodviews.preprocessing.fairseq_signals`; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.preprocessing.fairseq_signals import main

if __name__ == "__main__":
    sys.exit(main())
