import re

import pandas as pd
import pytest

from fairseq_goodviews.io.manifest import ManifestError, read_manifest, read_metadata, write_manifest
from fairseq_goodviews.labels import label_set


def test_manifest_and_metadata_round_trip(tmp_path):
    table = pd.DataFrame({"path": ["a.mat", "b.mat"], "n_samples": [5000, 2500], "age": [40, 70]})
    write_manifest(tmp_path, "train", tmp_path, table)
    root, entries = read_manifest(tmp_path / "train.tsv")
    assert root == tmp_path.resolve()
    assert entries == [("a.mat", 5000), ("b.mat", 2500)]
    back = read_metadata(tmp_path, "train", required=("age",))
    assert back["age"].tolist() == [40, 70]
    assert "patient_id" in back.columns


def test_empty_manifest_names_the_file(tmp_path):
    (tmp_path / "train.tsv").write_text(f"{tmp_path}\n")
    with pytest.raises(ManifestError, match=r"train\.tsv: empty manifest"):
        read_manifest(tmp_path / "train.tsv")


def test_missing_column_names_file_and_column(tmp_path):
    write_manifest(tmp_path, "train", tmp_path, pd.DataFrame({"path": ["a.mat"], "n_samples": [10]}))
    frame = pd.read_csv(tmp_path / "train.csv").drop(columns=["sex"])
    frame.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(ManifestError, match=r"train\.csv: missing column\(s\) sex"):
        read_metadata(tmp_path, "train", required=("sex",))


def test_malformed_line_is_reported_with_line_number(tmp_path):
    (tmp_path / "valid.tsv").write_text(f"{tmp_path}\na.mat\t12\nb.mat twelve\n")
    with pytest.raises(ManifestError, match=r"valid\.tsv:3"):
        read_manifest(tmp_path / "valid.tsv")


def test_codes_stay_text_when_every_record_has_one(tmp_path):
    """A split whose records each carry one SNOMED code (427084000 = STach, a scored CinC class)
    reads its ``dx`` as text, so the label set finds the class instead of reading integers."""
    table = pd.DataFrame({"path": ["a.mat", "b.mat"], "n_samples": [5000, 5000], "dx": ["427084000", "426783006"]})
    write_manifest(tmp_path, "valid", tmp_path, table)
    back = read_metadata(tmp_path, "valid")
    assert back["dx"].tolist() == ["427084000", "426783006"]
    cinc = label_set("cinc2021")
    targets, labelled = cinc.targets(back, "valid.csv")
    assert labelled.all()
    assert targets[0, cinc.classes.index("STach")] == 1.0 and targets[1, cinc.classes.index("NSR")] == 1.0


def test_missing_table_says_whether_the_preparation_wrote_the_split(tmp_path):
    with pytest.raises(ManifestError, match=r"test\.csv: metadata table not found \(it is written beside test\.tsv\)"):
        read_metadata(tmp_path, "test")
    (tmp_path / "prepare_report.json").write_text("not json")
    with pytest.raises(ManifestError, match="metadata table not found"):
        read_metadata(tmp_path, "test")
    (tmp_path / "prepare_report.json").write_text('{"splits": {"train": {"records": 3}}}')
    with pytest.raises(
        ManifestError, match=f"^{re.escape(str(tmp_path))} has no test split: its prepare_report.json lists train "
    ):
        read_metadata(tmp_path, "test")
