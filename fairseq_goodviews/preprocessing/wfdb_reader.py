"""The one WFDB record reader of the project.

:func:`read_wfdb` turns a WFDB record (``.hea`` header plus ``.dat`` or ``.mat`` signal files,
as in PTB, PTB-XL and PhysioNet/CinC 2020-2021) into an :class:`EcgRecord`: 12 canonical lead
slots in millivolts at a target rate, absent leads zero-filled, plus the parsed header comments.

Decisions worth knowing:

* Channel names are matched case-insensitively through :func:`canonical_lead_name` (``aVR`` =
  ``AVR`` = ``avr``, ``MLII`` -> II, ``C1`` -> V1, ...). Channels that are not one of the 12 leads
  (Frank ``vx/vy/vz``, ``PLETH``, ``ABP``, ``RESP``, ...) are ignored and *reported* in
  :attr:`WfdbRecord.ignored_channels`.
* A bare ``V`` (the single precordial lead of bedside monitors, e.g. PhysioNet 2015) is **not**
  mapped: its electrode position is unknown (it may be V1, V5 or anything in between), and
  putting it in a precordial slot would teach a lead-agnostic model a wrong lead. It is reported
  as ignored, so the user sees it.
* A second channel that maps to an already filled slot is ignored and reported too.
* Physical units come from the header (``mV``, ``uV``/``µV``, ``V``, ``nV``; an empty unit is mV,
  the WFDB default); an ECG channel in any other unit is an error.
* Resampling uses :func:`scipy.signal.resample_poly` with the exact rational ratio of the rates
  (1000 -> 500 is 1/2, 250 -> 500 is 2/1, 257 -> 500 is 500/257), an anti-aliasing polyphase
  FIR filter, with the signal extended linearly at its ends so a baseline offset does not ring.
* Every problem raises :class:`RecordError` naming the header file (or the signal file where it
  is the signal file that is bad).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.signal
import wfdb

from fairseq_goodviews.io.records import FLAT_LEAD_MV, EcgRecord, RecordError, signal_problems
from fairseq_goodviews.leads import CANONICAL_LEADS, canonical_lead_name

N_LEADS = len(CANONICAL_LEADS)
DEFAULT_TARGET_RATE = 500.0
DEFAULT_MIN_RATE = 100.0

# Physical unit (lower-case) -> factor to millivolts.
_UNIT_TO_MV: Dict[str, float] = {
    "": 1.0, "mv": 1.0, "millivolt": 1.0, "millivolts": 1.0,
    "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
    "v": 1e3, "volt": 1e3, "volts": 1e3,
    "nv": 1e-6,
}

_SEX_WORDS: Dict[str, str] = {
    "m": "M", "male": "M", "man": "M", "masculine": "M",
    "f": "F", "female": "F", "woman": "F", "feminine": "F",
}
_PATIENT_KEYS = ("patient", "patient id", "patient_id", "patientid", "subject", "subject id",
                 "subject_id")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")

FLAT_LEADS_MODES = ("error", "absent")


class MissingFileError(RecordError):
    """A header or signal file that does not exist."""


class BadSignalError(RecordError):
    """A readable record whose signal is unusable (NaN/inf, flat leads, no ECG lead)."""


@dataclass
class HeaderInfo:
    """What the header comments say about the record (all optional).

    ``fields`` holds every ``key: value`` comment line with the key lower-cased, so a source can
    read what the common fields below do not cover.
    """

    age: float = math.nan
    sex: str = ""
    dx: Tuple[str, ...] = ()
    patient_id: Optional[str] = None
    fields: Dict[str, str] = field(default_factory=dict)


@dataclass
class WfdbRecord:
    """A WFDB record read into the canonical layout.

    ``record.meta`` holds ``record_id``, ``age``, ``sex`` and ``source_sample_rate``;
    ``ignored_channels`` the channel names that were not used (non-ECG, bare ``V``, duplicates),
    ``flat_leads`` the leads marked absent because they were flat (only with ``flat_leads="absent"``).
    """

    record: EcgRecord
    header: HeaderInfo
    ignored_channels: List[str]
    source_rate: float
    header_path: Path
    channel_names: List[str]
    flat_leads: List[str] = field(default_factory=list)


def parse_age(text: str) -> float:
    """``"53"`` -> 53.0; ``">89"`` -> 89.0; ``"NaN"``, ``"Unknown"``, ``""`` -> NaN."""
    match = _NUMBER.search(text or "")
    if match is None:
        return math.nan
    value = float(match.group())
    return value if 0.0 <= value < 150.0 else math.nan


def parse_sex(text: str) -> str:
    """Normalise a sex field to the metadata tables' vocabulary: ``M``, ``F`` or ``""`` (unknown)."""
    return _SEX_WORDS.get((text or "").strip().lower(), "")


