"""The Chapman preparer: CSV variants, skip report, cohort rules, the paper's cohort, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import console_script
from fairseq_goodviews.cli.prepare_chapman import main
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES, read_manifest, read_metadata
from fairseq_goodviews.io.records import RecordError, read_record
from fairseq_goodviews.labels import rhythm_class
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.chapman import (
    chapman_cohort,
    prepare_chapman,
    read_chapman_csv,
    read_diagnostics,
    read_exclude_file,
)
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions

REPO = Path(__file__).resolve().parents[2]
HEADER = ",".join(CANONICAL_LEADS) + "\n"
QUIET = PrepareOptions(progress=False)


def shared_data() -> Path:
    root = os.environ.get("GOODVIEWS_SHARED_DATA")
    if not root:
        pytest.skip("GOODVIEWS_SHARED_DATA is not set (CI sets it to ../shared/data)")
    return Path(root)


def microvolts(seed: int, n: int = 5000) -> np.ndarray:
    """[n, 12] signal in microvolts with three decimals, as in the published CSVs."""
    return np.round(np.random.default_rng(seed).normal(0, 300, size=(n, 12)), 3)


def write_csv(path: Path, values: np.ndarray, header: bool) -> None:
    with open(path, "w") as handle:
        if header:
            handle.write(HEADER)
        np.savetxt(handle, values, delimiter=",", fmt="%.3f")


def diagnostics_row(name: str, rhythm: str = "SR", age: int = 50, gender: str = "MALE", **overrides):
    row = {"FileName": name, "Rhythm": rhythm, "Beat": "NONE", "PatientAge": age, "Gender": gender}
    row.update({attr: 100 + i for i, attr in enumerate(ATTRIBUTE_NAMES)})
    row.update(overrides)
    return row


def make_chapman(root: Path, rows, signals=None) -> Path:
    """A Chapman folder: Diagnostics.xlsx from ``rows``; ``signals[name]`` is an array (written
    without header), ``(array, True)`` (with header), raw bytes, or None (no file). Names not in
    ``signals`` get a random signal, with a header for every other row."""
    signals = signals or {}
    (root / "ECGDataDenoised").mkdir(parents=True)
    pd.DataFrame(rows).to_excel(root / "Diagnostics.xlsx", index=False)
    for i, row in enumerate(rows):
        name = row["FileName"]
        content = signals.get(name, (microvolts(i), i % 2 == 1))
        path = root / "ECGDataDenoised" / f"{name}.csv"
        if content is None:
            continue
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, tuple):
            write_csv(path, *content)
        else:
            write_csv(path, content, False)
    return root


def all_splits(out: Path) -> pd.DataFrame:
    """Every written split's table (a split of a tiny set can be empty, and is then not written)."""
    splits = [s for s in ("train", "valid", "test") if (out / f"{s}.tsv").exists()]
    return pd.concat([read_metadata(out, s) for s in splits], ignore_index=True)


def test_header_and_no_header_give_identical_records_in_millivolts(tmp_path):
    values = microvolts(7)
    src = make_chapman(
        tmp_path / "src", [diagnostics_row("A"), diagnostics_row("B")], {"A": (values, True), "B": (values, False)}
    )
    prepare_chapman(src, tmp_path / "out", options=QUIET)
    a = read_record(tmp_path / "out" / "records" / "A.mat")
    b = read_record(tmp_path / "out" / "records" / "B.mat")
    assert a.feats.shape == (12, 5000) and a.feats.dtype == np.float32
    np.testing.assert_array_equal(a.feats, b.feats)
    np.testing.assert_array_equal(a.feats, (values.T / 1000.0).astype(np.float32))
    assert a.sample_rate == 500.0
    assert a.meta["label_name"] == "SR" and a.meta["sex"] == "M" and a.meta["age"] == 50
    # fairseq-signals' numeric forms: one-hot over the four classes, the patient's integer
    assert a.meta["label_classes"] == "AFIB,GSVT,SB,SR" and a.meta["label"].tolist() == [0, 0, 0, 1]
    assert a.meta["patient"] == "A" and a.meta["patient_id"] == 0 and b.meta["patient_id"] == 1
    np.testing.assert_array_equal(a.meta["attributes"], np.arange(100, 111, dtype=np.float32))


