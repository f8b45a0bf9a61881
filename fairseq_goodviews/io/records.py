"""The one record format: a MATLAB ``.mat`` file per record (compatible with fairseq-signals).

Keys: ``feats`` float32 [12, T] in millivolts (canonical lead order, absent leads zero-filled),
``curr_sample_rate``, ``lead_present`` (uint8 [12]) and scalar metadata (``patient_id``, ``age``,
``sex``, ``rhythm``, ...). Numeric attribute vectors are stored under their own key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import scipy.io

from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.leads import CANONICAL_LEADS

N_LEADS = len(CANONICAL_LEADS)
# A present lead whose peak-to-peak range is below this (mV) carries no signal.
FLAT_LEAD_MV = 1e-3


class RecordError(ValueError):
    """A record that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class EcgRecord:
    feats: np.ndarray
    sample_rate: float
    lead_present: np.ndarray = field(default_factory=lambda: np.ones(N_LEADS, dtype=bool))
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.feats.shape[1])


def signal_problems(feats: np.ndarray, lead_present: np.ndarray | None = None) -> List[str]:
    """Reasons a [12, T] signal is unusable: non-finite values, flat present leads, no leads."""
    if feats.ndim != 2 or feats.shape[0] != N_LEADS:
        return [f"expected shape [{N_LEADS}, T], got {list(feats.shape)}"]
    if feats.shape[1] == 0:
        return ["no samples"]
    present = np.ones(N_LEADS, bool) if lead_present is None else np.asarray(lead_present, bool)
    problems = []
    if not present.any():
        problems.append("no ECG lead present")
    bad = ~np.isfinite(feats).all(axis=1) & present
    if bad.any():
        problems.append("NaN or inf in lead(s) " + ",".join(np.array(CANONICAL_LEADS)[bad]))
    finite = np.where(np.isfinite(feats), feats, 0.0)
    flat = (np.ptp(finite, axis=1) < FLAT_LEAD_MV) & present & ~bad
    if flat.any():
        problems.append("flat lead(s) " + ",".join(np.array(CANONICAL_LEADS)[flat]))
    return problems


def write_record(path: str | Path, record: EcgRecord) -> None:
    """Write ``record`` atomically; refuses unusable signals with :class:`RecordError`."""
    feats = np.asarray(record.feats, dtype=np.float32)
    problems = signal_problems(feats, record.lead_present)
    if problems:
        raise RecordError(path, "; ".join(problems))
    payload: Dict[str, Any] = {
        "feats": feats,
        "curr_sample_rate": float(record.sample_rate),
        "lead_present": np.asarray(record.lead_present, dtype=np.uint8),
    }
    for key, value in record.meta.items():
        payload[key] = "" if value is None else value
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            scipy.io.savemat(handle, payload, do_compression=False)


def _scalar(value: Any) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return str(arr.item()) if arr.size == 1 else ""
    if arr.size == 1:
        return arr.item()
    return arr.squeeze()


def read_record(path: str | Path, with_meta: bool = True) -> EcgRecord:
    """Read a record written by :func:`write_record` (or by fairseq-signals' preparers)."""
    try:
        mat = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise RecordError(path, "file not found") from None
    except Exception as exc:  # scipy raises several types for truncated/garbled files
        raise RecordError(path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from None
    if "feats" not in mat:
        raise RecordError(path, "no 'feats' array in the .mat file")
    feats = np.asarray(mat["feats"], dtype=np.float32)
    if feats.ndim != 2 or feats.shape[0] != N_LEADS:
        raise RecordError(path, f"'feats' has shape {list(feats.shape)}, expected [{N_LEADS}, T]")
    sample_rate = float(_scalar(mat["curr_sample_rate"])) if "curr_sample_rate" in mat else 500.0
    lead_present = (
        np.asarray(mat["lead_present"]).reshape(-1).astype(bool)
        if "lead_present" in mat
        else np.ones(N_LEADS, bool)
    )
    meta = {}
    if with_meta:
        skip = {"feats", "curr_sample_rate", "lead_present"}
        meta = {k: _scalar(v) for k, v in mat.items() if not k.startswith("__") and k not in skip}
    return EcgRecord(feats=feats, sample_rate=sample_rate, lead_present=lead_present, meta=meta)
