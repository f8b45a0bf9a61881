"""The synthetic ECG model and its Chapman layout: layout, lead relations, true attributes, rhythms,
determinism."""

from __future__ import annotations

import math
import os
import re
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from scipy.signal import butter, filtfilt, find_peaks

from conftest import console_script
from fairseq_goodviews.cli.synthetic_chapman import main as synthetic_chapman_main
from fairseq_goodviews.labels import RHYTHM_TO_CLASS
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.synthetic import distributions
from fairseq_goodviews.synthetic.chapman import COLUMNS, generate_chapman, write_signal_csv
from fairseq_goodviews.synthetic.dipole import FS
from fairseq_goodviews.synthetic.ecg import N_SAMPLES, synthesize_record
from fairseq_goodviews.synthetic.targets import Targets, sample_targets, targets_from_row

REPO = Path(__file__).resolve().parents[2]
LIMB = {name: i for i, name in enumerate(CANONICAL_LEADS)}
RECORDED = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1..V6: the leads the others derive from


def real_diagnostics() -> Path:
    root = os.environ.get("GOODVIEWS_SHARED_DATA")
    if not root:
        pytest.skip("GOODVIEWS_SHARED_DATA is not set (CI sets it to ../shared/data): no real Diagnostics.xlsx")
    return Path(root) / "chapman" / "Diagnostics.xlsx"


def read_signal(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",")


def sheet_rows(path: Path, limit: int | None = None) -> list[tuple]:
    """Raw cell values of the first sheet (header included), as openpyxl reads them."""
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        return [row for _, row in zip(range(limit), rows, strict=False)] if limit else list(rows)
    finally:
        book.close()


def r_peaks(leads: np.ndarray) -> np.ndarray:
    """Independent QRS detection (Pan-Tompkins style): 5-20 Hz band, slope energy summed over the
    recorded leads, 150 ms moving integration, peaks at least 180 ms apart."""
    b, a = butter(2, [5.0, 20.0], btype="band", fs=FS)
    slope = np.diff(filtfilt(b, a, leads[:, RECORDED], axis=0), axis=0)
    energy = np.convolve((slope**2).sum(axis=1), np.ones(75) / 75, mode="same")
    peaks, _ = find_peaks(energy, height=0.15 * np.percentile(energy, 99), distance=int(0.18 * FS))
    return peaks


def detected_rate(leads: np.ndarray) -> float:
    return 60.0 * FS / float(np.mean(np.diff(r_peaks(leads))))


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "chapman"
    table = generate_chapman(out, 40, seed=11)
    return out, table


def test_layout_matches_the_real_release(database):
    out, table = database
    assert openpyxl.load_workbook(out / "Diagnostics.xlsx", read_only=True).sheetnames == ["Sheet1"]
    rows = sheet_rows(out / "Diagnostics.xlsx")
    assert rows[0] == COLUMNS
    assert len(rows) == 41
    for row in rows[1:]:  # the real file stores the first five columns (PatientAge too) as text
        assert all(isinstance(v, str) for v in row[:5]) and all(isinstance(v, int) for v in row[5:])
        assert re.fullmatch(r"MUSE_2018\d{4}_\d{6}_\d{2}000", row[0])
    assert table["FileName"].is_unique and list(table.columns) == list(COLUMNS)
    assert set(table["Gender"]) <= {"MALE", "FEMALE"}
    assert set(table["Rhythm"]) <= set(RHYTHM_TO_CLASS)
    files = sorted(p.name for p in (out / "ECGDataDenoised").iterdir())
    assert files == sorted(f"{name}.csv" for name in table["FileName"])  # no temporary files left
    signal = read_signal(out / "ECGDataDenoised" / files[0])
    assert signal.shape == (N_SAMPLES, 12)
    assert 200 < np.abs(signal).max() < 8000  # microvolts


def test_limb_lead_relations_hold_on_the_csv_files(database):
    out, table = database
    for name in table["FileName"]:
        x = read_signal(out / "ECGDataDenoised" / f"{name}.csv")
        i, ii = x[:, LIMB["I"]], x[:, LIMB["II"]]
        tol = 1.5e-3 + 1e-9  # each value is rounded to 3 decimals
        assert np.abs(x[:, LIMB["III"]] - (ii - i)).max() <= tol
        assert np.abs(x[:, LIMB["aVR"]] + (i + ii) / 2).max() <= tol
        assert np.abs(x[:, LIMB["aVL"]] - (i - ii / 2)).max() <= tol
        assert np.abs(x[:, LIMB["aVF"]] - (ii - i / 2)).max() <= tol