def test_header_order_byte_order_mark_and_crlf_are_handled(tmp_path):
    values = microvolts(3, n=50)
    order = list(reversed(CANONICAL_LEADS))
    path = tmp_path / "x.csv"
    with open(path, "w", encoding="utf-8-sig", newline="\r\n") as handle:
        handle.write(",".join(order) + "\n")
        np.savetxt(handle, values[:, ::-1], delimiter=",", fmt="%.3f")
    assert path.read_bytes().startswith(b"\xef\xbb\xbfV6,V5")
    np.testing.assert_array_equal(read_chapman_csv(path, expected_samples=50), values.T)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x00\x9f\x92\x96garbage\xff" * 40, "not a text CSV"),
        ((HEADER + "1,2,3\n4,5,6\n").encode(), "columns, expected 12"),
        (("1," * 11 + "1\n") * 4999, "4999 rows, expected 5000"),
        (("1," * 11 + "1\n") * 4999 + "1,2,3,4,5,6,7,8,9,10,11,x\n", "malformed CSV"),
        (("1," * 11 + "1\n") * 4999 + "1,2,3,4,5,6,7", "truncated"),
        (("1," * 11 + "1\n") * 2 + "1," * 12 + "1\n", "malformed CSV"),
        (b"", "empty file"),
        (b"Lead,II,III\n1,2,3\n", "neither numbers nor the 12 lead names"),
    ],
)
def test_malformed_csv_raises_record_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RecordError, match=problem) as info:
        read_chapman_csv(path)
    assert info.value.path == str(path)


def test_bad_files_and_signals_are_reported_by_name(tmp_path):
    good = microvolts(1)
    nan = good.copy()
    nan[100, 6] = np.nan
    flat = good.copy()
    flat[:, 9] = 12.0
    truncated = (HEADER + "\n".join(",".join(f"{v:.3f}" for v in row) for row in good)).encode()[:-40]
    rows = [diagnostics_row(n) for n in ("ok", "garbage", "truncated", "missing", "nan", "flat")]
    rows.append(diagnostics_row("weird", rhythm="XYZ"))
    src = make_chapman(
        tmp_path / "src",
        rows,
        {
            "ok": good,
            "garbage": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 30,
            "truncated": truncated,
            "missing": None,
            "nan": nan,
            "flat": flat,
            "weird": good,
        },
    )
    result = prepare_chapman(src, tmp_path / "out", options=QUIET)
    assert result.records == 1
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv", keep_default_na=False).set_index("key")
    assert sorted(skipped.index) == ["flat", "garbage", "missing", "nan", "truncated", "weird"]
    for key in skipped.index:
        assert Path(skipped.loc[key, "file"]).name == f"{key}.csv"
    assert skipped.loc["missing", "category"] == "missing_file"
    assert skipped.loc["garbage", "category"] == "unreadable"
    assert skipped.loc["truncated", "category"] == "unreadable"
    assert "truncated" in skipped.loc["truncated", "reason"]
    assert skipped.loc["nan", "category"] == "bad_signal" and "V1" in skipped.loc["nan", "reason"]
    assert skipped.loc["flat", "reason"] == "flat lead(s) V4"
    assert skipped.loc["weird", "category"] == "unknown_label" and "XYZ" in skipped.loc["weird", "reason"]
    assert sorted(os.listdir(tmp_path / "out" / "records")) == ["ok.mat"]


def test_cohort_rules(tmp_path):
    rows = [
        diagnostics_row(f"r{i}", age=age, gender=g, rhythm=r)
        for i, (age, g, r) in enumerate(
            [
                (12, "MALE", "SB"),
                (18, "FEMALE", "AF"),
                (40, "MALE", "ST"),
                (80, "FEMALE", "SA"),
                (65, "MALE", "AVNRT"),
                (17, "FEMALE", "SR"),
            ]
        )
    ]
    rows += [diagnostics_row("r1", age=30), diagnostics_row("bad name", age=30)]
    src = make_chapman(tmp_path / "src", rows)
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# leakage\nr2.csv\n\nnot_there\n")
    assert read_exclude_file(exclude) == ["r2", "not_there"]
    result = prepare_chapman(src, tmp_path / "out", min_age=18, exclude=read_exclude_file(exclude), options=QUIET)
    assert result.records == 3
    skipped = {s.key: s for s in result.skipped}
    assert skipped["r0"].category == "filtered" and "age 12 below --min-age 18" == skipped["r0"].reason
    assert skipped["r2"].reason == "listed in the exclude file"
    assert skipped["r1"].category == "duplicate"  # the second row named r1; the first is kept
    assert skipped["row9"].category == "unreadable" and "'bad name' is unusable" in skipped["row9"].reason
    table = all_splits(tmp_path / "out").set_index("record_id").sort_index()
    assert list(table.index) == ["r1", "r3", "r4"]
    assert list(table["label"]) == ["AFIB", "SR", "GSVT"] and list(table["sex"]) == ["F", "F", "M"]
    assert (table["patient_id"] == table.index).all()
    assert (table["attr_QOnset"] == 108).all()
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["config"]["exclude_not_in_metadata"] == 1 and report["config"]["min_age"] == 18


