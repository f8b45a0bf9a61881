"""The one WFDB record reader of the project.

:func:`read_wfdb` turns a WFDB record (``.hea`` header plus ``.dat`` or ``.mat`` signal files,
as in PTB, PTB-XL and PhysioNet/CinC 2020-2021) into an :class:`EcgRecord`: 12 canonical lead
slots in millivolts at a target rate, absent leads zero-filled, plus the parsed header comments.

Decisions worth knowing:

* Headers are parsed into the fields wfdb's own record- and signal-line parsers give, with
  wfdb's patterns, defaults and types read once (:func:`parse_record_line`,
  :func:`parse_signal_lines`: wfdb looks each field up in a pandas table, for every field of
  every line, which takes longer than reading a record's samples). A record line that names
  the record with its signal file's extension (``E00271.mat 12 500 5000``: every Georgia header
  of PhysioNet/CinC 2020-2021) is read without the extension, which wfdb rejects as is.
* Channel names are matched case-insensitively through :func:`canonical_lead_name` (``aVR`` =
  ``AVR`` = ``avr``, ``MLII`` -> II, ``C1`` -> V1, ...), also behind an ``ECG``/``lead`` prefix
  (``ECG lead II``, ``ECG II``, ``EKG V1``). Channels that are not one of the 12 leads (Frank
  ``vx/vy/vz``, ``PLETH``, ``ABP``, ``RESP``, ...) are ignored and *reported* in
  :attr:`WfdbRecord.ignored_channels`.
* A bare ``V`` (the single precordial lead of bedside monitors, e.g. PhysioNet 2015) is **not**
  mapped: its electrode position is unknown (it may be V1, V5 or anything in between), and
  putting it in a precordial slot would teach a lead-agnostic model a wrong lead. It is reported
  as ignored, so the user sees it.
* A second channel that maps to an already filled slot is ignored and reported too.
* Physical units come from the header (``mV``, ``uV``/``µV``, ``V``, ``nV``; an empty unit is mV,
  the WFDB default); an ECG channel in any other unit is an error.
* Each ECG channel is read at its own rate (frame rate x samples per frame: a multi-frequency
  record with a 62.47 Hz frame and 4 ECG samples per frame has its ECG at 249.88 Hz); a rate
  outside [``min_rate``, ``max_rate``] is refused.
* ``.mat`` signal files are read with :func:`scipy.io.loadmat` (any MAT layout), checked
  against the header (array shape = signals x length, whole numbers within the format's
  digital range); ``.dat`` files with wfdb's signal-file reader, given the parsed header. The header's per-signal
  checksums (16-bit sums of the samples) are verified where given, so a file that is not what
  its header describes is refused instead of written as a wrong signal.
* A lead with a handful of invalid samples (the format's invalid value, or NaN in a ``.mat``),
  at most :data:`MAX_INVALID_FRACTION` of its samples in runs of at most
  :data:`MAX_INVALID_RUN_SECONDS`, is repaired by linear interpolation and reported
  (:attr:`WfdbRecord.repaired_samples`); more is an error. A lead whose signal spreads
  implausibly far (:data:`MAX_PLAUSIBLE_MV`) points to a wrong gain or unit and is an error.
* Flat leads (peak-to-peak below :data:`FLAT_LEAD_MV`, e.g. the precordial leads of a Ningbo
  record recorded as zeros) are by default zero-filled, marked absent and reported, as a lead
  that is not in the file; ``flat_leads="error"`` refuses such records instead.
* Resampling uses :func:`scipy.signal.resample_poly` with the exact rational ratio of the rates
  (1000 -> 500 is 1/2, 250 -> 500 is 2/1, 257 -> 500 is 500/257), an anti-aliasing polyphase
  FIR filter, with the signal extended linearly at its ends so a baseline offset does not ring.
* Every problem raises :class:`RecordError` naming the header file (or the signal file where it
  is the signal file that is bad).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import wfdb
from wfdb.io import _header as wfdb_header_fields
from wfdb.io import header as wfdb_header

from fairseq_goodviews.io.records import FLAT_LEAD_MV, EcgRecord, RecordError
from fairseq_goodviews.io.signal import resample
from fairseq_goodviews.leads import CANONICAL_LEADS, canonical_lead_name
from fairseq_goodviews.preprocessing.snomed import dx_to_snomed
from fairseq_goodviews.preprocessing.wfdb_signals import read_dat, read_mat, verify_checksums

N_LEADS = len(CANONICAL_LEADS)
DEFAULT_TARGET_RATE = 500.0
DEFAULT_MIN_RATE = 100.0
# Clinical and research ECG devices sample at 100-10,000 Hz; a header rate far above that is a
# header error (1e6 Hz would turn a 10 s record into 5 ms).
DEFAULT_MAX_RATE = 20_000.0
# Invalid samples repaired by interpolation: at most this fraction of a lead (0.1 %: 75 samples
# of a 15 s record at 5000 Hz, 5 of a 10 s record at 500 Hz) ...
MAX_INVALID_FRACTION = 1e-3
# ... in runs of at most this long (shorter than any QRS complex, so no wave is invented).
MAX_INVALID_RUN_SECONDS = 0.02
# 95 % of a real ECG lead's samples lie within a few mV of its median even with baseline wander;
# beyond this the header's gain or unit does not fit the stored values.
MAX_PLAUSIBLE_MV = 10.0

# Physical unit (lower-case) -> factor to millivolts.
_UNIT_TO_MV: dict[str, float] = {
    "": 1.0,
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
    "nv": 1e-6,
}

_SEX_WORDS: dict[str, str] = {
    "m": "M",
    "male": "M",
    "man": "M",
    "masculine": "M",
    "f": "F",
    "female": "F",
    "woman": "F",
    "feminine": "F",
}
_PATIENT_KEYS = ("patient", "patient id", "patient_id", "patientid", "subject", "subject id", "subject_id")
# Comment keys that may come without a colon (GE MUSE exports: ``# age 71``, ``# sex M``).
_BARE_KEYS = ("age", "sex", "gender")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_LEAD_PREFIX = re.compile(r"^(?:(?:ecg|ekg)[\s_:-]*)?(?:lead[\s_:-]*)?", re.IGNORECASE)

# A record line naming the record with its signal file's extension (``E00271.mat 12 500 5000``).
NAME_WITH_EXTENSION = re.compile(r"^(?P<name>[^\s/.]+)\.(?:mat|dat|hea)(?=[\s/]|$)", re.IGNORECASE)
# The fields of a record line and of a signal line in the order of the groups of wfdb's patterns
# for them, and wfdb's default (for an empty field) and type of each, taken once from its tables.
_RECORD_FIELDS = (
    "record_name",
    "n_seg",
    "n_sig",
    "fs",
    "counter_freq",
    "base_counter",
    "sig_len",
    "base_time",
    "base_date",
)
_SIGNAL_FIELDS = (
    "file_name",
    "fmt",
    "samps_per_frame",
    "skew",
    "byte_offset",
    "adc_gain",
    "baseline",
    "units",
    "adc_res",
    "adc_zero",
    "init_value",
    "checksum",
    "block_size",
    "sig_name",
)
_DEFAULTS = {
    **{name: wfdb_header_fields.RECORD_SPECS.loc[name, "read_default"] for name in _RECORD_FIELDS},
    **{name: wfdb_header_fields.SIGNAL_SPECS.loc[name, "read_default"] for name in _SIGNAL_FIELDS},
}
_TYPES = {
    **{name: wfdb_header_fields.RECORD_SPECS.loc[name, "allowed_types"] for name in _RECORD_FIELDS},
    **{name: wfdb_header_fields.SIGNAL_SPECS.loc[name, "allowed_types"] for name in _SIGNAL_FIELDS},
}

FLAT_LEADS_MODES = ("absent", "error")
DEFAULT_FLAT_LEADS = "absent"


class MissingFileError(RecordError):
    """A header or signal file that does not exist."""


class BadSignalError(RecordError):
    """A readable record whose signal is unusable (invalid samples, flat leads, no ECG lead)."""


@dataclass
class HeaderInfo:
    """What the header comments say about the record (all optional).

    ``dx`` holds SNOMED CT codes (2020 phase-1 abbreviations such as ``AF`` mapped, see
    :mod:`.snomed`), ``dx_unknown`` the diagnoses that are neither. ``fields`` holds every
    ``key: value`` comment line with the key lower-cased, so a source can read what the common
    fields below do not cover.
    """

    age: float = math.nan
    sex: str = ""
    dx: tuple[str, ...] = ()
    patient_id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    dx_unknown: tuple[str, ...] = ()


@dataclass
class WfdbRecord:
    """A WFDB record read into the canonical layout.

    ``record.meta`` holds ``record_id``, ``age``, ``sex`` and ``source_sample_rate`` (the ECG
    channels' rate; the highest where they differ); ``ignored_channels`` the channel names that
    were not used (non-ECG, bare ``V``, duplicates), ``flat_leads`` the leads marked absent
    because they were flat, ``repaired_samples`` ``"lead:count"`` of interpolated invalid samples.
    """

    record: EcgRecord
    header: HeaderInfo
    ignored_channels: list[str]
    source_rate: float
    header_path: Path
    channel_names: list[str]
    flat_leads: list[str] = field(default_factory=list)
    repaired_samples: list[str] = field(default_factory=list)


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
    ``#Dx: 164889003,59118001`` or the 2020 phase-1 ``#Dx: AF,RBBB``), the PTB Diagnostic style
    (``# age: 81``, ``# sex: female``), LUDB's (``#<age>: 51``, ``#<sex>: F``) and GE MUSE's
    (``# age 71``, ``# sex M``); keys are case-insensitive. A patient id is taken from
    ``patient``/``patient id``/``subject``.
    """
    fields: dict[str, str] = {}
    for line in comments:
        text = line.strip().lstrip("#").strip()
        if ":" in text:
            key, value = text.split(":", 1)
        else:
            key, _, value = text.partition(" ")
            if key.strip().lower() not in _BARE_KEYS:
                continue
        key = key.strip().strip("<>").strip().lower()
        if key and key not in fields:
            fields[key] = value.strip()
    dx_text = fields.get("dx", "")
    dx, unknown = dx_to_snomed(code for code in re.split(r"[,;\s]+", dx_text) if code.strip())
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
        dx_unknown=tuple(unknown),
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


def lead_of_channel(name: str) -> str | None:
    """The canonical lead a channel name stands for (also behind an ``ECG``/``lead`` prefix), or None."""
    canonical = canonical_lead_name(name)
    if canonical is None:
        bare = _LEAD_PREFIX.sub("", name.strip(), count=1)
        canonical = canonical_lead_name(bare) if bare and bare != name.strip() else None
    return canonical


def map_channels(names: Sequence[str]) -> tuple[dict[int, int], list[str]]:
    """Map channel names to canonical slots.

    Returns ``{channel index: slot}`` and the names of the channels left out (non-ECG, bare
    ``V`` and duplicates of an already mapped lead).
    """
    mapping: dict[int, int] = {}
    filled: set[int] = set()
    ignored: list[str] = []
    for channel, name in enumerate(names):
        canonical = lead_of_channel(str(name))
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


def header_path_of(path: str | Path) -> Path:
    """``rec``, ``rec.hea`` or ``rec.mat`` -> ``rec.hea``."""
    path = Path(path)
    if path.suffix.lower() in (".hea", ".mat", ".dat"):
        return path.with_suffix(".hea")
    return path.with_name(path.name + ".hea")


def _record_line_rate(header_path: Path, record_line: str) -> float:
    """The sampling frequency written in the record line (wfdb silently defaults a bad one to 250)."""
    tokens = record_line.split()
    if len(tokens) < 3:
        return math.nan
    token = tokens[2].split("/")[0].split("(")[0]
    try:
        return float(token)
    except ValueError:
        raise RecordError(header_path, f"malformed header: sampling frequency {tokens[2]!r}") from None


def _read_header_text(header_path: Path) -> str:
    """The header as text: UTF-8, else Latin-1, so that a ``µV`` unit stays ``µV`` (wfdb reads
    headers as ASCII and drops the ``µ``, which would turn microvolts into volts)."""
    if not header_path.is_file():
        raise MissingFileError(header_path, "header file not found")
    data = header_path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _number(name: str, text: str) -> int | float | str:
    """A non-empty field's text as wfdb types it: an int or float field as a number, else the text."""
    if _TYPES[name] is wfdb_header_fields.int_types:
        return int(text)
    if _TYPES[name] is wfdb_header_fields.float_types:
        return float(text)
    return text


def parse_record_line(line: str) -> dict[str, Any]:
    """The fields of a WFDB record line as wfdb's own record-line parser gives them (``record_name``,
    ``n_seg``, ``n_sig``, ``fs``, ... ``base_date`` and ``base_datetime``): an empty field as
    wfdb's default, ``fs`` an int where it is one, ``base_time``/``base_date`` as ``datetime``
    values. Raises wfdb's ``HeaderSyntaxError`` on a line its record-line pattern does not match.
    """
    match = wfdb_header.rx_record.match(line)
    if match is None:
        raise wfdb_header.HeaderSyntaxError("invalid syntax in record line")
    fields: dict[str, Any] = {}
    for name, text in zip(_RECORD_FIELDS, match.groups(), strict=True):
        if text == "":
            fields[name] = _DEFAULTS[name]
        elif name == "base_time":
            fields[name] = wfdb_header_fields.wfdb_strptime(text)
        elif name == "base_date":
            fields[name] = datetime.datetime.strptime(text, "%d/%m/%Y").date()
        else:
            fields[name] = _number(name, text)
    fs = fields["fs"]
    if isinstance(fs, float) and round(fs, 8) == float(int(fs)):
        fields["fs"] = int(fs)
    if fields["base_date"] and fields["base_time"]:
        fields["base_datetime"] = datetime.datetime.combine(fields["base_date"], fields["base_time"])
    return fields


def parse_signal_lines(lines: Sequence[str]) -> dict[str, list]:
    """The fields of WFDB signal lines as wfdb's own signal-line parser gives them: per field
    (``file_name``, ``fmt``, ``adc_gain``, ... ``sig_name``) a list with one value per line, an
    empty field as wfdb's default (an empty baseline as the ADC zero where given, a gain of 0 as
    200). Raises wfdb's ``HeaderSyntaxError`` on a line its signal-line pattern does not match.
    """
    fields: dict[str, list] = {name: [None] * len(lines) for name in _SIGNAL_FIELDS}
    for channel, line in enumerate(lines):
        match = wfdb_header.rx_signal.match(line)
        if match is None:
            raise wfdb_header.HeaderSyntaxError("invalid syntax in signal line")
        texts = dict(zip(_SIGNAL_FIELDS, match.groups(), strict=True))
        for name, text in texts.items():
            if text == "":
                value = _DEFAULTS[name]
                if name == "baseline" and texts["adc_zero"] != "":
                    value = int(texts["adc_zero"])
            else:
                value = _number(name, text)
                if name == "adc_gain" and value == 0:
                    value = 200.0
            fields[name][channel] = value
    return fields


def parse_header_text(text: str, header_path: str | Path) -> wfdb.Record:
    """Parse the text of a WFDB header into the fields wfdb's own parsers give
    (:func:`parse_record_line`, :func:`parse_signal_lines`).

    The one correction made first: a record line that names the record with a signal-file
    extension (``E00271.mat 12 500 5000 ...``, as every Georgia header of PhysioNet/CinC
    2020-2021 does) is read with that extension removed; wfdb rejects it as is (wfdb-python
    issues #351 and #415). Raises :class:`RecordError` naming ``header_path``.
    """
    header_path = Path(header_path)
    lines, comments = wfdb_header.parse_header_content(text)
    if not lines:
        raise RecordError(header_path, "malformed header: no record line")
    record_line = NAME_WITH_EXTENSION.sub(r"\g<name>", lines[0], count=1)
    try:
        record_fields = parse_record_line(record_line)
        signal_fields = parse_signal_lines(lines[1:]) if len(lines) > 1 else {}
    except Exception as exc:  # wfdb raises HeaderSyntaxError, ValueError, ...
        raise RecordError(header_path, f"malformed header ({type(exc).__name__}: {exc})") from None
    if record_fields["n_seg"] is not None:
        raise RecordError(header_path, "multi-segment WFDB records are not supported")
    record = wfdb.Record()
    for name, value in signal_fields.items():
        setattr(record, name, value)
    for name, value in record_fields.items():
        if name != "n_seg":
            setattr(record, name, value)
    record.comments = [line.strip(" \t#") for line in comments]
    if not record.n_sig or not signal_fields:
        raise RecordError(header_path, "malformed header: no signal lines")
    if record.n_sig != len(lines) - 1:
        raise RecordError(
            header_path, f"malformed header: {record.n_sig} signals announced, {len(lines) - 1} signal lines"
        )
    if not record.sig_len:
        raise RecordError(header_path, "malformed header: no signal length")
    declared = _record_line_rate(header_path, record_line)
    record.fs = float(record.fs) if math.isnan(declared) else declared
    return record


def read_header(path: str | Path) -> wfdb.Record:
    """Read and check a WFDB header (see :func:`parse_header_text`); errors name the file."""
    header_path = header_path_of(path)
    return parse_header_text(_read_header_text(header_path), header_path)


def repair_invalid_samples(signal: np.ndarray, rate: float) -> tuple[np.ndarray, int, str]:
    """Interpolate a handful of invalid (NaN) samples of one lead.

    ``signal`` [T]. Repaired when at most :data:`MAX_INVALID_FRACTION` of the samples are
    invalid and no run of them is longer than :data:`MAX_INVALID_RUN_SECONDS` (shorter than a
    QRS complex, so no wave is invented); linear interpolation between the valid neighbours
    (the nearest valid value at either end). Returns ``(signal, repaired count, problem)``,
    ``problem`` empty unless the lead is beyond repair.
    """
    invalid = ~np.isfinite(signal)
    count = int(invalid.sum())
    if count == 0:
        return signal, 0, ""
    if count == signal.size:
        return signal, 0, "no valid sample"
    edges = np.diff(np.concatenate([[0], invalid.astype(np.int8), [0]]))
    longest = int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())
    fraction = count / signal.size
    max_run = max(1, int(MAX_INVALID_RUN_SECONDS * rate))
    if fraction > MAX_INVALID_FRACTION or longest > max_run:
        return (
            signal,
            0,
            (
                f"{count} invalid samples ({100 * fraction:.2g}%, longest run {longest}); at most "
                f"{100 * MAX_INVALID_FRACTION:g}% in runs of at most {max_run} are repaired"
            ),
        )
    positions = np.arange(signal.size)
    repaired = signal.copy()
    repaired[invalid] = np.interp(positions[invalid], positions[~invalid], signal[~invalid])
    return repaired, count, ""