def test_true_attributes_agree_with_the_waveform(database):
    out, table = database
    for row in table.itertuples():
        x = read_signal(out / "ECGDataDenoised" / f"{row.FileName}.csv")
        peaks = r_peaks(x)
        rate = 60.0 * FS / np.mean(np.diff(peaks))
        assert abs(rate - row.VentricularRate) <= max(3.0, 0.05 * row.VentricularRate), row
        # QRSCount counts the complexes wholly inside the record: every detection farther than
        # 150 ms from the edges, and at most every detection.
        core = np.count_nonzero((peaks >= 0.15 * FS) & (peaks < N_SAMPLES - 0.15 * FS))
        assert core <= row.QRSCount <= len(peaks), row
        assert row.QRSDuration == 2 * (row.QOffset - row.QOnset)
        assert row.QTInterval == 2 * (row.TOffset - row.QOnset)
        assert abs(row.QTCorrected - row.QTInterval / math.sqrt(60.0 / row.VentricularRate)) <= max(
            3.0, 0.015 * row.QTCorrected
        )
        assert 0 <= row.QOnset < row.QOffset < row.TOffset < 600
        assert -90 < row.RAxis <= 270 and -90 < row.TAxis <= 270
        if row.Rhythm in ("SR", "SB", "ST"):
            assert abs(row.AtrialRate - row.VentricularRate) <= 3, row


def test_classes_separate_by_rate_and_rr_regularity():
    rates = {"AFIB": [], "GSVT": [], "SB": [], "SR": []}
    cv = {"AFIB": [], "SR": []}
    for index in range(240):
        row, leads = synthesize_record(3, index)
        rates[RHYTHM_TO_CLASS[row["Rhythm"]]].append(detected_rate(leads))
        if row["Rhythm"] in cv:
            rr = np.diff(r_peaks(leads))
            cv[row["Rhythm"]].append(rr.std() / rr.mean())
    sb, sr, gsvt, afib = (np.array(rates[c]) for c in ("SB", "SR", "GSVT", "AFIB"))
    assert np.mean(sb < 60.5) > 0.95 and np.median(sb) < 60
    assert np.mean((sr > 59) & (sr < 101)) > 0.95
    assert np.median(gsvt) > 100 and np.mean(gsvt > 95) > 0.85
    # Class means of the real file: AFIB 99, GSVT 127, SB 55, SR 75 bpm.
    assert abs(sb.mean() - 55) < 3 and abs(sr.mean() - 75) < 5
    assert abs(gsvt.mean() - 127) < 15 and abs(afib.mean() - 99) < 15
    assert np.median(cv["AFIB"]) > 0.12  # irregularly irregular
    assert np.median(cv["SR"]) < 0.05


def _targets(rhythm: str, codes: set[str] = frozenset(), rate: float = 70.0, qrsd: float = 90.0) -> Targets:
    return Targets(
        rhythm=rhythm,
        codes=frozenset(codes),
        age=55,
        male=True,
        rate=rate,
        qrsd=qrsd,
        qt=400.0 * math.sqrt(60.0 / rate),
        raxis=50.0,
        taxis=40.0,
    )


def _median_lead(leads: np.ndarray, lead: str) -> np.ndarray:
    """Median beat of one lead, 600 samples with the detected R peak at sample 300."""
    beats = [leads[p - 300 : p + 300, LIMB[lead]] for p in r_peaks(leads) if 300 <= p < N_SAMPLES - 300]
    return np.median(beats, axis=0)


