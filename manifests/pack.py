#!/usr/bin/env python
"""Pack each split's records into one memory-mapped file: ``python manifests/pack.py MANIFEST_DIR [--splits train,valid,test]``.

Writes ``<split>.packed.npy`` and ``<split>.packed_index.npy`` beside ``<split>.tsv``; training
reads them instead of the ``.mat`` files while they match the manifest. A thin front end over
:mod:`fairseq_goodviews.io.packed`; ``--help`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_goodviews.io.packed import main

if __name__ == "__main__":
    sys.exit(main())
