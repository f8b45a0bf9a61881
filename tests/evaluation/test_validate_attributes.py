"""goodviews-validate-attributes --reference: the user's own device measurements in a CSV."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import shared_data
from fairseq_goodviews.evaluation.validate_attributes import (
    REAL_RECORD_DIR,
    REAL_REFERENCES,
    ReferenceTableError,
    read_reference_table,
    validate_reference,
)

MUSE_COLUMNS = ["Rhythm", "VentricularRate", "QRSDuration", "QTInterval", "QTCorrected", "RAxis", "TAxis"]


def _diagnostics_rows() -> pd.DataFrame:
    """The Diagnostics.xlsx rows of the shared JS records (JSn is row n), with a record column."""
    table = pd.read_excel(shared_data() / "chapman" / "Diagnostics.xlsx").set_index("FileName")
    rows = table.loc[list(REAL_REFERENCES.values()), MUSE_COLUMNS].reset_index(drop=True)
    return rows.assign(record=list(REAL_REFERENCES))


def test_muse_column_names_and_record_ids_with_a_records_dir(tmp_path):
    rows = _diagnostics_rows()
    rows.to_csv(tmp_path / "muse.csv", index=False)
    report = validate_reference(tmp_path / "muse.csv", shared_data() / REAL_RECORD_DIR)
    result = report["methods"]["median_beat"]
    assert report["records"] == list(REAL_REFERENCES)
    for k, record in enumerate(REAL_REFERENCES):
        measured = result["per_record"][record]
        assert measured["rhythm"] == rows.at[k, "Rhythm"]
        assert measured["QTInterval"]["reference"] == rows.at[k, "QTInterval"]
    overall = result["overall"]
    assert overall["VentricularRate"]["max_abs_error"] <= 2
    assert overall["QRSDuration"]["mae"] <= 12 and overall["QTInterval"]["mae"] <= 20
    assert overall["QRSCount"]["measured"] == 0  # not in the table: not compared
    groups = result["groups"]
    assert groups["QRS >= 120 ms"]["records"] == int((rows["QRSDuration"] >= 120).sum()) >= 1
    assert groups["QRS < 120 ms"]["records"] == int((rows["QRSDuration"] < 120).sum())
    assert sum(groups[f"rhythm {r}"]["records"] for r in set(rows["Rhythm"])) == len(rows)


def test_own_column_names_and_paths_relative_to_the_table(tmp_path, capsys):
    from fairseq_goodviews.cli.validate_attributes import main

    (tmp_path / "records").symlink_to(shared_data() / REAL_RECORD_DIR)
    rows = _diagnostics_rows()
    own = pd.DataFrame(
        {
            "record": [f"records/{r}.hea" for r in rows["record"]],
            "rate": rows["VentricularRate"],
            "qt": rows["QTInterval"],
            "qrs_duration": [""] * (len(rows) - 1) + [str(rows["QRSDuration"].iloc[-1])],  # mostly not measured
        }
    )
    own.to_csv(tmp_path / "own.csv", index=False)
    out = tmp_path / "r.json"
    assert main(["--records", "0", "--real", "", "--reference", str(tmp_path / "own.csv"), "--out", str(out)]) == 0
    overall = json.loads(out.read_text())["reference"]["methods"]["median_beat"]["overall"]
    assert overall["QTInterval"]["measured"] == len(rows) and overall["QRSDuration"]["measured"] == 1
    assert overall["RAxis"]["measured"] == 0
    assert f"{len(rows)} records vs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns=["record"]), "the reference measurements have no column record"),
        (lambda t: t[["record", "Rhythm"]], "the reference measurements have none of the columns rate or"),
        (lambda t: t.assign(record=["JS99999", *t["record"][1:]]), "row 2: no WFDB record "),
        (lambda t: t.assign(QTInterval=["long", *t["QTInterval"][1:]]), "row 2: QTInterval 'long' is not a number"),
    ],
)
def test_a_bad_table_is_one_line_naming_it(tmp_path, capsys, change, message):
    from fairseq_goodviews.cli.validate_attributes import main

    path = tmp_path / "bad.csv"
    change(_diagnostics_rows()).to_csv(path, index=False)
    with pytest.raises(ReferenceTableError, match=message):
        read_reference_table(path, shared_data() / REAL_RECORD_DIR)
    argv = [
        "--records",
        "0",
        "--real",
        "",
        "--reference",
        str(path),
        "--records-dir",
        str(shared_data() / REAL_RECORD_DIR),
    ]
    assert main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"goodviews-validate-attributes: error: {path}: ") and message in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r.json").exists()