def parse_header_comments(comments: Sequence[str]) -> HeaderInfo:
    """Parse ``key: value`` header comments.

    Understands the PhysioNet/CinC 2020-2021 style (``#Age: 53``, ``#Sex: Male``,
    ``#Dx: 164889003,59118001``) and the PTB Diagnostic style (``# age: 81``, ``# sex: female``);
    keys are case-insensitive. A patient id is taken from ``patient``/``patient id``/``subject``.
    """
    fields: Dict[str, str] = {}
    for line in comments:
        text = line.strip().lstrip("#").strip()
        if ":" not in text:
            continue
        key, value = text.split(":", 1)
        key = key.strip().lower()
        if key and key not in fields:
            fields[key] = value.strip()
    dx_text = fields.get("dx", "")
    dx = tuple(code.strip() for code in re.split(r"[,;\s]+", dx_text) if code.strip())
    patient_id = None
    for key in _PATIENT_KEYS:
        value = fields.get(key, "").strip()
        if value and value.lower() not in ("unknown", "nan", "none", "n/a"):
            patient_id = value
            break
    return HeaderInfo(
        age=parse_age(fields.get("age", "")),
        sex=parse_sex(fields.get("sex", fields.get("gender", ""))),
        dx=dx,
        patient_id=patient_id,
        fields=fields,
    )


def read_header_comments(path: str | Path) -> HeaderInfo:
    """Parse the comments of a header file as plain text (fast; for listing many records).

    Raises :class:`MissingFileError` when the header does not exist.
    """
    header_path = header_path_of(path)
    try:
        text = header_path.read_text(errors="replace")
    except FileNotFoundError:
        raise MissingFileError(header_path, "header file not found") from None
    return parse_header_comments([line for line in text.splitlines() if line.lstrip().startswith("#")])


def map_channels(names: Sequence[str]) -> Tuple[Dict[int, int], List[str]]:
    """Map channel names to canonical slots.

    Returns ``{channel index: slot}`` and the names of the channels left out (non-ECG, bare
    ``V`` and duplicates of an already mapped lead).
    """
    mapping: Dict[int, int] = {}
    filled: set[int] = set()
    ignored: List[str] = []
    for channel, name in enumerate(names):
        canonical = canonical_lead_name(str(name))
        if canonical is None:
            ignored.append(str(name))
            continue
        slot = CANONICAL_LEADS.index(canonical)
        if slot in filled:
            ignored.append(str(name))
            continue
        filled.add(slot)
        mapping[channel] = slot
    return mapping, ignored


def rational_ratio(source_rate: float, target_rate: float) -> Tuple[int, int]:
    """``(up, down)`` with ``target/source = up/down`` in lowest terms (rates may be non-integer)."""
    ratio = Fraction(target_rate).limit_denominator(10_000) / Fraction(source_rate).limit_denominator(10_000)
    return ratio.numerator, ratio.denominator