def read_wfdb(
    path: str | Path,
    target_rate: float = DEFAULT_TARGET_RATE,
    min_rate: float = DEFAULT_MIN_RATE,
    flat_leads: str = DEFAULT_FLAT_LEADS,
    max_rate: float = DEFAULT_MAX_RATE,
) -> WfdbRecord:
    """Read one WFDB record into the canonical 12-lead layout (see the module docstring).

    ``path`` is the record path with or without ``.hea``; every record leaves here at
    ``target_rate``, and one whose ECG channels are sampled outside [``min_rate``, ``max_rate``]
    is refused. ``flat_leads="absent"`` zero-fills leads that are flat (peak-to-peak below
    :data:`FLAT_LEAD_MV`), marks them absent and reports them, rejecting only a record with no
    lead left; ``"error"`` rejects a record with a flat lead.
    """
    if flat_leads not in FLAT_LEADS_MODES:
        raise ValueError(f"flat_leads must be one of {FLAT_LEADS_MODES}, got {flat_leads!r}")
    if not target_rate or target_rate <= 0:
        raise ValueError(f"target_rate must be positive, got {target_rate!r}")
    header_path = header_path_of(path)
    header_text = _read_header_text(header_path)
    header = parse_header_text(header_text, header_path)

    names = [str(n) for n in header.sig_name]
    mapping, ignored = map_channels(names)
    if not mapping:
        raise BadSignalError(header_path, "no ECG lead among channels " + ",".join(names))
    channels = sorted(mapping)
    rates = _channel_rates(header, header_path, names, channels, min_rate, max_rate)
    factors = _unit_factors(header, header_path, names, channels)
    digital = _read_digital(header, header_path, names, channels)
    leads, repaired = _leads_in_mv(header, header_path, digital, mapping, rates, factors)
    spans = {slot: float(np.ptp(signal)) for slot, signal in leads.items()}  # peak-to-peak, mV
    _check_amplitudes(header_path, leads, spans)
    flat_names = _drop_flat_leads(header_path, leads, spans, flat_leads)
    feats, lead_present = _canonical_layout(leads, mapping, rates, target_rate)
    ecg_rates = sorted(set(rates.values()))
    source_rate = ecg_rates[0] if len(ecg_rates) == 1 else max(ecg_rates)
    info = parse_header_comments(header.comments or [])
    meta = {
        "record_id": header_path.stem,
        "age": info.age,
        "sex": info.sex,
        "source_sample_rate": source_rate,
    }
    ecg = EcgRecord(
        feats=feats.astype(np.float32), sample_rate=float(target_rate), lead_present=lead_present, meta=meta
    )
    return WfdbRecord(
        record=ecg,
        header=info,
        ignored_channels=ignored,
        source_rate=source_rate,
        header_path=header_path,
        channel_names=names,
        flat_leads=flat_names,
        repaired_samples=repaired,
    )


