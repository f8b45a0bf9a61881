"""Real ECG files as PhysioNet ships them (``$GOODVIEWS_SHARED_DATA/real``), and corrupt copies of them.

The records are PhysioNet/CinC 2021 training records of five sources (Georgia among them), two
2020 phase-1 records, the Georgia reduced-lead forms and twelve PTB-XL records (PROVENANCE.md
beside them). Every corrupt variant is derived from a real record in ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.signal
import wfdb

from conftest import REPO_ROOT, shared_data
from fairseq_goodviews.cli import prepare_physionet2021
from fairseq_goodviews.io.records import RecordError, read_record
from fairseq_goodviews.leads import CANONICAL_LEADS, canonical_lead_name
from fairseq_goodviews.preprocessing import physionet2021, ptbxl, wfdb_dir
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.snomed import dx_to_snomed
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter
from fairseq_goodviews.preprocessing.wfdb_reader import (
    BadSignalError,
    parse_header_comments,
    read_header,
    read_wfdb,
)

QUIET = PrepareOptions(progress=False)
FAST = WfdbConverter(attributes=False)
GEORGIA = Path("physionet2021/training/georgia/g1")


def real() -> Path:
    return shared_data() / "real"


def real_headers() -> list[Path]:
    """Every real record with its signal file (MIMIC-IV-ECG's ``headers_only`` sample has none)."""
    return sorted(
        h for h in real().rglob("*.hea") if h.with_suffix(".dat").is_file() or h.with_suffix(".mat").is_file()
    )


def copy_record(header: Path, folder: Path) -> Path:
    """Copy a real record (header and signal file) into ``folder``; returns the copy's header."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in header.parent.glob(header.stem + ".*"):
        shutil.copy(path, folder / path.name)
    return folder / header.name


def signal_lines(header: Path) -> tuple[list[str], list[str]]:
    """(record line + signal lines, comment lines) of a header, as text."""
    lines = header.read_text().splitlines()
    return [x for x in lines if x.strip() and not x.startswith("#")], [x for x in lines if x.startswith("#")]


def write_header(header: Path, lines: list[str], comments: list[str]) -> None:
    header.write_text("\n".join(lines + comments) + "\n")


def fix_checksums(header: Path, val: np.ndarray) -> None:
    """Write the checksums (16-bit sums, signed as PhysioNet writes them) of ``val`` [C, T] into
    the header, as a device that recorded these samples would."""
    lines, comments = signal_lines(header)
    for row in range(val.shape[0]):
        fields = lines[row + 1].split(" ")
        fields[6] = str((int(val[row].astype(np.int64).sum()) + 32768) % 65536 - 32768)
        lines[row + 1] = " ".join(fields)
    write_header(header, lines, comments)


def wfdb_reference(header: Path, tmp: Path) -> np.ndarray:
    """The record as wfdb reads it [C, T] in header units; a Georgia record line is fixed in a copy first."""
    lines, comments = signal_lines(header)
    name = lines[0].split()[0]
    if name.lower().endswith(".mat"):
        copy = copy_record(header, tmp / "wfdb_reference")
        lines[0] = lines[0].replace(name, header.stem, 1)
        write_header(copy, lines, comments)
        header = copy
    return wfdb.rdrecord(str(header.with_suffix(""))).p_signal.T


# --- item 1: what PhysioNet ships is read, with the right leads, units, rate, age, sex, labels ---------


def test_every_real_record_reads_as_wfdb_reads_it(tmp_path):
    headers = real_headers()
    assert len(headers) == 29
    for header in headers:
        read = read_wfdb(header)
        names = [line.split()[-1] for line in signal_lines(header)[0][1:]]
        reference = wfdb_reference(header, tmp_path / header.stem)  # mV at 500 Hz, file order
        slots = [CANONICAL_LEADS.index(canonical_lead_name(n)) for n in names]
        present = [CANONICAL_LEADS[i] for i in np.flatnonzero(read.record.lead_present)]
        flat = [n for n, row in zip(names, reference, strict=True) if np.ptp(row) == 0]
        assert present == [CANONICAL_LEADS[s] for s in sorted(slots) if CANONICAL_LEADS[s] not in flat], header
        assert read.record.sample_rate == 500.0 and read.source_rate == 500.0
        for row, slot in zip(reference, slots, strict=True):
            if read.record.lead_present[slot]:
                assert np.allclose(read.record.feats[slot], row, atol=1e-6), (header, slot)
        comments = dict(re.findall(r"^#(\w+): *(.*)$", header.read_text(), re.M))
        if "Age" in comments:
            assert read.header.age == float(comments["Age"]) and read.header.sex == comments["Sex"][0]


def test_georgia_headers_are_parsed_by_wfdb_after_the_record_name_is_fixed():
    header = real() / GEORGIA / "E00271.hea"
    with pytest.raises(Exception, match="invalid syntax in record line"):
        wfdb.rdheader(str(header.with_suffix("")))  # the quirk: wfdb-python issues #351, #415
    parsed = read_header(header)
    assert parsed.record_name == "E00271" and parsed.n_sig == 12 and parsed.fs == 500 and parsed.sig_len == 5000
    assert parsed.sig_name[-1] == "V6" and parsed.checksum[0] == 15270 and parsed.adc_gain[0] == 1000.0
    read = read_wfdb(header)
    assert read.header.age == 83 and read.header.sex == "F" and read.header.dx == ("59118001",)


def test_record_line_naming_a_dat_file_is_read_too(tmp_path):
    original = real() / "ptbxl/records500/00000/00001_hr.hea"
    header = copy_record(original, tmp_path)
    lines, comments = signal_lines(header)
    lines[0] = lines[0].replace("00001_hr", "00001_hr.dat", 1)
    write_header(header, lines, comments)
    assert np.array_equal(read_wfdb(header).record.feats, read_wfdb(original).record.feats)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001_hr.dat", "00001_hr.hea"]


def test_reduced_lead_forms_keep_their_leads():
    six = read_wfdb(real() / "physionet2021_reduced_leads/six_leads/E07502")
    two = read_wfdb(real() / "physionet2021_reduced_leads/two_leads/E07500")
    assert [CANONICAL_LEADS[i] for i in np.flatnonzero(six.record.lead_present)] == list(CANONICAL_LEADS[:6])
    assert [CANONICAL_LEADS[i] for i in np.flatnonzero(two.record.lead_present)] == ["I", "II"]
    assert not six.record.feats[6:].any() and not two.record.feats[2:].any()


def test_2020_phase1_abbreviations_get_the_codes_of_the_2021_release():
    a0001 = read_wfdb(real() / "physionet2020/Training_WFDB/A0001")
    assert a0001.header.fields["dx"] == "RBBB"
    # the 2021 release writes right bundle branch block as 59118001 (Georgia E00271 here)
    assert a0001.header.dx == read_wfdb(real() / GEORGIA / "E00271").header.dx == ("59118001",)
    items, skipped, _ = physionet2021.physionet2021_items(real() / "physionet2020")
    meta = {item.key: item.meta for item in items}
    assert not skipped and set(meta) == {"A0001", "A0002"}
    assert meta["A0002"]["dx"] == "426783006" and meta["A0002"]["label"] == "SR"  # "Normal": sinus rhythm
    assert meta["A0001"]["source"] == meta["A0002"]["source"] == "cpsc_2018"  # from the record names
    assert dx_to_snomed(["AF", "I-AVB", "PVC", "STD", "STE", "PAC", "LBBB", "AF", "Foo"]) == (
        ("164889003", "270492004", "164884008", "429622005", "164931005", "284470004", "164909002"),
        ["Foo"],
    )
    info = parse_header_comments(["#Dx: AF, Normal; XYZ"])
    assert info.dx == ("164889003", "426783006") and info.dx_unknown == ("XYZ",)


def test_age_and_sex_from_ludb_and_muse_comments(tmp_path):
    header = copy_record(real() / "physionet2021/training/cpsc_2018/g1/A0689.hea", tmp_path)
    lines, _ = signal_lines(header)
    for comments, age, sex in (
        (["#<age>: 51", "#<sex>: F", "#<diagnoses>:"], 51.0, "F"),
        (["# age 71", "# sex M"], 71.0, "M"),
        (["# Age: 46", "# Gender: Female"], 46.0, "F"),
    ):
        write_header(header, lines, comments)
        read = read_wfdb(header)
        assert (read.header.age, read.header.sex) == (age, sex)
    assert parse_header_comments(["# ageing report"]).age != parse_header_comments(["# ageing report"]).age  # NaN


def test_prefixed_channel_names_are_their_leads(tmp_path):
    original = real() / "physionet2021/training/cpsc_2018/g1/A0689.hea"
    header = copy_record(original, tmp_path)
    lines, comments = signal_lines(header)
    prefixes = ["ECG lead ", "ECG ", "EKG ", "Lead ", "ECG_", "ecg-lead-"]
    for i in range(1, 13):
        name = lines[i].split(" ", 8)[8]
        lines[i] = lines[i][: -len(name)] + prefixes[i % len(prefixes)] + name
    write_header(header, lines, comments)
    read = read_wfdb(header)
    assert read.record.lead_present.all() and read.ignored_channels == []
    assert np.array_equal(read.record.feats, read_wfdb(original).record.feats)


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_microvolt_unit_written_with_a_micro_sign(tmp_path, encoding):
    original = real() / "physionet2021/training/cpsc_2018/g1/A0689.hea"
    header = copy_record(original, tmp_path)
    lines, comments = signal_lines(header)
    lines = [lines[0]] + [x.replace(" 1000/mV ", " 1/\u00b5V ") for x in lines[1:]]  # 1 ADC unit per uV
    header.write_bytes(("\n".join(lines + comments) + "\n").encode(encoding))
    assert np.array_equal(read_wfdb(header).record.feats, read_wfdb(original).record.feats)


def test_multi_frequency_record_is_read_at_each_ecg_channels_rate(tmp_path):
    ptb = real() / "ptbxl/records500/00000/00001_hr"
    source = wfdb.rdrecord(str(ptb)).p_signal.T  # 500 Hz, mV
    frame_rate = 62.47
    # lead I at 4 samples per frame (249.88 Hz), lead II at 8 (499.76 Hz), respiration at 1
    lead_i = scipy.signal.resample_poly(source[0], 6247, 12500)
    lead_ii = scipy.signal.resample_poly(source[1], 6247, 6250)
    frames = min(len(lead_i) // 4, len(lead_ii) // 8)
    resp = np.sin(np.arange(frames) / frame_rate * 2 * np.pi * 0.25)
    signals = [np.round(lead_i[: 4 * frames] * 1000), np.round(lead_ii[: 8 * frames] * 1000), np.round(resp * 1000)]
    wfdb.wrsamp(
        "multi",
        fs=frame_rate,
        units=["mV", "mV", "L"],
        sig_name=["ECG I", "ECG II", "RESP"],
        e_d_signal=[s.astype(np.int64) for s in signals],
        samps_per_frame=[4, 8, 1],
        fmt=["16"] * 3,
        adc_gain=[1000.0] * 3,
        baseline=[0] * 3,
        write_dir=str(tmp_path),
    )
    read = read_wfdb(tmp_path / "multi")
    assert read.source_rate == pytest.approx(499.76) and read.ignored_channels == ["RESP"]
    assert [CANONICAL_LEADS[i] for i in np.flatnonzero(read.record.lead_present)] == ["I", "II"]
    n = read.record.n_samples
    assert abs(n - frames * 8 * 500 / 499.76) <= 2
    inner = slice(50, n - 50)
    for slot in (0, 1):
        r = np.corrcoef(read.record.feats[slot, inner], source[slot, :n][inner])[0, 1]
        assert r > 0.99, (slot, r)
    with pytest.raises(RecordError, match=r"unsupported sample rate 249\.88 Hz \(lead 'ECG I'\) \(minimum 300 Hz\)"):
        read_wfdb(tmp_path / "multi", min_rate=300)


# --- item 2: never a wrong signal --------------------------------------------------------------------


def test_mat_saved_in_another_layout_is_read_right_and_its_checksums_agree(tmp_path):
    header = copy_record(real() / GEORGIA / "E00271.hea", tmp_path / "v5")
    val = scipy.io.loadmat(str(header.with_suffix(".mat")))["val"]
    scipy.io.savemat(str(header.with_suffix(".mat")), {"val": val})  # MAT v5 layout (scipy's default)
    read = read_wfdb(header)
    assert np.array_equal(read.record.feats, read_wfdb(real() / GEORGIA / "E00271").record.feats)
    # What reading it at the PhysioNet byte offset (wfdb's way: "16+24") gives: not the samples,
    # and the header's checksums say so.
    lines, comments = signal_lines(header)
    lines[0] = lines[0].replace("E00271.mat", "E00271", 1)
    write_header(header, lines, comments)
    garbage = wfdb.rdrecord(str(header.with_suffix("")), physical=False)
    assert garbage.calc_checksum() != [c % 65536 for c in read_header(header).checksum]


def test_checksum_mismatch_is_skipped_with_that_reason(tmp_path):
    src = tmp_path / "src"
    header = copy_record(real() / GEORGIA / "E00271.hea", src / "georgia")
    copy_record(real() / GEORGIA / "E01137.hea", src / "georgia")
    val = scipy.io.loadmat(str(header.with_suffix(".mat")))["val"]
    val[6, 2500] += 1500  # one sample of V1 changed by 1.5 mV, header left as it was
    scipy.io.savemat(str(header.with_suffix(".mat")), {"val": val}, format="4")
    with pytest.raises(RecordError, match=r"E00271\.mat: checksum mismatch in signal 'V1'"):
        read_wfdb(header)
    out = tmp_path / "out"
    physionet2021.prepare_physionet2021(src, out, converter=FAST, options=QUIET)
    skipped = pd.read_csv(out / "skipped.csv").set_index("key")
    assert list(skipped.index) == ["E00271"] and skipped.loc["E00271", "category"] == "unreadable"
    assert (
        skipped.loc["E00271", "file"].endswith("E00271.mat") and "checksum mismatch" in skipped.loc["E00271", "reason"]
    )
    assert sorted(p.name for p in (out / "records").iterdir()) == ["E01137.mat"]


@pytest.mark.parametrize(
    "variant, message",
    [
        ("transposed", r"signal array of shape \[5000, 12\], but the header describes 12 signals x 5000 samples"),
        ("short", r"signal array of shape \[12, 4000\], but the header describes 12 signals x 5000 samples"),
        ("millivolts", r"holds non-integer values, not the digital units the header's gain \(1000/mV\) converts"),
        ("wide", r"values outside the 16-format digital range \[-32768, 32767\] in signal"),
        ("gain", r"lead \w+: implausible amplitude .* check the gain and units"),
        ("no_val", r"no signal array 'val' \(variables: a, b\)"),
    ],
)
def test_mat_shape_and_gain_are_checked_against_the_header(tmp_path, variant, message):
    header = copy_record(real() / GEORGIA / "E00271.hea", tmp_path)
    mat = header.with_suffix(".mat")
    val = scipy.io.loadmat(str(mat))["val"]
    content = {
        "transposed": {"val": val.T},
        "short": {"val": val[:, :4000]},
        "millivolts": {"val": val / 1000.0},
        "wide": {"val": np.where(np.arange(5000) == 10, 40000, val.astype(np.int32))},
        "gain": {"val": val},
        "no_val": {"a": val, "b": val},
    }[variant]
    scipy.io.savemat(str(mat), content)
    if variant == "wide":
        fix_checksums(header, content["val"])
    if variant == "gain":  # 1000 ADC units per mV written as 10: every lead 100 times too large
        lines, comments = signal_lines(header)
        write_header(header, [lines[0]] + [x.replace(" 1000/mV ", " 10/mV ") for x in lines[1:]], comments)
    with pytest.raises(RecordError, match=message) as caught:
        read_wfdb(header)
    assert "E00271." in str(caught.value) and "\n" not in str(caught.value)


def test_implausible_sample_rate_is_skipped(tmp_path):
    src = tmp_path / "src"
    header = copy_record(real() / GEORGIA / "E00271.hea", src)
    copy_record(real() / GEORGIA / "E01137.hea", src)
    lines, comments = signal_lines(header)
    lines[0] = lines[0].replace(" 500 ", " 1000000 ", 1)
    write_header(header, lines, comments)
    with pytest.raises(RecordError, match=r"E00271\.hea: implausible sample rate 1e\+06 Hz \(maximum 20000 Hz\)"):
        read_wfdb(header)
    out = tmp_path / "out"
    wfdb_dir.prepare_wfdb_dir(src, out, converter=FAST, options=QUIET)
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["key"]) == ["E00271"] and "implausible sample rate" in skipped.loc[0, "reason"]
    assert read_wfdb(header, max_rate=2e6).record.n_samples == 3  # what an unbounded rate would write


def test_a_handful_of_invalid_samples_is_repaired_and_reported(tmp_path, capsys):
    src = tmp_path / "src"
    header = copy_record(real() / GEORGIA / "E00271.hea", src)
    mat = header.with_suffix(".mat")
    original = scipy.io.loadmat(str(mat))["val"]
    val = original.copy()
    val[1, [1000, 1001, 3000]] = -32768  # three invalid samples of lead II (format 16's invalid value)
    scipy.io.savemat(str(mat), {"val": val}, format="4")
    fix_checksums(header, val)
    read = read_wfdb(header)
    assert read.repaired_samples == ["II:3"]
    lead = read.record.feats[1].astype(np.float64)
    expected = np.interp([1000, 1001, 3000], [999, 1002, 2999, 3001], original[1, [999, 1002, 2999, 3001]] / 1000.0)
    assert np.allclose(lead[[1000, 1001, 3000]], expected, atol=1e-6)
    keep = np.setdiff1d(np.arange(5000), [1000, 1001, 3000])
    assert np.allclose(lead[keep], original[1, keep] / 1000.0, atol=1e-6)

    out = tmp_path / "out"
    physionet2021.prepare_physionet2021(src, out, converter=FAST, options=QUIET)
    assert "1 with invalid samples repaired (repaired_samples column)" in capsys.readouterr().out
    row = pd.read_csv(out / "train.csv").iloc[0]
    assert row["record_id"] == "E00271" and row["repaired_samples"] == "II:3"
    assert read_record(out / row["path"]).meta["repaired_samples"] == "II:3"

    val[1, 1000:1020] = -32768  # a 40 ms gap: too much to invent
    scipy.io.savemat(str(mat), {"val": val}, format="4")
    fix_checksums(header, val)
    with pytest.raises(BadSignalError, match=r"E00271\.hea: lead II: 21 invalid samples .*longest run 20"):
        read_wfdb(header)


# --- output folders ------------------------------------------------------------------------------------


def test_output_path_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    src = real() / "physionet2021_reduced_leads"
    blocker = tmp_path / "out"
    blocker.write_text("not a folder\n")
    for out in (blocker, blocker / "sub"):
        assert prepare_physionet2021.main([str(src), str(out), "--no-attributes", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert (
            err.startswith(f"goodviews-prepare-physionet2021: error: {out}: the output folder ")
            and "is a file, not a folder" in err
        )
        assert "\n" not in err
    assert blocker.read_text() == "not a folder\n" and sorted(tmp_path.iterdir()) == [blocker]


def test_read_only_output_folder_is_a_one_line_error_with_nothing_written():
    base = Path(tempfile.mkdtemp(prefix="goodviews-ro-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        out = base / "out"
        out.mkdir()
        os.chmod(out, 0o555)
        command = [
            sys.executable,
            "-m",
            "fairseq_goodviews.cli.prepare_wfdb_dir",
            str(real() / "physionet2021_reduced_leads"),
            str(out),
            "--no-attributes",
            "--no-progress",
        ]
        if os.geteuid() == 0:  # root writes anywhere: run as nobody to meet the permission check
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot drop privileges")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HOME=str(base))
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(base), timeout=120)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert (
            last == f"goodviews-prepare-wfdb-dir: error: {out}: cannot write to the output folder (permission denied)"
        )
        assert "Traceback" not in done.stderr
        assert list(out.iterdir()) == []
    finally:
        os.chmod(base / "out", 0o755)
        shutil.rmtree(base)


# --- item 3: every preparer on the real folder ----------------------------------------------------------


def test_every_preparer_writes_every_usable_real_record(tmp_path):
    runs = {
        "physionet2021": physionet2021.prepare_physionet2021(
            real() / "physionet2021", tmp_path / "p21", converter=FAST, options=QUIET
        ),
        "physionet2020": physionet2021.prepare_physionet2021(
            real() / "physionet2020", tmp_path / "p20", converter=FAST, options=QUIET
        ),
        "reduced": physionet2021.prepare_physionet2021(
            real() / "physionet2021_reduced_leads", tmp_path / "p21r", converter=FAST, options=QUIET
        ),
        "wfdb_dir": wfdb_dir.prepare_wfdb_dir(real(), tmp_path / "all", converter=FAST, options=QUIET),
        "ptbxl": ptbxl.prepare_ptbxl(real() / "ptbxl", tmp_path / "ptbxl", converter=FAST, options=QUIET),
    }
    written = {name: result.records for name, result in runs.items()}
    assert written == {"physionet2021": 13, "physionet2020": 2, "reduced": 2, "wfdb_dir": 29, "ptbxl": 12}
    assert all(not r.skipped for name, r in runs.items() if name not in ("ptbxl", "wfdb_dir"))
    # the MIMIC-IV-ECG sample is headers only: each of its records is reported as a skip, not read
    assert {Path(s.file).parts[-5] for s in runs["wfdb_dir"].skipped} == {"files"}
    assert len(runs["wfdb_dir"].skipped) == len(list((real() / "mimic_iv_ecg").rglob("*.hea")))
    # the PTB-XL table lists 500 records of which 12 were downloaded: the rest are missing files
    assert {s.category for s in runs["ptbxl"].skipped} == {"missing_file"} and len(runs["ptbxl"].skipped) == 488
    table = pd.concat(runs["physionet2021"].splits.values()).set_index("record_id")
    assert table["source"].value_counts().to_dict() == {
        "chapman_shaoxing": 4,
        "georgia": 3,
        "cpsc_2018": 2,
        "ningbo": 2,
        "ptb-xl": 2,
    }
    assert table.loc["JS11438", "flat_leads"] == "V1,V2,V3,V4,V5,V6"  # recorded as zeros: absent
    assert table.loc["E03823", "label"] == "GSVT" and table.loc["E00271", "dx"] == "59118001"
    ptb = pd.concat(runs["ptbxl"].splits.values()).set_index("record_id")
    assert ptb.loc["00001_hr", "age"] == 56 and ptb.loc["00001_hr", "sex"] == "F"