def test_bad_source_folders_are_refused(tmp_path):
    with pytest.raises(PrepareError, match=r"Diagnostics\.xlsx: Chapman metadata file not found"):
        prepare_chapman(tmp_path, tmp_path / "out", options=QUIET)
    src = make_chapman(tmp_path / "cols", [diagnostics_row("a")])
    pd.DataFrame([diagnostics_row("a")]).drop(columns=["Rhythm", "TOffset"]).to_excel(
        src / "Diagnostics.xlsx", index=False
    )
    with pytest.raises(PrepareError, match=r"Diagnostics.xlsx: missing column\(s\) Rhythm, TOffset"):
        prepare_chapman(src, tmp_path / "out", options=QUIET)
    src = make_chapman(tmp_path / "empty", [diagnostics_row("a")])
    pd.DataFrame(columns=list(diagnostics_row("a"))).to_excel(src / "Diagnostics.xlsx", index=False)
    with pytest.raises(PrepareError, match="the metadata table is empty"):
        prepare_chapman(src, tmp_path / "out", options=QUIET)
    src = make_chapman(tmp_path / "nocsv", [diagnostics_row("a")], {"a": None})
    with pytest.raises(PrepareError, match="ECGDataDenoised: the signal folder is empty"):
        prepare_chapman(src, tmp_path / "out", options=QUIET)
    with pytest.raises(PrepareError, match=r"ECGData: signal folder not found \(found ECGDataDenoised/"):
        prepare_chapman(src, tmp_path / "out", raw=True, options=QUIET)


def test_rerun_and_workers(tmp_path):
    rows = [diagnostics_row(f"r{i:02d}", rhythm=("SB", "SR", "AFIB", "ST")[i % 4]) for i in range(16)]
    src = make_chapman(tmp_path / "src", rows, {"r05": None})
    one = prepare_chapman(src, tmp_path / "one", options=QUIET)
    two = prepare_chapman(src, tmp_path / "two", options=PrepareOptions(workers=2, progress=False))
    assert one.records == two.records == 15
    for split in ("train", "valid", "test"):
        assert (tmp_path / "one" / f"{split}.csv").read_bytes() == (tmp_path / "two" / f"{split}.csv").read_bytes()
    before = (tmp_path / "one" / "train.tsv").read_bytes()
    again = prepare_chapman(src, tmp_path / "one", options=QUIET)
    assert again.reused == 15 and (tmp_path / "one" / "train.tsv").read_bytes() == before


