"""Generic WFDB folder preparer: any names/order/subset/rate, patients, bad input, workers, segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from fairseq_goodviews.cli.prepare_wfdb_dir import main
from fairseq_goodviews.io.manifest import read_manifest, read_metadata
from fairseq_goodviews.io.records import read_record
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.items import PrepareError, PrepareOptions
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter, prepare_wfdb_dir
from fairseq_goodviews.synthetic.wfdb_layouts import ecg_signal, write_wfdb, write_wfdb_dir_tree

QUIET = PrepareOptions(progress=False)


def all_rows(out) -> pd.DataFrame:
    parts = [read_metadata(out, s) for s in ("train", "valid", "test") if (out / f"{s}.csv").exists()]
    return pd.concat(parts, ignore_index=True).sort_values(["record_id", "segment"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("wfdbdir")
    write_wfdb_dir_tree(root, n_records=6, seconds=4.0)
    return root


def test_any_lead_names_orders_subsets_and_rates(tree, tmp_path):
    out = tmp_path / "out"
    result = prepare_wfdb_dir(tree, out, options=QUIET)
    assert result.records == 6 and not result.skipped
    rows = all_rows(out).set_index("record_id")
    assert (rows["sample_rate"] == 500.0).all() and (rows["n_samples"] == 2000).all()
    assert set(rows["source_sample_rate"]) == {500.0, 1000.0, 250.0, 360.0, 257.0}
    assert rows.loc["rec001", "ignored_channels"] == "vx,vy,vz"
    assert rows.loc["rec004", "ignored_channels"] == "V,PLETH" and rows.loc["rec004", "leads"] == "II"
    assert rows.loc["rec003", "leads"] == "I,II,V1,V2,V3,V4,V5,V6"
    assert rows.loc["rec002", "leads"] == ",".join(CANONICAL_LEADS)  # reversed order, microvolts
    assert rows.loc["rec002", "patient_id"] == "P000" and rows.loc["rec000", "patient_id"] == "rec000"
    assert rows.loc["rec001", "age"] == 28 and rows.loc["rec001", "sex"] == "M"
    assert rows["attr_VentricularRate"].notna().all()
    root, entries = read_manifest(out / "train.tsv")
    record = read_record(root / entries[0][0])
    assert record.meta["record_id"] == entries[0][0].split("/")[-1][:-4]
    reversed_record = read_record(out / rows.loc["rec002", "path"])
    plain_record = read_record(out / rows.loc["rec000", "path"])
    assert reversed_record.feats.shape == plain_record.feats.shape == (12, 2000)


def test_real_records_and_patient_from_folder(tmp_path):
    import shutil

    src = tmp_path / "src" / "patient001"
    src.mkdir(parents=True)
    for name in ("s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"):
        shutil.copy(shared_data() / "wfdb" / name, src / name)
    out = tmp_path / "out"
    prepare_wfdb_dir(tmp_path / "src", out, patient_from_folder=True, options=QUIET)
    rows = all_rows(out)
    assert list(rows["patient_id"]) == ["patient001"] and rows.loc[0, "n_samples"] == 19200
    assert rows.loc[0, "ignored_channels"] == "vx,vy,vz" and rows.loc[0, "age"] == 81


def test_bad_inputs_each_get_a_skip_entry(tmp_path):
    src = tmp_path / "src"
    good = ecg_signal(3.0, 500.0, 70.0, seed=1)
    write_wfdb(src / "ok", good, 500.0, CANONICAL_LEADS)
    write_wfdb(src / "trunc", good, 500.0, CANONICAL_LEADS)
    with open(src / "trunc.dat", "r+b") as handle:
        handle.truncate(3000)
    (src / "malformed.hea").write_text("malformed 12 fivehundred\n")
    write_wfdb(src / "slow", good[:, ::10], 50.0, CANONICAL_LEADS)
    flat = good.copy()
    flat[0] = 0.0
    write_wfdb(src / "flat", flat, 500.0, CANONICAL_LEADS)
    write_wfdb(src / "nolead", good[:2], 500.0, ["PLETH", "RESP"])
    write_wfdb(src / "hasnan", good, 500.0, CANONICAL_LEADS)
    raw = bytearray((src / "hasnan.dat").read_bytes())
    raw[24 * 50 : 24 * 50 + 2] = np.int16(-32768).tobytes()
    (src / "hasnan.dat").write_bytes(bytes(raw))
    out = tmp_path / "out"
    prepare_wfdb_dir(src, out, converter=WfdbConverter(attributes=False), options=QUIET)
    skipped = pd.read_csv(out / "skipped.csv").set_index("key")
    assert set(skipped.index) == {"trunc", "malformed", "slow", "nolead", "hasnan"}
    assert skipped.loc["trunc", "file"].endswith("trunc.dat")
    assert skipped.loc["malformed", "file"].endswith("malformed.hea")
    assert "unsupported sample rate 50 Hz" in skipped.loc["slow", "reason"]
    assert skipped.loc["nolead", "category"] == "bad_signal"
    # a sample edited behind the header's back: caught by the header's checksum
    assert (
        skipped.loc["hasnan", "file"].endswith("hasnan.dat") and "checksum mismatch" in skipped.loc["hasnan", "reason"]
    )
    rows = all_rows(out).set_index("record_id")
    assert sorted(rows.index) == ["flat", "ok"]
    assert rows.loc["flat", "flat_leads"] == "I" and not rows.loc["flat", "leads"].startswith("I,")

    out2 = tmp_path / "out2"
    assert main([str(src), str(out2), "--flat-leads", "error", "--no-attributes", "--no-progress"]) == 0
    skipped = pd.read_csv(out2 / "skipped.csv").set_index("key")
    assert skipped.loc["flat", "category"] == "bad_signal" and "flat lead(s) I" in skipped.loc["flat", "reason"]


def test_empty_or_missing_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match="empty: no WFDB records"):
        prepare_wfdb_dir(tmp_path / "empty", tmp_path / "out", options=QUIET)
    assert main([str(tmp_path / "missing"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "missing: not a directory" in capsys.readouterr().err


def test_workers_and_segments(tree, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([str(tree), str(one), "--segment-seconds", "2", "--target-rate", "250", "--no-progress"]) == 0
    assert (
        main([str(tree), str(two), "--segment-seconds", "2", "--target-rate", "250", "--workers", "2", "--no-progress"])
        == 0
    )
    first, second = all_rows(one), all_rows(two)
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 12 and (first["n_samples"] == 500).all() and (first["sample_rate"] == 250.0).all()
    assert all(sorted(s) == [0, 1] for _, s in first.groupby("record_id")["segment"])
    assert main([str(tree), str(tmp_path / "x"), "--segment-seconds", "2", "--segment-samples", "100"]) == 2
