"""Checkpoint copies that a killed run cannot leave half-written.

fairseq writes a checkpoint atomically (a ``.tmp`` file renamed over the target) and then
*copies* it to the other names of the same save (``checkpoint_best.pt``, ``checkpoint_last.pt``)
with a plain file copy. A run killed during that copy (a SLURM preemption, a time limit) leaves a
truncated ``checkpoint_last.pt``, and the same command, meant to resume, then fails on it. With
this plugin loaded, a local copy is written beside its target and renamed over it
(:func:`fairseq_goodviews.io.atomic.atomic_path`): a reader sees the old file or the new one,
never a part.
"""

from __future__ import annotations

import shutil
from typing import Callable

from fairseq_goodviews.io.atomic import atomic_path

_PATCHED = "_goodviews_atomic_copy"


def atomic_copy(src_path: str, dst_path: str) -> str:
    """Copy ``src_path`` to ``dst_path`` through a temporary file in the same folder; returns ``dst_path``."""
    with atomic_path(dst_path) as tmp:
        shutil.copyfile(src_path, tmp)
    return dst_path


def make_checkpoint_copies_atomic() -> None:
    """Route fairseq's ``PathManager.copy`` of local files through :func:`atomic_copy` (idempotent).

    Remote paths (``scheme://``, handled by iopath) keep fairseq's own copy; a local copy replaces
    its target, as fairseq's own local copy does whatever ``overwrite`` says.
    """
    from fairseq.file_io import PathManager  # here: only a process that registers the plugins imports fairseq

    original: Callable = PathManager.copy
    if getattr(original, _PATCHED, False):
        return

    def copy(src_path: str, dst_path: str, overwrite: bool = False):
        if "://" in str(src_path) or "://" in str(dst_path):
            return original(src_path, dst_path, overwrite)
        return atomic_copy(src_path, dst_path)

    setattr(copy, _PATCHED, True)
    PathManager.copy = staticmethod(copy)
