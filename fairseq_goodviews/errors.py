"""The root of every error the project raises on purpose.

Each such error says, in one line, which file or option is wrong and what is wrong with it. The
commands (:mod:`fairseq_goodviews.cli`) print it as ``goodviews-<command>: error: <message>`` and
exit with status 2; library callers catch :class:`GoodviewsError` (or the built-in base each
subclass also has, such as ``ValueError``). Under ``fairseq-hydra-train`` hydra prints it alone,
one line without a traceback: :class:`GoodviewsError` is a
:class:`hydra.errors.CompactHydraException` (``HYDRA_FULL_ERROR=1`` shows the traceback).
"""

from pathlib import Path

from hydra.errors import CompactHydraException


class GoodviewsError(CompactHydraException):
    """An error in the user's input, files or configuration, with a one-line message naming it."""


def relative_path_note(path: str | Path) -> str:
    """`` (relative paths mean the folder you started in: <cwd>)`` for a relative ``path``, else ``""``:
    the end of a message about a path that does not exist."""
    if Path(path).is_absolute():
        return ""
    return f" (relative paths mean the folder you started in: {Path.cwd()})"