def _channel_rates(
    header: wfdb.Record,
    header_path: Path,
    names: Sequence[str],
    channels: Sequence[int],
    min_rate: float,
    max_rate: float,
) -> dict[int, float]:
    """Each ECG channel's rate (frame rate x samples per frame); one outside [``min_rate``,
    ``max_rate``] (or not a positive number) is a :class:`RecordError`."""
    rates = {c: float(header.fs) * (header.samps_per_frame[c] or 1) for c in channels}
    for channel, rate in rates.items():
        what = "" if rate == header.fs else f" (lead {names[channel]!r})"
        if not math.isfinite(rate) or rate <= 0:
            raise RecordError(header_path, f"unsupported sample rate {rate:g} Hz{what}")
        if rate < min_rate:
            raise RecordError(header_path, f"unsupported sample rate {rate:g} Hz{what} (minimum {min_rate:g} Hz)")
        if rate > max_rate:
            raise RecordError(header_path, f"implausible sample rate {rate:g} Hz{what} (maximum {max_rate:g} Hz)")
    return rates


def _unit_factors(
    header: wfdb.Record, header_path: Path, names: Sequence[str], channels: Sequence[int]
) -> dict[int, float]:
    """Each ECG channel's factor from its physical unit to millivolts; a unit that is not a
    voltage is a :class:`RecordError`."""
    units = list(header.units or [""] * len(names))
    factors = {}
    for channel in channels:
        unit = (units[channel] or "").strip().lower()
        if unit not in _UNIT_TO_MV:
            raise RecordError(header_path, f"lead {names[channel]!r} has unit {units[channel]!r}, not a voltage")
        factors[channel] = _UNIT_TO_MV[unit]
    return factors


