"""One way for every command to run, report an error and exit."""

import argparse
import sys
from collections.abc import Callable, Sequence

from fairseq_goodviews.errors import GoodviewsError


def run_command(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` with ``parser`` and run ``body(args)``; its return value is the exit status (None = 0).

    A :class:`GoodviewsError` or an ``OSError`` (a missing input, an unwritable output, a full
    disk: the message names the file where the system gave one) prints ``<prog>: error: <message>``
    on stderr and returns 2; anything else is a bug and keeps its traceback.
    """
    args = parser.parse_args(argv)
    try:
        status = body(args)
    except GoodviewsError as error:
        return _fail(parser.prog, str(error))
    except OSError as error:
        if error.filename is None:
            return _fail(parser.prog, str(error))
        return _fail(parser.prog, f"{error.filename}: {error.strerror or error}")
    return 0 if status is None else int(status)


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2
