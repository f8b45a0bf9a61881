"""PTB-XL preparer: database table, published folds, SCP codes and rhythm classes, bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from fairseq_goodviews.cli.prepare_ptbxl import main
from fairseq_goodviews.io.manifest import ManifestError, read_metadata
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions
from fairseq_goodviews.preprocessing.ptbxl import (
    REQUIRED_COLUMNS,
    missing_split_warning,
    parse_scp_codes,
    prepare_ptbxl,
    rhythm_from_scp,
)
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter
from fairseq_goodviews.synthetic.wfdb_layouts import write_ptbxl_tree

QUIET = PrepareOptions(progress=False)
FAST = WfdbConverter(attributes=False)


def test_scp_parsing_is_literal_only(tmp_path):
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}") == {"NORM": 100.0, "SR": 0.0}
    with pytest.raises(ValueError):
        parse_scp_codes(f"__import__('os').system('touch {tmp_path}/pwned')")
    assert not (tmp_path / "pwned").exists()


def test_rhythm_mapping():
    assert rhythm_from_scp(["NORM", "SR"]) == ("SR", "SR")
    assert rhythm_from_scp(["SARRH"]) == ("SA", "SR")
    assert rhythm_from_scp(["AFLT", "SR"]) == ("AF", "AFIB")
    assert rhythm_from_scp(["SVTAC"]) == ("SVT", "GSVT") and rhythm_from_scp(["PSVT"]) == ("SVT", "GSVT")
    assert rhythm_from_scp(["STACH", "SR"]) == ("ST", "GSVT")
    assert rhythm_from_scp(["SBRAD"]) == ("SB", "SB")
    assert rhythm_from_scp(["IMI", "NDT"]) == ("", "")


def test_prepares_with_published_folds(tmp_path):
    write_ptbxl_tree(tmp_path / "src", n_records=12, seconds=3.0)
    out = tmp_path / "out"
    result = prepare_ptbxl(tmp_path / "src", out, options=QUIET)
    assert result.records == 12 and not result.skipped
    splits = {s: read_metadata(out, s) for s in ("train", "valid", "test")}
    assert set(splits["train"]["strat_fold"]) == set(range(1, 9))
    assert set(splits["valid"]["strat_fold"]) == {9} and set(splits["test"]["strat_fold"]) == {10}
    rows = pd.concat(splits.values()).set_index("record_id").sort_index()
    assert list(rows.index[:2]) == ["00001_hr", "00002_hr"]
    assert rows.loc["00001_hr", "patient_id"] == "1000" and rows.loc["00003_hr", "patient_id"] == "1001"
    assert rows.loc["00004_hr", "age"] == 90  # PTB-XL's 300 (over 89)
    assert rows.loc["00001_hr", "sex"] == "M" and rows.loc["00002_hr", "sex"] == "F"
    assert rows.loc["00001_hr", "scp_codes"] == "NORM SR" and rows.loc["00001_hr", "label"] == "SR"
    assert list(rows["label"][:4]) == ["SR", "SB", "GSVT", "AFIB"]
    assert (rows["source"] == "ptb-xl").all() and (rows["n_samples"] == 1500).all()
    assert rows["attr_VentricularRate"].notna().all()


def test_missing_fold_10_writes_the_other_splits_and_says_so(tmp_path, capsys):
    write_ptbxl_tree(tmp_path / "src", n_records=9, seconds=3.0)  # folds 1-9: no test record
    out = tmp_path / "out"
    assert main([str(tmp_path / "src"), str(out), "--no-progress", "--no-attributes"]) == 0
    printed = capsys.readouterr().out
    assert (
        "warning: ptbxl: no record in fold 10 (the test split), so test.tsv/.csv was not written "
        "(add those folds' records to prepare it); where a command takes a split, name one written: "
        "train, valid (e.g. goodviews-evaluate --split valid)"
    ) in printed
    assert len(read_metadata(out, "train")) == 8 and len(read_metadata(out, "valid")) == 1
    assert not (out / "test.tsv").exists()
    with pytest.raises(ManifestError) as caught:
        read_metadata(out, "test")
    assert str(caught.value).startswith(f"{out} has no test split: its prepare_report.json lists train, valid")


def test_missing_split_warning_names_every_missing_split():
    assert missing_split_warning({"train", "valid", "test"}) is None
    warning = missing_split_warning({"train"})
    assert "no record in fold 9 (the valid split), fold 10 (the test split)" in warning
    assert "valid.tsv/.csv, test.tsv/.csv were not written" in warning and "--split train" in warning
    assert "folds 1-8 (the train split)" in missing_split_warning({"valid", "test"})


def test_help_offers_no_split_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert "--split " not in help_text and "--seed" not in help_text
    assert "--segment-seconds" in help_text and "--workers" in help_text
    with pytest.raises(SystemExit):
        main(["src", "out", "--seed", "3"])
    assert "unrecognized arguments: --seed 3" in capsys.readouterr().err


def test_missing_column_names_the_file_and_column(tmp_path, capsys):
    columns = [c for c in REQUIRED_COLUMNS if c != "scp_codes"]
    database = write_ptbxl_tree(tmp_path / "src", n_records=2, seconds=3.0, database_columns=columns)
    assert main([str(tmp_path / "src"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert f"{database}: missing column(s) scp_codes" in capsys.readouterr().err


def test_missing_table_and_empty_directory(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(PrepareError, match=r"ptbxl_database\.csv: PTB-XL database table not found"):
        prepare_ptbxl(tmp_path / "src", tmp_path / "out", options=QUIET)
    with pytest.raises(PrepareError, match="not a directory"):
        prepare_ptbxl(tmp_path / "nothere", tmp_path / "out", options=QUIET)


def test_bad_rows_and_files_are_reported(tmp_path):
    database = write_ptbxl_tree(tmp_path / "src", n_records=8, seconds=3.0)
    table = pd.read_csv(database)
    table.loc[1, "scp_codes"] = "{'SR': oops"
    table.loc[2, "strat_fold"] = 11
    table.loc[7, "filename_hr"] = table.loc[0, "filename_hr"]
    table.to_csv(database, index=False)
    records = tmp_path / "src" / "records500" / "00000"
    (records / "00004_hr.dat").unlink()
    with open(records / "00005_hr.dat", "r+b") as handle:
        handle.truncate(1000)
    (records / "00006_hr.hea").write_text("garbage\n")
    prepare_ptbxl(tmp_path / "src", tmp_path / "out", converter=FAST, options=QUIET)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv").set_index("key")
    assert skipped.loc["00002_hr", "category"] == "unreadable"
    assert "row 3: malformed scp_codes" in skipped.loc["00002_hr", "reason"]
    assert "strat_fold 11" in skipped.loc["00003_hr", "reason"]
    assert skipped.loc["00004_hr", "category"] == "missing_file"
    assert skipped.loc["00004_hr", "file"].endswith("00004_hr.dat")
    assert skipped.loc["00005_hr", "file"].endswith("00005_hr.dat")
    assert "malformed header" in skipped.loc["00006_hr", "reason"]
    assert skipped.loc["00001_hr", "category"] == "duplicate"
