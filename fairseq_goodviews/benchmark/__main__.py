"""``python -m fairseq_goodviews.benchmark``: the same as ``goodviews-benchmark``."""
import sys

from fairseq_goodviews.benchmark.runner import main

sys.exit(main())
