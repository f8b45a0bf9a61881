"""The root of every error the project raises on purpose.

Each such error says, in one line, which file or option is wrong and what is wrong with it. The
commands (:mod:`fairseq_goodviews.cli`) print it as ``goodviews-<command>: error: <message>`` and
exit with status 2; library callers catch :class:`GoodviewsError` (or the built-in base each
subclass also has, such as ``ValueError``).
"""


class GoodviewsError(Exception):
    """An error in the user's input, files or configuration, with a one-line message naming it."""