def test_beat_conditions_change_the_waveform():
    normal, normal_leads = synthesize_record(0, 1, _targets("SR"))
    rbbb, rbbb_leads = synthesize_record(0, 1, _targets("SR", {"RBBB"}, qrsd=140.0))
    assert normal["QRSDuration"] < 105 and rbbb["QRSDuration"] >= 125
    # rSR' in V1: the last large deflection of the QRS in V1 is positive (R').
    v1 = _median_lead(rbbb_leads, "V1")
    qrs = v1[240:360] - v1[200:210].mean()
    big = np.flatnonzero(np.abs(qrs) > 0.5 * np.abs(qrs).max())
    assert qrs[big[-1]] > 0 and qrs.min() < -0.3 * qrs.max()
    # First-degree AV block: the P wave moves away from the QRS (lead II, P peak before the R peak).
    pr = {}
    for codes in ((), ("1AVB",)):
        _, leads = synthesize_record(0, 2, _targets("SB", set(codes), rate=55.0))
        ii = _median_lead(leads, "II")
        pr[codes] = 300 - (60 + int(np.argmax(ii[60:270])))
    assert pr[("1AVB",)] - pr[()] >= 25  # samples, i.e. >= 50 ms longer
    # Premature ventricular beats shorten one RR and lengthen the next (compensatory pause).
    _, vpb_leads = synthesize_record(0, 3, _targets("SR", {"VPB"}))
    rr = np.diff(r_peaks(vpb_leads))
    assert rr.min() < 0.8 * np.median(rr) and rr.max() > 1.2 * np.median(rr)
    # Atrial fibrillation has no P waves: nothing P-like precedes the QRS in lead II.
    _, af_leads = synthesize_record(0, 4, _targets("AFIB"))
    sr_ii, af_ii = _median_lead(normal_leads, "II"), _median_lead(af_leads, "II")
    assert np.ptp(af_ii[150:265]) < 0.5 * np.ptp(sr_ii[150:265])


def test_same_seed_same_files_whatever_the_worker_count(tmp_path):
    tables = {}
    for label, workers in (("a", 1), ("b", 1), ("c", 2)):
        tables[label] = generate_chapman(tmp_path / label, 8, seed=5, workers=workers)
    for label in ("b", "c"):
        pd.testing.assert_frame_equal(tables[label], tables["a"])
        pd.testing.assert_frame_equal(
            pd.read_excel(tmp_path / label / "Diagnostics.xlsx"), pd.read_excel(tmp_path / "a" / "Diagnostics.xlsx")
        )
        for name in tables["a"]["FileName"]:
            csv = f"ECGDataDenoised/{name}.csv"
            assert (tmp_path / label / csv).read_bytes() == (tmp_path / "a" / csv).read_bytes()
    other = generate_chapman(tmp_path / "d", 8, seed=6)
    assert not other["FileName"].equals(tables["a"]["FileName"])


def test_header_option(tmp_path):
    table = generate_chapman(tmp_path, 2, seed=1, header=True)
    path = tmp_path / "ECGDataDenoised" / f"{table['FileName'][0]}.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(CANONICAL_LEADS) and len(lines) == N_SAMPLES + 1
    assert np.loadtxt(path, delimiter=",", skiprows=1).shape == (N_SAMPLES, 12)


def test_an_interrupted_write_leaves_no_file(tmp_path):
    class Broken(np.ndarray):
        def tolist(self):
            raise KeyboardInterrupt

    leads = np.zeros((N_SAMPLES, 12)).view(Broken)
    with pytest.raises(KeyboardInterrupt):
        write_signal_csv(tmp_path / "x.csv", leads)
    assert list(tmp_path.iterdir()) == []


def test_diagnostics_mode_keeps_the_rows(tmp_path):
    source = tmp_path / "source"
    generate_chapman(source, 5, seed=2)
    table = generate_chapman(tmp_path / "copy", None, seed=9, diagnostics=source / "Diagnostics.xlsx")
    assert len(table) == 5
    assert sheet_rows(tmp_path / "copy" / "Diagnostics.xlsx") == sheet_rows(source / "Diagnostics.xlsx")
    for row in table.itertuples():
        x = read_signal(tmp_path / "copy" / "ECGDataDenoised" / f"{row.FileName}.csv")
        assert abs(detected_rate(x) - row.VentricularRate) <= max(3.0, 0.05 * row.VentricularRate)


def test_diagnostics_mode_on_the_real_file(tmp_path):
    real = real_diagnostics()
    table = generate_chapman(tmp_path, 50, seed=0, diagnostics=real)
    # The real rows, untouched (ages stay text, as in the real file).
    assert sheet_rows(tmp_path / "Diagnostics.xlsx") == sheet_rows(real, limit=51)
    misses = []
    for row in table.itertuples():
        x = read_signal(tmp_path / "ECGDataDenoised" / f"{row.FileName}.csv")
        rate = detected_rate(x)
        if abs(rate - row.VentricularRate) > max(3.0, 0.05 * row.VentricularRate):
            misses.append((row.FileName, row.Rhythm, row.VentricularRate, round(rate, 1)))
    assert not misses