def _read_digital(
    header: wfdb.Record, header_path: Path, names: Sequence[str], channels: Sequence[int]
) -> dict[int, np.ndarray]:
    """The digital samples of ``channels`` from their signal files, checked for missing files,
    truncation and the header's checksums."""
    by_file: dict[str, list[int]] = {}
    for channel in channels:
        by_file.setdefault(str(header.file_name[channel]), []).append(channel)
    digital: dict[int, np.ndarray] = {}
    for name, file_channels in sorted(by_file.items()):
        signal_path = header_path.parent / name
        if not signal_path.is_file():
            raise MissingFileError(signal_path, f"signal file not found (named by {header_path.name})")
        if signal_path.suffix.lower() == ".mat":
            digital.update(read_mat(signal_path, header, file_channels))
        else:
            digital.update(read_dat(header_path, header, file_channels))
    for channel in channels:
        expected = int(header.sig_len) * (header.samps_per_frame[channel] or 1)
        if digital[channel].shape[0] != expected:
            signal_path = header_path.parent / str(header.file_name[channel])
            raise RecordError(
                signal_path,
                f"truncated signal file: {digital[channel].shape[0]} of {expected} "
                f"samples of signal {names[channel]!r}",
            )
    verify_checksums(header, header_path, digital)
    return digital


