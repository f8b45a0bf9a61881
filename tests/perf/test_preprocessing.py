"""The preprocessing benchmark: every preparer, with and without the wave attributes, beside parsing."""

from __future__ import annotations

import pytest

from fairseq_goodviews.perf import preprocessing

PREPARERS = ["chapman", "physionet2021", "ptbxl", "wfdb_dir", "mimic_iv_ecg"]


@pytest.mark.slow
def test_every_preparer_is_timed_beside_parsing_with_the_attributes_cost(tmp_path):
    results = preprocessing.run(records=4, seed=0, repeats=1, work_dir=tmp_path)
    assert list(results["preparers"]) == PREPARERS
    for name, row in results["preparers"].items():
        assert row["records"] >= 3
        for label in ("1 worker", "2 workers"):
            ratio = row[f"{label} / parse time"]
            assert ratio == pytest.approx(row["parse_only_records_per_s"] / row[f"{label} records_per_s"])
        # A preparation parses every record and more: it takes more CPU than parsing alone.
        assert row["1 worker cpu_ms_per_record"] > row["parse cpu_ms_per_record"] > 0
        wfdb = name != "chapman"
        assert ("1 worker, no attributes / parse time" in row) == wfdb
        if wfdb:  # the attributes' own cost: the difference of the two one-worker runs, per record
            no_attributes = row["1 worker, no attributes records_per_s"]
            expected = 1000 * (1 / row["1 worker records_per_s"] - 1 / no_attributes)
            assert row["attributes ms_per_record"] == pytest.approx(expected)
        else:
            assert "attributes ms_per_record" not in row
    lines = preprocessing.format_result(results).splitlines()
    wall, cpu = lines[2:7], lines[9:14]
    assert lines[1].split()[-2:] == ["attr", "ms"]
    assert lines[8].split() == "preparer parse 1 worker ratio no attr ratio".split()
    for name, wall_line, cpu_line in zip(PREPARERS, wall, cpu, strict=True):
        row = results["preparers"][name]
        assert wall_line.split()[0] == cpu_line.split()[0] == name
        if name == "chapman":
            assert wall_line.split()[-3:] == ["-", "-", "-"] and cpu_line.split()[-2:] == ["-", "-"]
        else:
            assert float(wall_line.split()[-1]) == pytest.approx(row["attributes ms_per_record"], abs=0.05)
            cpu_ratio = row["1 worker, no attributes cpu_ms_per_record"] / row["parse cpu_ms_per_record"]
            assert float(cpu_line.split()[-1]) == pytest.approx(cpu_ratio, abs=0.005)
