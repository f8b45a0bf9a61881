"""The WFDB reader: lead mapping, units, resampling, header comments, and every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import wfdb
from wfdb.io import _header as wfdb_header_fields
from wfdb.io import header as wfdb_header

from conftest import shared_data
from fairseq_goodviews.io.records import RecordError
from fairseq_goodviews.io.signal import rational_ratio
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.wfdb_reader import (
    NAME_WITH_EXTENSION,
    BadSignalError,
    MissingFileError,
    find_records,
    header_path_of,
    map_channels,
    parse_header_comments,
    parse_record_line,
    parse_signal_lines,
    read_header,
    read_header_comments,
    read_wfdb,
)
from fairseq_goodviews.preprocessing.wfdb_signals import read_dat
from fairseq_goodviews.synthetic.wfdb_layouts import (
    ecg_signal,
    write_physionet2021_tree,
    write_wfdb,
    write_wfdb_dir_tree,
)

# --- the real shared records ------------------------------------------------------------------


def test_ptb_diagnostic_record_maps_lower_case_leads_and_reports_frank_leads():
    path = shared_data() / "wfdb" / "s0010_re"
    read = read_wfdb(path)
    assert read.record.lead_present.all()
    assert read.ignored_channels == ["vx", "vy", "vz"]
    assert read.source_rate == 1000.0 and read.record.sample_rate == 500.0
    assert read.record.feats.shape == (12, 19200) and read.record.feats.dtype == np.float32
    assert read.header.age == 81.0 and read.header.sex == "F"
    original = wfdb.rdrecord(str(path)).p_signal.T  # mV, 1000 Hz, file order = canonical order
    assert np.allclose(original[1] - original[0], original[2], atol=0.01)  # III = II - I (file sanity)


def test_ptb_diagnostic_resampling_preserves_the_signal():
    path = shared_data() / "wfdb" / "s0010_re"
    original = wfdb.rdrecord(str(path), channels=list(range(12))).p_signal.T
    resampled = read_wfdb(path).record.feats.astype(np.float64)
    # Matching instants: sample k at 500 Hz is sample 2k at 1000 Hz. Away from the ends, the
    # anti-aliasing filter leaves an error far below the signal (ECG energy sits below 100 Hz).
    inner = slice(100, resampled.shape[1] - 100)
    error = resampled[:, inner] - original[:, ::2][:, inner]
    assert np.sqrt(np.mean(error**2)) < 0.02 * np.sqrt(np.mean(original**2)) + 0.01
    # Spectrum below 100 Hz: Welch PSDs agree within 10 % in total power.
    f1, p1 = scipy.signal.welch(original[1], fs=1000, nperseg=2048)
    f2, p2 = scipy.signal.welch(resampled[1], fs=500, nperseg=1024)
    band1 = p1[(f1 > 0.5) & (f1 < 100)].sum() * (f1[1] - f1[0])
    band2 = p2[(f2 > 0.5) & (f2 < 100)].sum() * (f2[1] - f2[0])
    assert band2 == pytest.approx(band1, rel=0.1)


def test_challenge_mat_record_keeps_ii_and_reports_bare_v_and_pleth():
    read = read_wfdb(shared_data() / "wfdb" / "a103l")
    present = [CANONICAL_LEADS[i] for i in np.flatnonzero(read.record.lead_present)]
    assert present == ["II"]  # bare 'V' is a monitor lead of unknown position: not mapped
    assert read.ignored_channels == ["V", "PLETH"]
    assert read.source_rate == 250.0
    assert read.record.feats.shape == (12, 82500 * 2)
    assert not read.record.feats[~read.record.lead_present].any()
    original = wfdb.rdrecord(str(shared_data() / "wfdb" / "a103l"), channels=[0]).p_signal[:, 0]
    upsampled = read.record.feats[1].astype(np.float64)
    inner = slice(200, len(original) - 200)
    assert np.abs(upsampled[::2][inner] - original[inner]).max() < 0.05


# --- mapping, ratios, comments ----------------------------------------------------------------


def test_channel_mapping_is_case_insensitive_with_aliases_and_duplicates_reported():
    mapping, ignored = map_channels(["AVR", "mlii", "c1", "V", "ABP", "ii", "Lead I"])
    assert mapping == {0: 3, 1: 1, 2: 6, 6: 0}
    assert ignored == ["V", "ABP", "ii"]


@pytest.mark.parametrize(
    "source, target, expected",
    [
        (1000, 500, (1, 2)),
        (250, 500, (2, 1)),
        (257, 500, (500, 257)),
        (360, 500, (25, 18)),
        (500, 500, (1, 1)),
    ],
)
def test_rational_resampling_ratio(source, target, expected):
    assert rational_ratio(source, target) == expected


def test_header_comments_of_both_styles():
    challenge = parse_header_comments(["Age: 53", "Sex: Male", "Dx: 164889003,59118001", "Rx: Unknown"])
    assert (challenge.age, challenge.sex, challenge.dx) == (53.0, "M", ("164889003", "59118001"))
    ptb = parse_header_comments(["age: 81", "sex: female", "ECG date: 01/10/1990", "Diagnose:"])
    assert (ptb.age, ptb.sex, ptb.dx) == (81.0, "F", ())
    unknown = parse_header_comments(["Age: NaN", "Sex: Unknown", "patient: P17"])
    assert np.isnan(unknown.age) and unknown.sex == "" and unknown.patient_id == "P17"


# --- synthetic records ------------------------------------------------------------------------


def _write(tmp_path: Path, names, fs=500.0, seconds=4.0, storage="dat", units="mV", comments=(), signal=None):
    if signal is None:
        full = ecg_signal(seconds, fs, 70.0, seed=1)
        index = {n.lower(): i for i, n in enumerate(CANONICAL_LEADS)}
        signal = np.stack([full[index.get(n.lower(), 1)] for n in names])
    return write_wfdb(tmp_path / "rec", signal, fs, names, storage=storage, units=units, comments=comments)


def test_any_order_subset_and_microvolt_units(tmp_path):
    names = ["V6", "AVF", "I", "ii"]
    full = ecg_signal(4.0, 500.0, 70.0, seed=3)
    signal = np.stack([full[11], full[5], full[0], full[1]])
    _write(tmp_path, names, units="uV", signal=signal)
    read = read_wfdb(tmp_path / "rec.hea")
    assert [CANONICAL_LEADS[i] for i in np.flatnonzero(read.record.lead_present)] == ["I", "II", "aVF", "V6"]
    for slot, column in ((11, 0), (5, 1), (0, 2), (1, 3)):
        assert np.allclose(read.record.feats[slot], signal[column], atol=2e-3)  # mV after uV -> mV


def test_mat_storage_and_odd_rate(tmp_path):
    _write(tmp_path, list(CANONICAL_LEADS), fs=257.0, storage="mat", comments=["Age: 60", "Sex: Female"])
    read = read_wfdb(tmp_path / "rec")
    assert read.source_rate == 257.0
    assert read.record.feats.shape[1] == int(np.ceil(4.0 * 257) * 500 / 257)
    assert read.header.age == 60.0 and read.header.sex == "F"


def test_missing_header_names_the_file(tmp_path):
    with pytest.raises(MissingFileError, match=r"rec\.hea: header file not found"):
        read_wfdb(tmp_path / "rec")


def test_malformed_header_names_the_file(tmp_path):
    (tmp_path / "rec.hea").write_text("this is not a header\n")
    with pytest.raises(RecordError, match=r"rec\.hea: malformed header"):
        read_wfdb(tmp_path / "rec")


def test_negative_rate_in_header_is_not_silently_defaulted(tmp_path):
    _write(tmp_path, ["I", "II"])
    header = tmp_path / "rec.hea"
    lines = header.read_text().splitlines()
    lines[0] = lines[0].replace(" 500 ", " -5 ")
    header.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=r"rec\.hea: unsupported sample rate -5 Hz"):
        read_wfdb(tmp_path / "rec")


def test_rate_below_minimum(tmp_path):
    _write(tmp_path, ["I", "II"], fs=50.0)
    with pytest.raises(RecordError, match=r"rec\.hea: unsupported sample rate 50 Hz \(minimum 100 Hz\)"):
        read_wfdb(tmp_path / "rec")
    assert read_wfdb(tmp_path / "rec", min_rate=40).record.sample_rate == 500.0


def test_truncated_signal_file(tmp_path):
    _write(tmp_path, ["I", "II", "V1"])
    dat = tmp_path / "rec.dat"
    with open(dat, "r+b") as handle:
        handle.truncate(dat.stat().st_size // 2)
    with pytest.raises(RecordError, match=r"rec\.dat: (truncated|unreadable)"):
        read_wfdb(tmp_path / "rec")


def test_truncated_at_a_frame_boundary_is_caught(tmp_path):
    _write(tmp_path, ["I", "II"])
    dat = tmp_path / "rec.dat"
    with open(dat, "r+b") as handle:
        handle.truncate(2 * 2 * 1000)  # 1000 whole frames of 2 channels x 2 bytes
    with pytest.raises(RecordError, match=r"rec\.dat: (truncated|unreadable)"):
        read_wfdb(tmp_path / "rec")


def test_unreadable_mat_file(tmp_path):
    _write(tmp_path, ["I", "II"], storage="mat")
    (tmp_path / "rec.mat").write_bytes(b"not a matlab file at all")
    with pytest.raises(RecordError, match=r"rec\.mat: (unreadable|truncated)"):
        read_wfdb(tmp_path / "rec")


def test_missing_signal_file(tmp_path):
    _write(tmp_path, ["I", "II"])
    (tmp_path / "rec.dat").unlink()
    with pytest.raises(MissingFileError, match=r"rec\.dat: signal file not found"):
        read_wfdb(tmp_path / "rec")


def test_edited_signal_file_fails_its_checksum(tmp_path):
    _write(tmp_path, ["I", "II"])
    dat = tmp_path / "rec.dat"
    raw = bytearray(dat.read_bytes())
    raw[400:402] = np.int16(-32768).tobytes()  # sample 100 of lead I, behind the header's back
    dat.write_bytes(bytes(raw))
    with pytest.raises(RecordError, match=r"rec\.dat: checksum mismatch in signal 'I'"):
        read_wfdb(tmp_path / "rec")


def test_invalid_samples_written_by_wfdb_are_repaired_up_to_a_limit(tmp_path):
    full = ecg_signal(8.0, 500.0, 70.0, seed=4)
    digital = np.round(full[:2] * 1000).astype(np.int64).T  # [T, 2]
    few, many = digital.copy(), digital.copy()
    few[[700, 701, 1500], 1] = -32768  # WFDB's invalid-sample value for format 16: 3 of 4000 samples
    many[700:720, 1] = -32768  # a 40 ms gap
    for name, values in (("few", few), ("many", many)):
        wfdb.wrsamp(
            name,
            fs=500,
            units=["mV", "mV"],
            sig_name=["I", "II"],
            d_signal=values,
            fmt=["16", "16"],
            adc_gain=[1000.0, 1000.0],
            baseline=[0, 0],
            write_dir=str(tmp_path),
        )
    read = read_wfdb(tmp_path / "few")
    assert read.repaired_samples == ["II:3"]
    lead = read.record.feats[1].astype(np.float64)
    assert lead[700] == pytest.approx(digital[699, 1] / 1000 + (digital[702, 1] - digital[699, 1]) / 3000, abs=1e-6)
    keep = np.setdiff1d(np.arange(4000), [700, 701, 1500])
    assert np.allclose(lead[keep], digital[keep, 1] / 1000, atol=1e-6)
    with pytest.raises(BadSignalError, match=r"many\.hea: lead II: 20 invalid samples .*longest run 20"):
        read_wfdb(tmp_path / "many")


def test_flat_lead_is_marked_absent_or_an_error(tmp_path):
    full = ecg_signal(4.0, 500.0, 70.0, seed=2)
    signal = np.stack([full[0], np.zeros(full.shape[1]), full[6]])
    _write(tmp_path, ["I", "II", "V1"], signal=signal)
    read = read_wfdb(tmp_path / "rec")
    assert read.flat_leads == ["II"]
    assert [CANONICAL_LEADS[i] for i in np.flatnonzero(read.record.lead_present)] == ["I", "V1"]
    assert not read.record.feats[1].any()
    with pytest.raises(BadSignalError, match=r"rec\.hea: flat lead\(s\) II"):
        read_wfdb(tmp_path / "rec", flat_leads="error")
    _write(tmp_path, ["I", "II"], signal=np.zeros((2, 2000)))
    with pytest.raises(BadSignalError, match=r"rec\.hea: flat lead\(s\) I,II"):
        read_wfdb(tmp_path / "rec")


def test_no_ecg_lead(tmp_path):
    _write(tmp_path, ["PLETH", "ABP", "V"])
    with pytest.raises(BadSignalError, match=r"rec\.hea: no ECG lead among channels PLETH,ABP,V"):
        read_wfdb(tmp_path / "rec")


def test_find_records_recursive_and_empty_directory(tmp_path):
    with pytest.raises(RecordError, match="no WFDB records"):
        find_records(tmp_path)
    write_wfdb(tmp_path / "a" / "b" / "r1", np.ones((1, 100)), 500.0, ["I"])
    write_wfdb(tmp_path / "r0", np.ones((1, 100)), 500.0, ["I"])
    assert find_records(tmp_path) == [tmp_path / "a" / "b" / "r1", tmp_path / "r0"]


def test_header_comments_read_as_text(tmp_path):
    source = shared_data() / "wfdb"
    for name in ("s0010_re.hea",):
        shutil.copy(source / name, tmp_path / name)
    info = read_header_comments(tmp_path / "s0010_re")
    assert info.age == 81.0 and info.sex == "F" and info.fields["ecg date"] == "01/10/1990"


# --- the header parser and the signal-file reader against wfdb's own ----------------------------

_RECORD_LINES = [
    "rec 12 500 5000",
    "100/2 3 360/720(4) 650000 12:30:15 25/12/2000",
    "rec 2 250.00000001 100",
    "rec 2 257.5/1 100 0:0:5.5",
    "rec 2",
    "rec",
    "rec x 500",
]
_SIGNAL_LINES = [
    ["100.dat 212 200 11 1024 995 -22131 0 MLII", "100.dat 212 200 11 1024 1011 20052 0 V5"],
    ["x.dat 16x4:2+10 0(5)/uV 12 3 7 9 0 V1"],  # a gain of 0 reads as 200
    ["x.dat 16 100/mV 16 -5"],  # no baseline: the ADC zero
    ["x.dat 16", "x.dat 16 250(-3)/µV"],
    ["E00271.mat 16+24 1000/mV 16 0 28 -1716 0 I"],
    ["x.dat 80 200.5(3)/mV 8 0 0 0 0 ECG lead II"],
    ["x.dat sixteen"],
]


def _same_as_wfdb(ours, theirs, line):
    try:
        expected = theirs(line)
    except Exception as exc:
        with pytest.raises(type(exc)):
            ours(line)
        return
    assert ours(line) == expected


@pytest.mark.parametrize("line", _RECORD_LINES)
def test_record_lines_parse_as_wfdb_parses_them(line):
    _same_as_wfdb(parse_record_line, wfdb_header_fields._parse_record_line, line)


@pytest.mark.parametrize("lines", _SIGNAL_LINES)
def test_signal_lines_parse_as_wfdb_parses_them(lines):
    _same_as_wfdb(parse_signal_lines, wfdb_header_fields._parse_signal_lines, lines)


def test_every_real_and_synthetic_header_parses_as_wfdb_parses_it(tmp_path):
    write_wfdb_dir_tree(tmp_path / "generic", n_records=5)
    write_physionet2021_tree(tmp_path / "physionet", n_per_subset=1, subsets=("georgia", "cpsc_2018"))
    headers = sorted(tmp_path.rglob("*.hea")) + sorted(shared_data().rglob("*.hea"))
    assert len(headers) > 30
    for header in headers:
        lines, _ = wfdb_header.parse_header_content(header.read_text(errors="replace"))
        record_line = NAME_WITH_EXTENSION.sub(r"\g<name>", lines[0], count=1)
        assert parse_record_line(record_line) == wfdb_header_fields._parse_record_line(record_line), header
        assert parse_signal_lines(lines[1:]) == wfdb_header_fields._parse_signal_lines(lines[1:]), header


def test_dat_samples_are_wfdbs_digital_samples(tmp_path):
    records = [h.with_suffix("") for h in write_wfdb_dir_tree(tmp_path, n_records=5)]
    records.append(shared_data() / "wfdb" / "s0010_re")
    records += sorted(p.with_suffix("") for p in (shared_data() / "real" / "ptbxl").rglob("*.hea"))[:2]
    for record in records:
        header = read_header(record)
        channels = list(range(header.n_sig))
        expected = wfdb.rdrecord(str(record), physical=False, smooth_frames=False).e_d_signal
        got = read_dat(header_path_of(record), header, channels)
        for channel in channels:
            np.testing.assert_array_equal(got[channel], np.asarray(expected[channel], dtype=np.float64))


def test_a_record_line_naming_its_dat_file_reads_the_same_record(tmp_path):
    _write(tmp_path, list(CANONICAL_LEADS))
    plain = read_wfdb(tmp_path / "rec")
    header = tmp_path / "rec.hea"
    header.write_text(header.read_text().replace("rec 12", "rec.dat 12", 1))
    named = read_wfdb(tmp_path / "rec")
    assert named.record.feats.tobytes() == plain.record.feats.tobytes()
