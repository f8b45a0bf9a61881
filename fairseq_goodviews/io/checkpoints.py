"""Checkpoint files read safely, with a one-line error for a file that is not one.

Every ``.pt`` file the package reads goes through :func:`read_torch_file`: torch's safe
``weights_only`` loader (numpy scalars allowed, which fairseq's meters may save), with its failures
turned into :class:`CheckpointError` naming the file and what it holds instead (an empty,
truncated or damaged file, another kind of file, a Python object the safe loader refuses). The
message never suggests loading unsafely. :func:`read_checkpoint` adds what a fairseq checkpoint
of this project must hold: the model weights (``model``) and the run's config (``cfg``).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from fairseq_goodviews.errors import GoodviewsError, relative_path_note

try:
    from numpy._core.multiarray import scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import scalar

#: The first bytes of a zip archive, the container of every PyTorch file since PyTorch 1.6.
ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(GoodviewsError, ValueError):
    """A checkpoint file that cannot be read or used; the message names the file and the problem."""


def numpy_scalar_globals() -> list:
    """numpy scalars and dtypes (meters in ``extra_state`` may hold them): safe to unpickle."""
    dtypes = {type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)}
    allowed: list = [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
    ]
    for dtype in dtypes:
        allowed += [dtype, (dtype, f"numpy.dtypes.{dtype.__name__}")]
    return allowed


def _unreadable(path: Path, exc: Exception) -> str:
    """What a file that torch's safe loader failed on holds, in a few words."""
    if isinstance(exc, pickle.UnpicklingError):
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if refused:
            return f"safe loading refuses the Python object {refused.group(1)} in the file"
    if isinstance(exc, EOFError):
        return "an empty or truncated file"
    with path.open("rb") as handle:
        zipped = handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    if zipped and not zipfile.is_zipfile(path):
        return "a truncated or damaged PyTorch file"
    if zipped:
        return "a zip archive that is not a PyTorch file"
    return "not a PyTorch file"


def read_torch_file(
    path: str | Path, kind: str, label: str | None = None, trust_pickle: bool = False, refusal_hint: str = ""
) -> dict[str, Any]:
    """The dict a PyTorch file holds, read on the CPU with torch's safe loader unless ``trust_pickle``.

    ``kind`` names what the file should be (``fairseq checkpoint``) and ``label`` how the message
    names the file (default: ``path``); ``refusal_hint`` ends the message when the safe loader
    refuses a Python object (``--trust-pickle`` where a command offers it).
    """
    path = Path(path)
    label = label or str(path)
    if not path.exists():
        raise CheckpointError(f"{label}: checkpoint not found{relative_path_note(path)}")
    if not path.is_file():
        raise CheckpointError(f"{label}: a folder, not a checkpoint file")
    try:
        with torch.serialization.safe_globals(numpy_scalar_globals()):
            state = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:  # torch and pickle raise many types for a file that is not a checkpoint
        reason = _unreadable(path, exc)
        hint = f"; {refusal_hint}" if refusal_hint and reason.startswith("safe loading") else ""
        raise CheckpointError(f"{label}: not a {kind} ({reason}){hint}") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{label}: not a {kind} (it holds a {type(state).__name__})")
    return dict(state)


def read_checkpoint(path: str | Path, option: str | None = None) -> dict[str, Any]:
    """A fairseq checkpoint of this project: its ``model`` weights and its ``cfg`` (a ``DictConfig``).

    ``option`` names the setting that gave ``path`` (``model.model_path``): the message then reads
    ``model.model_path=<path>: ...``. :class:`CheckpointError` when the file is missing, is not a
    PyTorch file, or lacks the weights or the model config.
    """
    label = f"{option}={path}" if option else str(path)
    state = read_torch_file(path, "fairseq checkpoint", label)
    missing = [key for key in ("model", "cfg") if state.get(key) is None]
    if missing:
        kept = ", ".join(repr(k) for k in list(state)[:4]) or "nothing"
        raise CheckpointError(
            f"{label}: not a fairseq checkpoint (no {' or '.join(map(repr, missing))}; it holds {kept})"
        )
    if not isinstance(state["model"], Mapping) or not isinstance(state["cfg"], Mapping):
        raise CheckpointError(f"{label}: not a fairseq checkpoint ('model' and 'cfg' are not dicts)")
    state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
    if state["cfg"].get("model") is None:
        raise CheckpointError(f"{label}: not a fairseq checkpoint (its cfg has no model config)")
    return state