def test_unknown_rhythm_and_bad_columns_are_rejected(tmp_path):
    bad = tmp_path / "bad.xlsx"
    pd.DataFrame({"FileName": ["a"], "Rhythm": ["SR"]}).to_excel(bad, index=False)
    with pytest.raises(ValueError, match="expected the columns"):
        generate_chapman(tmp_path / "out", None, diagnostics=bad)
    row = dict(zip(COLUMNS, ["MUSE_1", "XYZ", "NONE", "50", "MALE"] + [80] * 11, strict=True))
    with pytest.raises(ValueError, match="unknown rhythm"):
        targets_from_row(row)


def test_sampled_frequencies_follow_the_embedded_calibration():
    rng = np.random.default_rng(0)
    draws = [sample_targets(rng) for _ in range(3000)]
    rhythms = pd.Series([t.rhythm for t in draws])
    total = sum(distributions.RHYTHM_COUNTS.values())
    for rhythm in ("SB", "SR", "AFIB", "ST"):
        assert abs((rhythms == rhythm).mean() - distributions.RHYTHM_COUNTS[rhythm] / total) < 0.025
    none = np.mean([not t.codes for t in draws if t.rhythm == "SB"])
    sb_none, _ = distributions.CODE_COUNTS["SB"]
    assert abs(none - sb_none / distributions.RHYTHM_COUNTS["SB"]) < 0.05


def test_code_counts_are_package_data():
    """The per-rhythm condition counts ship in the package (``data/code_counts.json``, setup.py's
    package_data) and load through importlib.resources, one entry per calibrated rhythm."""
    assert resources.files("fairseq_goodviews.synthetic").joinpath("data", "code_counts.json").is_file()
    assert list(distributions.CODE_COUNTS) == list(distributions.RHYTHM_COUNTS)
    for rhythm, (none, counts) in distributions.CODE_COUNTS.items():
        total = distributions.RHYTHM_COUNTS[rhythm]
        assert 0 < none <= total and all(0 < n <= total - none for n in counts.values())


def test_calibration_constants_come_from_the_real_file():
    real = pd.read_excel(real_diagnostics())
    assert real["Rhythm"].value_counts().to_dict() == distributions.RHYTHM_COUNTS
    rng = np.random.default_rng(1)
    draws = pd.DataFrame(
        [
            {"cls": RHYTHM_TO_CLASS[t.rhythm], "age": t.age, "male": t.male}
            for t in (sample_targets(rng) for _ in range(4000))
        ]
    )
    real["cls"] = real["Rhythm"].map(RHYTHM_TO_CLASS)
    real["male"] = real["Gender"] == "MALE"
    for cls, group in real.groupby("cls"):
        mine = draws[draws["cls"] == cls]
        assert abs(len(mine) / len(draws) - len(group) / len(real)) < 0.02
        assert abs(mine["age"].mean() - group["PatientAge"].mean()) < 2.5
        assert abs(mine["male"].mean() - group["male"].mean()) < 0.05


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    command = [console_script("goodviews-synthetic-chapman"), str(out), "--records", "2", "--seed", "4"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote 2 records" in done.stdout
    table = pd.read_excel(out / "Diagnostics.xlsx")
    assert len(table) == 2 and len(list((out / "ECGDataDenoised").glob("*.csv"))) == 2


def test_command_line_needs_a_record_count(tmp_path, capsys):
    with pytest.raises(SystemExit):
        synthetic_chapman_main([str(tmp_path)])
    assert "--records is required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("codes", "qrsd", "raxis"), [((), 90.0, 50.0), (("RBBB",), 178.0, 100.0), (("LBBB",), 150.0, -30.0)]
)
def test_attribute_columns_are_the_true_fiducials(codes, qrsd, raxis):
    """The row is the model's own truth, not a re-measurement: it hits the targets exactly (to a
    sample) and agrees with the closed-form fiducials, whatever the noise."""
    targets = Targets(
        rhythm="SR", codes=frozenset(codes), age=60, male=True, rate=70.0, qrsd=qrsd, qt=420.0, raxis=raxis, taxis=40.0
    )
    rows = [synthesize_record(seed, 0, targets)[0] for seed in (0, 1)]
    for row in rows:
        assert abs(row["QRSDuration"] - qrsd) <= 2
        assert abs(row["QTInterval"] - 420.0) <= 2
        assert abs((row["RAxis"] - raxis + 180) % 360 - 180) <= 1
        assert abs((row["TAxis"] - 40.0 + 180) % 360 - 180) <= 1