def _leads_in_mv(
    header: wfdb.Record,
    header_path: Path,
    digital: dict[int, np.ndarray],
    mapping: dict[int, int],
    rates: dict[int, float],
    factors: dict[int, float],
) -> tuple[dict[int, np.ndarray], list[str]]:
    """Each lead slot's signal in millivolts, with a handful of invalid samples repaired; and the
    repairs as ``lead:count`` entries."""
    leads: dict[int, np.ndarray] = {}
    repaired: list[str] = []
    for channel in sorted(mapping):
        slot = mapping[channel]
        samples, count, problem = repair_invalid_samples(digital[channel], rates[channel])
        if problem:
            raise BadSignalError(header_path, f"lead {CANONICAL_LEADS[slot]}: {problem}")
        if count:
            repaired.append(f"{CANONICAL_LEADS[slot]}:{count}")
        baseline = header.baseline[channel] if header.baseline and header.baseline[channel] is not None else 0
        leads[slot] = (samples - baseline) / float(header.adc_gain[channel]) * factors[channel]
    return leads, repaired


def _check_amplitudes(header_path: Path, leads: dict[int, np.ndarray], spans: dict[int, float]) -> None:
    """Refuse a lead whose signal spreads implausibly far from its median (a wrong gain or unit).

    Every sample lies within its lead's peak-to-peak range (``spans``) of the median, so a lead
    whose range is within :data:`MAX_PLAUSIBLE_MV` passes without the percentile.
    """
    for slot, signal in leads.items():
        if spans[slot] <= MAX_PLAUSIBLE_MV:
            continue
        spread = float(np.percentile(np.abs(signal - np.median(signal)), 95))
        if spread > MAX_PLAUSIBLE_MV:
            raise BadSignalError(
                header_path,
                f"lead {CANONICAL_LEADS[slot]}: implausible amplitude (95% of samples within "
                f"{spread:.3g} mV of the median, more than {MAX_PLAUSIBLE_MV:g} mV); check the gain "
                "and units in the header",
            )