def test_cli_from_repo_root(tmp_path):
    rows = [diagnostics_row(f"r{i}", age=10 + 10 * i, rhythm=("SB", "SR", "AFIB", "ST")[i % 4]) for i in range(8)]
    src = make_chapman(tmp_path / "src", rows)
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("r7\n")
    result = subprocess.run(
        [
            console_script("goodviews-prepare-chapman"),
            str(src),
            str(tmp_path / "out"),
            "--min-age",
            "18",
            "--exclude",
            str(exclude),
            "--workers",
            "2",
            "--seed",
            "1",
            "--split",
            "0.5",
            "0.25",
            "0.25",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "chapman: wrote 6 records" in result.stdout and "filtered 2" in result.stdout
    root, entries = read_manifest(tmp_path / "out" / "train.tsv")
    assert root == (tmp_path / "out").resolve() and entries
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["options"]["seed"] == 1 and report["options"]["split_fractions"] == [0.5, 0.25, 0.25]


def test_cli_errors_name_the_file(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "nowhere/Diagnostics.xlsx: Chapman metadata file not found" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "out"), "--exclude", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: exclude file not found" in capsys.readouterr().err


# --- the real metadata ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_diagnostics() -> pd.DataFrame:
    return read_diagnostics(shared_data() / "chapman" / "Diagnostics.xlsx")


def test_paper_cohort_is_age_18_and_over_minus_12_unusable_records(real_diagnostics):
    """§3.1 of the paper: 10,369 patients, 5,804 M / 4,565 F, age groups 542/702/1,254/2,041/
    2,614/1,863/1,353. Keeping PatientAge >= 18 gives 10,381 patients, and every count exceeds
    the paper's by exactly the 12 records the paper dropped for unusable signals (4 M + 8 F),
    so the paper's counts are *after* that drop. (No other age threshold fits: >= 17 keeps
    10,407, >= 19 keeps 10,356 < 10,369.)
    """
    table = real_diagnostics
    assert len(table) == 10646
    cohort = table[chapman_cohort(table, min_age=18)]
    assert len(cohort) == 10381 == 10369 + 12
    assert cohort["Gender"].value_counts().to_dict() == {"MALE": 5804 + 4, "FEMALE": 4565 + 8}
    groups = pd.cut(cohort["PatientAge"], [18, 30, 40, 50, 60, 70, 80, 200], right=False)
    counts = groups.value_counts(sort=False).tolist()
    paper = [542, 702, 1254, 2041, 2614, 1863, 1353]
    assert counts == [545, 702, 1255, 2043, 2618, 1863, 1355]
    assert all(c >= p for c, p in zip(counts, paper, strict=True)) and sum(counts) - sum(paper) == 12
    assert len(table[chapman_cohort(table, min_age=17)]) == 10407
    assert len(table[chapman_cohort(table, min_age=19)]) == 10356


def test_paper_table_2_class_totals_do_not_match_the_file(real_diagnostics):
    """Table 2 lists AFIB 3,669 / GSVT 2,260 / SB 2,218 / SR 2,222 (sum 10,369). With the
    merge of Zheng et al. the file gives SB 3,871 / AFIB 2,225 / GSVT 2,204 / SR 2,081 for the
    same cohort (same sum + 12): no 12-record drop turns one into the other, so Table 2's
    per-class sizes are not reproducible from Diagnostics.xlsx; only its total is."""
    cohort = real_diagnostics[chapman_cohort(real_diagnostics, min_age=18)]
    classes = cohort["Rhythm"].map(rhythm_class).value_counts().to_dict()
    assert classes == {"SB": 3871, "AFIB": 2225, "GSVT": 2204, "SR": 2081}
    assert sum(classes.values()) == 3669 + 2260 + 2218 + 2222 + 12


def test_real_metadata_subset_end_to_end(tmp_path, real_diagnostics):
    """The real spreadsheet's format (first 40 rows) with synthetic waveforms, paper's age rule."""
    subset = real_diagnostics.head(40)
    src = tmp_path / "src"
    (src / "ECGDataDenoised").mkdir(parents=True)
    subset.to_excel(src / "Diagnostics.xlsx", index=False)
    for i, name in enumerate(subset["FileName"]):
        write_csv(src / "ECGDataDenoised" / f"{name}.csv", microvolts(i), header=i % 2 == 0)
    result = prepare_chapman(src, tmp_path / "out", min_age=18, options=QUIET)
    expected = subset[subset["PatientAge"] >= 18]
    assert result.records == len(expected)
    assert {s.category for s in result.skipped} <= {"filtered"}
    table = all_splits(tmp_path / "out").set_index("record_id").loc[expected["FileName"]]
    assert list(table["rhythm"]) == list(expected["Rhythm"])
    assert list(table["age"]) == list(expected["PatientAge"])
    assert list(table["attr_TOffset"]) == list(expected["TOffset"])
    assert set(table["sex"]) <= {"M", "F"}


def test_synthetic_generator_end_to_end(tmp_path):
    synthetic = pytest.importorskip(
        "fairseq_goodviews.synthetic.chapman", reason="the synthetic Chapman generator is not in this tree"
    )
    diagnostics = synthetic.generate_chapman(tmp_path / "src", 12, seed=0)
    result = prepare_chapman(tmp_path / "src", tmp_path / "out", options=QUIET)
    assert result.records + len(result.skipped) == len(diagnostics)
    table = all_splits(tmp_path / "out")
    assert set(table["label"]) <= {"AFIB", "GSVT", "SB", "SR"}
    record = read_record(tmp_path / "out" / table["path"].iloc[0])
    assert record.feats.shape == (12, 5000)
