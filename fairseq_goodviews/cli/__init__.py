"""The command-line edge: one module per ``goodviews-*`` command, each with ``main(argv) -> int``.

Library modules below expose functions; only this package parses arguments, prints and exits.
Every command runs through :func:`fairseq_goodviews.cli.runner.run_command`, which turns a
:class:`~fairseq_goodviews.errors.GoodviewsError` into ``goodviews-<command>: error: ...`` and
exit status 2. ``python -m fairseq_goodviews.cli.<module>`` is the same command.
"""