def resample(signal: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Resample ``signal`` [C, T] along time with an anti-aliasing polyphase filter."""
    up, down = rational_ratio(source_rate, target_rate)
    if up == down:
        return signal
    return scipy.signal.resample_poly(signal, up, down, axis=1, padtype="line")


def header_path_of(path: str | Path) -> Path:
    """``rec``, ``rec.hea`` or ``rec.mat`` -> ``rec.hea``."""
    path = Path(path)
    if path.suffix.lower() in (".hea", ".mat", ".dat"):
        return path.with_suffix(".hea")
    return path.with_name(path.name + ".hea")


def _record_line_rate(header_path: Path) -> float:
    """The sampling frequency written in the record line (wfdb silently defaults a bad one to 250)."""
    for line in header_path.read_text(errors="replace").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        tokens = text.split()
        if len(tokens) < 3:
            return math.nan
        token = tokens[2].split("/")[0].split("(")[0]
        try:
            return float(token)
        except ValueError:
            raise RecordError(header_path, f"malformed header: sampling frequency {tokens[2]!r}") from None
    raise RecordError(header_path, "malformed header: no record line")


def read_header(path: str | Path) -> wfdb.Record:
    """Read and check a WFDB header; raises :class:`RecordError` naming the file."""
    header_path = header_path_of(path)
    if not header_path.is_file():
        raise MissingFileError(header_path, "header file not found")
    try:
        header = wfdb.rdheader(str(header_path.with_suffix("")))
    except Exception as exc:  # wfdb raises HeaderSyntaxError, IndexError, ValueError, ...
        raise RecordError(header_path, f"malformed header ({type(exc).__name__}: {exc})") from None
    if isinstance(header, wfdb.MultiRecord) or getattr(header, "seg_name", None):
        raise RecordError(header_path, "multi-segment WFDB records are not supported")
    if not header.n_sig or not header.sig_name:
        raise RecordError(header_path, "malformed header: no signal lines")
    if not header.sig_len:
        raise RecordError(header_path, "malformed header: no signal length")
    return header


def read_wfdb(
    path: str | Path,
    target_rate: float = DEFAULT_TARGET_RATE,
    min_rate: float = DEFAULT_MIN_RATE,
    flat_leads: str = "error",
) -> WfdbRecord:
    """Read one WFDB record into the canonical 12-lead layout (see the module docstring).

    ``path`` is the record path with or without ``.hea``; every record leaves here at
    ``target_rate``, and one below ``min_rate`` is refused. ``flat_leads="error"`` rejects a
    record with a flat lead (peak-to-peak below :data:`FLAT_LEAD_MV`); ``"absent"`` zero-fills
    such leads, marks them absent and reports them, rejecting only a record with no lead left.
    """
    if flat_leads not in FLAT_LEADS_MODES:
        raise ValueError(f"flat_leads must be one of {FLAT_LEADS_MODES}, got {flat_leads!r}")
    if not target_rate or target_rate <= 0:
        raise ValueError(f"target_rate must be positive, got {target_rate!r}")
    header_path = header_path_of(path)
    header = read_header(header_path)
    declared_rate = _record_line_rate(header_path)
    rate = float(header.fs) if math.isnan(declared_rate) else declared_rate
    if not math.isfinite(rate) or rate <= 0:
        raise RecordError(header_path, f"unsupported sample rate {rate:g} Hz")
    if rate < min_rate:
        raise RecordError(header_path, f"unsupported sample rate {rate:g} Hz (minimum {min_rate:g} Hz)")

    names = [str(n) for n in header.sig_name]
    mapping, ignored = map_channels(names)
    if not mapping:
        raise BadSignalError(header_path, "no ECG lead among channels " + ",".join(names))
    units = list(header.units or [""] * len(names))
    factors = {}
    for channel in mapping:
        unit = (units[channel] or "").strip().lower()
        if unit not in _UNIT_TO_MV:
            raise RecordError(header_path, f"lead {names[channel]!r} has unit {units[channel]!r}, not a voltage")
        factors[channel] = _UNIT_TO_MV[unit]

    channels = sorted(mapping)
    signal_files = sorted({str(header.file_name[c]) for c in channels})
    signal_paths = [header_path.parent / name for name in signal_files]
    for signal_path in signal_paths:
        if not signal_path.is_file():
            raise MissingFileError(signal_path, f"signal file not found (named by {header_path.name})")
    try:
        record = wfdb.rdrecord(str(header_path.with_suffix("")), channels=channels, physical=True)
    except Exception as exc:  # truncated or garbled signal files surface as ValueError, EOFError, ...
        where = signal_paths[0] if len(signal_paths) == 1 else header_path
        raise RecordError(where, f"unreadable signal file ({type(exc).__name__}: {exc})") from None
    data = record.p_signal
    if data is None or data.ndim != 2 or data.shape[1] != len(channels):
        raise RecordError(header_path, "unreadable signal file (no samples)")
    if data.shape[0] != header.sig_len:
        raise RecordError(
            signal_paths[0], f"truncated signal file: {data.shape[0]} of {header.sig_len} samples"
        )

    n_source = data.shape[0]
    feats = np.zeros((N_LEADS, n_source), dtype=np.float64)
    lead_present = np.zeros(N_LEADS, dtype=bool)
    for column, channel in enumerate(channels):
        slot = mapping[channel]
        feats[slot] = data[:, column] * factors[channel]
        lead_present[slot] = True

    problems = [p for p in signal_problems(feats, lead_present) if not p.startswith("flat lead")]
    if problems:
        raise BadSignalError(header_path, "; ".join(problems))
    flat = (np.ptp(feats, axis=1) < FLAT_LEAD_MV) & lead_present
    flat_names = [CANONICAL_LEADS[i] for i in np.flatnonzero(flat)]
    if flat_names:
        if flat_leads == "error" or flat.sum() == lead_present.sum():
            raise BadSignalError(header_path, "flat lead(s) " + ",".join(flat_names))
        feats[flat] = 0.0
        lead_present &= ~flat

    feats = resample(feats, rate, target_rate)
    feats[~lead_present] = 0.0
    info = parse_header_comments(header.comments or [])
    meta = {
        "record_id": header.record_name,
        "age": info.age,
        "sex": info.sex,
        "source_sample_rate": rate,
    }
    ecg = EcgRecord(
        feats=feats.astype(np.float32),
        sample_rate=float(target_rate),
        lead_present=lead_present,
        meta=meta,
    )
    return WfdbRecord(
        record=ecg,
        header=info,
        ignored_channels=ignored,
        source_rate=rate,
        header_path=header_path,
        channel_names=names,
        flat_leads=flat_names,
    )


def find_records(root: str | Path) -> List[Path]:
    """Every WFDB header under ``root`` (recursive), sorted, as record paths without ``.hea``.

    Raises :class:`RecordError` for a missing directory or one without any ``.hea`` file.
    """
    root = Path(root)
    if not root.is_dir():
        raise RecordError(root, "not a directory")
    headers = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".hea" and p.is_file())
    if not headers:
        raise RecordError(root, "no WFDB records (.hea files) found")
    return [h.with_suffix("") for h in headers]
