#!/usr/bin/env python
"""Write a synthetic Chapman database: ``python manifests/synthetic.py OUT_DIR --records N --seed S``.

Options: ``--from-diagnostics PATH`` (one waveform per row of an existing Diagnostics.xlsx, rows
kept), ``--workers K``, ``--header``. A thin front end over
:mod:`fairseq_goodviews.synthetic.chapman`; ``--help`` lists the options.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.synthetic.chapman import main

if __name__ == "__main__":
    sys.exit(main())
