"""The synthetic MIMIC-IV-ECG: the release's layout and header form, sentinels, determinism, errors."""

from __future__ import annotations

import pandas as pd
import wfdb

from fairseq_goodviews.cli.synthetic_mimic_iv_ecg import main
from fairseq_goodviews.synthetic.mimic_iv_ecg import NOT_MEASURED, generate_mimic_iv_ecg, record_path


def test_layout_header_form_sentinels_and_determinism(tmp_path):
    truth = generate_mimic_iv_ecg(tmp_path / "a", 3, visits=(3, 3), seconds=2.0, seed=7)
    assert len(truth) == 9 and truth.groupby("subject_id").size().eq(3).all()
    assert record_path(10000032, 40689238) == "files/p1000/p10000032/s40689238/40689238"
    records = pd.read_csv(tmp_path / "a" / "record_list.csv")
    assert list(records["path"]) == [
        record_path(s, t) for s, t in zip(truth["subject_id"], truth["study_id"], strict=True)
    ]
    header = wfdb.rdheader(str(tmp_path / "a" / records["path"][0]))
    assert header.sig_name[3:6] == ["aVR", "aVF", "aVL"] and set(header.adc_gain) == {200.0}
    assert set(header.fmt) == {"16"} and header.comments == [f"<subject_id>: {truth['subject_id'][0]}"]
    cart = pd.read_csv(tmp_path / "a" / "machine_measurements.csv")
    assert len(cart) == 8 and truth["study_id"][8] not in set(cart["study_id"])  # the ninth has no row
    by_study = cart.set_index("study_id")
    assert by_study.loc[truth["study_id"][3], "t_end"] == NOT_MEASURED
    assert (by_study.loc[truth["study_id"][4], ["qrs_axis", "t_axis"]] == NOT_MEASURED).all()
    measured = by_study.loc[truth["study_id"][0]]
    assert measured["qrs_end"] - measured["qrs_onset"] == truth["QRSDuration"][0]
    notes = pd.read_csv(tmp_path / "a" / "waveform_note_links.csv")
    assert list(notes["study_id"]) == list(truth["study_id"][::2])
    generate_mimic_iv_ecg(tmp_path / "b", 3, visits=(3, 3), seconds=2.0, seed=7)
    for name in ("record_list.csv", "machine_measurements.csv", records["path"][5] + ".dat"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_workers_write_the_same_files(tmp_path):
    generate_mimic_iv_ecg(tmp_path / "one", 5, visits=(1, 3), seconds=2.0, seed=3)
    assert main([str(tmp_path / "two"), "--subjects", "5", "--seconds", "2", "--seed", "3", "--workers", "2"]) == 0
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert len(files) > 3 + 2 * 5
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main([str(tmp_path / "x"), "--subjects", "0"]) == 2
    err = capsys.readouterr().err
    assert "n_subjects must be at least 1" in err and len(err.splitlines()) == 1
    assert main([str(tmp_path / "x"), "--subjects", "2", "--min-visits", "3", "--max-visits", "2"]) == 2
    assert "visits must be (min, max)" in capsys.readouterr().err
    assert main([str(tmp_path / "x"), "--subjects", "2", "--workers", "0"]) == 2
    assert "workers must be >= 1" in capsys.readouterr().err
