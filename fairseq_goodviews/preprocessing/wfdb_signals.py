"""Digital samples of a WFDB record's signal files: ``.mat`` files (:func:`read_mat`), binary
``.dat`` files (:func:`read_dat`), and the header's checksums over them (:func:`verify_checksums`).

:func:`~fairseq_goodviews.preprocessing.wfdb_reader.read_wfdb` turns these samples into a record;
every problem raises :class:`~fairseq_goodviews.io.records.RecordError` naming the bad file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
import wfdb
from wfdb.io import _signal as wfdb_signal

from fairseq_goodviews.io.records import RecordError


def read_mat(signal_path: Path, header: wfdb.Record, channels: Sequence[int]) -> dict[int, np.ndarray]:
    """Digital samples [T] of ``channels`` (header indices) from a PhysioNet-style ``.mat`` file.

    Read with :func:`scipy.io.loadmat`, so any MAT layout (v4 as PhysioNet ships, v5 as MATLAB and
    scipy save by default) gives the stored values; the array must be ``val`` (or the file's
    only 2-D numeric array) of shape [signals in this file, ``sig_len``] holding whole numbers in
    the format's digital range. Invalid samples come back as NaN.
    """
    in_file = [c for c in range(header.n_sig) if header.file_name[c] == header.file_name[channels[0]]]
    if any((header.samps_per_frame[c] or 1) != 1 for c in in_file):
        raise RecordError(signal_path, "multi-frequency signals in a .mat file are not supported")
    try:
        content = scipy.io.loadmat(str(signal_path))
    except NotImplementedError:
        raise RecordError(signal_path, "unreadable .mat file (MATLAB v7.3/HDF5 layout; save it as v4 or v5)") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ... for garbled files
        raise RecordError(signal_path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from None
    arrays = {
        k: v
        for k, v in content.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.ndim == 2 and v.dtype.kind in "iuf"
    }
    if "val" in arrays:
        values = arrays["val"]
    elif len(arrays) == 1:
        values = next(iter(arrays.values()))
    else:
        raise RecordError(signal_path, f"no signal array 'val' (variables: {', '.join(sorted(arrays)) or 'none'})")
    expected = (len(in_file), int(header.sig_len))
    if values.shape != expected:
        raise RecordError(
            signal_path,
            f"signal array of shape {list(values.shape)}, but the header describes "
            f"{expected[0]} signals x {expected[1]} samples",
        )
    integer = values.dtype.kind in "iu"  # whole, finite numbers only
    if not integer:
        finite = np.isfinite(values)
        if not np.array_equal(values[finite], np.round(values[finite])):
            raise RecordError(
                signal_path,
                "holds non-integer values, not the digital units the header's gain "
                f"({header.adc_gain[channels[0]]:g}/{header.units[channels[0]]}) converts",
            )
    values = values.astype(np.float64)
    out = {}
    for row, channel in enumerate(in_file):
        if channel in channels:
            low, high = wfdb_signal._digi_bounds(str(header.fmt[channel]))
            column = values[row]
            valid = column if integer else column[np.isfinite(column)]
            if valid.size and (valid.min() < low or valid.max() > high):
                raise RecordError(
                    signal_path,
                    f"values outside the {header.fmt[channel]}-format digital range "
                    f"[{low}, {high}] in signal {header.sig_name[channel]!r}",
                )
            invalid = wfdb_signal.INVALID_SAMPLE_VALUE.get(str(header.fmt[channel]))
            if invalid is not None:
                column = np.where(column == invalid, np.nan, column)
            out[channel] = column
    return out


def read_dat(header_path: Path, header: wfdb.Record, channels: Sequence[int]) -> dict[int, np.ndarray]:
    """Digital samples [T * samples per frame] of ``channels`` from WFDB binary signal files.

    Read by wfdb's own signal-file reader with the fields of ``header`` as
    :func:`~.wfdb_reader.parse_header_text` parsed them: the samples ``wfdb.rdrecord(...,
    physical=False, smooth_frames=False)`` gives, without wfdb parsing the header a second time
    (which costs more than reading the samples).
    """
    try:
        samples = wfdb_signal._rd_segment(
            file_name=header.file_name,
            dir_name=os.path.abspath(header_path.parent),
            pn_dir=None,
            fmt=header.fmt,
            n_sig=header.n_sig,
            sig_len=header.sig_len,
            byte_offset=header.byte_offset,
            samps_per_frame=header.samps_per_frame,
            skew=header.skew,
            init_value=header.init_value,
            sampfrom=0,
            sampto=header.sig_len,
            channels=list(channels),
            ignore_skew=False,
        )
    except Exception as exc:  # truncated or garbled signal files surface as ValueError, EOFError, ...
        files = sorted({str(header.file_name[c]) for c in channels})
        where = header_path.parent / files[0] if len(files) == 1 else header_path
        raise RecordError(where, f"unreadable signal file ({type(exc).__name__}: {exc})") from None
    out = {}
    for column, channel in enumerate(channels):
        values = np.asarray(samples[column], dtype=np.float64)
        invalid = wfdb_signal.INVALID_SAMPLE_VALUE.get(str(header.fmt[channel]))
        if invalid is not None:
            values[values == invalid] = np.nan
        out[channel] = values
    return out


def verify_checksums(header: wfdb.Record, header_path: Path, digital: dict[int, np.ndarray]) -> None:
    """Compare each signal's 16-bit sum of its stored samples (invalid ones as the format's
    invalid value) with the header's checksum. A checksum of 0 counts as not given: converters
    write 0 as a placeholder, and a true sum of 0 (1 in 65,536) only goes unchecked."""
    for channel, samples in digital.items():
        expected = header.checksum[channel] if header.checksum else None
        if expected is None or expected == 0:
            continue
        invalid = wfdb_signal.INVALID_SAMPLE_VALUE.get(str(header.fmt[channel])) or 0
        total = int(np.where(np.isnan(samples), invalid, samples).sum())
        if (total - expected) % 65536:
            name = header.sig_name[channel]
            raise RecordError(
                header_path.parent / str(header.file_name[channel]),
                f"checksum mismatch in signal {name!r}: the samples sum to {total % 65536}, the header "
                f"({header_path.name}) says {expected % 65536}; the file is not what its header describes",
            )