def _drop_flat_leads(
    header_path: Path, leads: dict[int, np.ndarray], spans: dict[int, float], flat_leads: str
) -> list[str]:
    """Remove flat leads from ``leads`` and return their names; refuse them instead with
    ``flat_leads="error"``, or when no lead would be left."""
    flat_names = [CANONICAL_LEADS[s] for s in sorted(leads) if spans[s] < FLAT_LEAD_MV]
    if flat_names:
        if flat_leads == "error" or len(flat_names) == len(leads):
            raise BadSignalError(header_path, "flat lead(s) " + ",".join(flat_names))
        for name in flat_names:
            del leads[CANONICAL_LEADS.index(name)]
    return flat_names


def _canonical_layout(
    leads: dict[int, np.ndarray], mapping: dict[int, int], rates: dict[int, float], target_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """The leads resampled to ``target_rate`` in the 12 canonical slots (cut to the shortest),
    and which slots hold a lead."""
    # The leads of one rate and length are resampled as one array [leads, T], row for row the
    # values of one lead at a time.
    groups: dict[tuple[float, int], list[int]] = {}
    for slot, signal in leads.items():
        groups.setdefault((rates[_channel_of(mapping, slot)], len(signal)), []).append(slot)
    resampled: dict[int, np.ndarray] = {}
    for (rate, _), slots in groups.items():
        stacked = resample(np.stack([leads[slot] for slot in slots]), rate, target_rate)
        resampled.update(zip(slots, stacked, strict=True))
    n_samples = min(len(s) for s in resampled.values())
    feats = np.zeros((N_LEADS, n_samples), dtype=np.float64)
    lead_present = np.zeros(N_LEADS, dtype=bool)
    for slot, signal in resampled.items():
        feats[slot] = signal[:n_samples]
        lead_present[slot] = True
    return feats, lead_present


def _channel_of(mapping: dict[int, int], slot: int) -> int:
    return next(channel for channel, s in mapping.items() if s == slot)


def find_records(root: str | Path) -> list[Path]:
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
