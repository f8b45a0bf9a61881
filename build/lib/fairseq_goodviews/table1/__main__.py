"""``python -m fairseq_goodviews.table1``: the same as ``goodviews-benchmark``."""

import sys

from fairseq_goodviews.table1.cli import main

sys.exit(main())
