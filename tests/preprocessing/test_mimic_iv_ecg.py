"""The MIMIC-IV-ECG preparer: the cart's measurements as attributes (sentinels missing), the real
headers and table rows, a synthetic multi-visit tree through the command, and PCLR on it."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import PRETRAIN_CONFIGS, hydra_train, shared_data
from fairseq_goodviews.cli.identify import main as identify
from fairseq_goodviews.cli.prepare_mimic_iv_ecg import main
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.io.records import read_record
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.mimic_iv_ecg import (
    CART_COLUMNS,
    NOT_MEASURED,
    cart_attributes,
    chapman_axis,
    merge_attributes,
    mimic_items,
    prepare_mimic_iv_ecg,
)
from fairseq_goodviews.preprocessing.wave_attributes import WaveAttributes
from fairseq_goodviews.preprocessing.wfdb_reader import map_channels, read_header, read_header_comments
from fairseq_goodviews.synthetic.mimic_iv_ecg import LEAD_NAMES, generate_mimic_iv_ecg
from fairseq_goodviews.synthetic.wfdb_layouts import ecg_signal

REAL_HEADERS = ("files/p1000/p10000032/s40689238/40689238", "files/p1000/p10000032/s49036311/49036311")
REAL_ROW = {"rr_interval": 659, "p_onset": 40, "p_end": 128, "qrs_onset": 170, "qrs_end": 258, "t_end": 518}


def _from_cart(value) -> set[str]:
    """The attribute names of an ``attr_from_cart`` cell (empty: none; NaN once read back from CSV)."""
    return set() if pd.isna(value) else set(str(value).split(",")) - {""}


def _real() -> Path:
    return shared_data() / "real" / "mimic_iv_ecg"


def test_the_real_rows_give_ids_report_note_and_attributes():
    items, skipped, facts = mimic_items(_real())
    assert not skipped and len(items) == 1
    item = items[0]
    assert (item.key, item.patient_id) == ("40689238", "10000032")
    assert item.source == _real() / REAL_HEADERS[0]
    assert item.meta["machine_report"] == "Sinus rhythm; Possible right atrial abnormality; Borderline ECG"
    assert (item.meta["note_id"], item.meta["cart_id"]) == ("10000032-EK-4", 6848296)
    assert item.meta["ecg_time"] == "2180-07-23 08:44:00"
    assert {c: item.meta[c] for c in REAL_ROW} == REAL_ROW
    assert facts == {
        "record_list_rows": 1,
        "with_machine_measurements": 1,
        "with_note_links": 1,
        "patients": 1,
        "patients_with_several_studies": 0,
    }
    merged, from_cart = merge_attributes(cart_attributes(item.meta), None)
    values = merged.values
    # rate 60000 / 659 ms, QRS 258 - 170, QT 518 - 170, Bazett 348 / sqrt(0.659 s), the axes as given.
    assert values["VentricularRate"] == 91.0 and values["AtrialRate"] == 91.0
    assert (values["QRSDuration"], values["QTInterval"], values["QTCorrected"]) == (88.0, 348.0, 429.0)
    assert (values["RAxis"], values["TAxis"]) == (77.0, 79.0)
    # Placed in the 600-sample frame: QRS = 2 (QOffset - QOnset), QT = 2 (TOffset - QOnset).
    assert (values["QOnset"], values["QOffset"], values["TOffset"]) == (220.0, 264.0, 394.0)
    assert "QRSCount" not in from_cart and math.isnan(values["QRSCount"])
    assert "--no-attributes" in merged.reasons["QRSCount"]
    assert len(from_cart) == 10


def test_sentinels_and_blanks_are_missing_and_the_delineation_fills_them():
    row = {**REAL_ROW, "t_end": NOT_MEASURED, "p_onset": NOT_MEASURED, "qrs_axis": "29999", "t_axis": -100}
    cart = cart_attributes(row)
    for name in ("QTInterval", "QTCorrected", "AtrialRate", "RAxis"):
        assert math.isnan(cart.values[name]), name
    assert "29999" in cart.reasons["QTInterval"] and "29999" in cart.reasons["RAxis"]
    assert cart.values["TAxis"] == 260.0 and cart.values["QRSDuration"] == 88.0
    assert math.isnan(cart_attributes({**REAL_ROW, "rr_interval": ""}).values["VentricularRate"])
    assert math.isnan(cart_attributes({**REAL_ROW, "qrs_end": 150}).values["QRSDuration"])

    measured = WaveAttributes()
    measured.values.update(
        VentricularRate=80.0, AtrialRate=80.0, QRSDuration=96.0, QTInterval=400.0, QTCorrected=447.0, QRSCount=13.0
    )
    merged, from_cart = merge_attributes(cart, measured)
    values = merged.values
    assert (values["VentricularRate"], values["QRSDuration"]) == (91.0, 88.0)  # the cart's win
    assert (values["QTInterval"], values["AtrialRate"], values["QRSCount"]) == (400.0, 80.0, 13.0)
    assert values["QTCorrected"] == round(400.0 / math.sqrt(60.0 / 91.0))  # QT measured, rate from the cart
    assert values["TOffset"] - values["QOnset"] == 200.0 and values["QOffset"] - values["QOnset"] == 44.0
    assert math.isnan(values["RAxis"]) and "29999" in merged.reasons["RAxis"]
    assert "QTInterval" not in from_cart and "QRSDuration" in from_cart and "TAxis" in from_cart
    assert [chapman_axis(a) for a in (-90, 270, 300, -89, 0)] == [270.0, 270.0, -60.0, -89.0, 0.0]


def _stand_in_dat(header_path: Path, signal_mv: np.ndarray) -> None:
    """Write a format-16 ``.dat`` for a real header: ``signal_mv`` [12, T] in the header's channel
    order at its gain, first samples and 16-bit checksums made to match the header's."""
    header = read_header(header_path)
    digital = np.round(signal_mv * np.array(header.adc_gain)[:, None]).astype(np.int64)
    for channel in range(header.n_sig):
        digital[channel, 0] = header.init_value[channel]
        gap = (header.checksum[channel] - int(digital[channel].sum())) % 65536
        gap = gap - 65536 if gap >= 32768 else gap
        step, extra = divmod(gap, digital.shape[1] - 1)  # spread the difference over the samples
        digital[channel, 1:] += step
        digital[channel, 1 : 1 + extra] += 1
    digital.T.astype("<i2").tofile(header_path.with_suffix(".dat"))


def test_the_real_headers_read_by_lead_name_with_stand_in_signals(tmp_path):
    for record in REAL_HEADERS:
        header = read_header(_real() / "headers_only" / f"{record}.hea")
        assert header.sig_name[4:6] == ["aVF", "aVL"]
        assert (header.fs, header.sig_len, set(header.adc_gain), set(header.fmt)) == (500.0, 5000, {200.0}, {"16"})
        mapping, ignored = map_channels(header.sig_name)
        assert not ignored and [CANONICAL_LEADS[mapping[c]] for c in range(12)] == list(header.sig_name)
        assert read_header_comments(_real() / "headers_only" / f"{record}.hea").patient_id == "10000032"

    # The real tables and headers; the waveforms are not available, so each header gets a stand-in
    # .dat that matches its checksums, and the second study a record_list row of its own.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("record_list.csv", "machine_measurements.csv", "waveform_note_links.csv"):
        shutil.copy(_real() / name, src / name)
    truth = ecg_signal(10.0, 500.0, 75.0, seed=3)  # canonical order
    in_file_order = truth[[CANONICAL_LEADS.index(n) for n in LEAD_NAMES]]
    for record in REAL_HEADERS:
        (src / record).parent.mkdir(parents=True)
        shutil.copy(_real() / "headers_only" / f"{record}.hea", src / f"{record}.hea")
        _stand_in_dat(src / f"{record}.hea", in_file_order)
    with (src / "record_list.csv").open("a") as handle:
        handle.write(f"10000032,49036311,49036311,2180-08-06 09:07:00,{REAL_HEADERS[1]}\n")

    result = prepare_mimic_iv_ecg(src, tmp_path / "out", options=PrepareOptions(progress=False))
    assert result.records == 2 and not result.skipped
    rows = pd.concat(list(result.splits.values())).set_index("record_id")
    assert set(rows["patient_id"].astype(str)) == {"10000032"}
    first = rows.loc["40689238"]
    assert (first["attr_QRSDuration"], first["attr_QTInterval"], first["attr_RAxis"]) == (88.0, 348.0, 77.0)
    assert first["attr_QRSCount"] >= 11  # measured on the stand-in signal (75 bpm, 10 s)
    cart_names = _from_cart(first["attr_from_cart"])
    assert "QRSCount" not in cart_names and "QRSDuration" in cart_names
    second = rows.loc["49036311"]  # no measurement row: everything from the delineation
    assert not _from_cart(second["attr_from_cart"]) and second["attr_VentricularRate"] == pytest.approx(75, abs=3)
    record = read_record(tmp_path / "out" / first["path"])
    for lead in ("aVL", "aVF", "V1"):
        slot = CANONICAL_LEADS.index(lead)
        # Matched by name, not position (sample 0 holds the header's first value).
        assert np.abs(record.feats[slot, 1:] - truth[slot, 1:]).max() < 0.05, lead


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic MIMIC-IV-ECG tree (5 subjects, 2 studies each, 3 s) and the truth per study."""
    root = tmp_path_factory.mktemp("mimic")
    truth = generate_mimic_iv_ecg(root / "src", 5, visits=(2, 2), seconds=3.0, seed=2)
    return root / "src", truth


def test_the_command_prepares_a_synthetic_tree(synthetic, tmp_path, capsys):
    src, truth = synthetic
    assert main([str(src), str(tmp_path / "out"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 10 records" in printed
    assert "5 of 5 patients have 2+ studies" in printed and "not demographics" in printed
    rows = pd.concat([read_metadata(tmp_path / "out", s).assign(split=s) for s in ("train", "valid", "test")])
    assert len(rows) == len(truth) and (rows.groupby("patient_id")["split"].nunique() == 1).all()
    assert rows["age"].isna().all()
    rows = rows.set_index("record_id").loc[truth["study_id"].astype(str)]
    assert (rows["patient_id"].astype(int).to_numpy() == truth["subject_id"].to_numpy()).all()
    for index, (study, row) in enumerate(zip(truth.itertuples(), rows.itertuples(), strict=True)):
        from_cart = _from_cart(row.attr_from_cart)
        if not study.measured:
            assert not from_cart and pd.isna(row.machine_report), index
            continue
        assert row.machine_report.startswith(("Sinus", "Atrial", "Rhythm", "Supraventricular")), index
        assert row.attr_QRSDuration == study.QRSDuration and "QRSDuration" in from_cart
        assert abs(row.attr_VentricularRate - study.VentricularRate) <= 1
        if index % 5 == 3:  # t_end not measured: QT from the delineation
            assert math.isnan(row.t_end) and "QTInterval" not in from_cart
            assert abs(row.attr_QTInterval - study.QTInterval) < 60, index
        else:
            assert row.attr_QTInterval == study.QTInterval and "QTInterval" in from_cart
        if index % 7 == 4:  # axes not measured
            assert math.isnan(row.qrs_axis) and "RAxis" not in from_cart
        else:
            assert row.attr_RAxis == round(study.RAxis) and "RAxis" in from_cart
    assert (rows["note_id"].notna().to_numpy() == (np.arange(len(rows)) % 2 == 0)).all()
    assert not (rows[list(CART_COLUMNS)] == NOT_MEASURED).any().any()
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["config"]["with_machine_measurements"] == int(truth["measured"].sum())


def test_bad_input_is_one_line_naming_the_file(synthetic, tmp_path, capsys):
    src, truth = synthetic
    copy = tmp_path / "src"
    shutil.copytree(src, copy)
    header = copy / f"{truth['path'][0]}.hea"
    header.write_text(header.read_text().replace(f"<subject_id>: {truth['subject_id'][0]}", "<subject_id>: 123"))
    result = prepare_mimic_iv_ecg(copy, tmp_path / "out", options=PrepareOptions(progress=False))
    (skip,) = result.skipped
    assert skip.file == str(header) and "header names subject 123" in skip.reason

    assert main([str(tmp_path / "nowhere"), str(tmp_path / "o2")]) == 2
    assert re.fullmatch(r"goodviews-prepare-mimic-iv-ecg: error: .*nowhere: not a directory\n", capsys.readouterr().err)
    (copy / "record_list.csv").write_text("subject_id,path\n1,files/x\n")
    assert main([str(copy), str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert f"{copy / 'record_list.csv'}: missing column(s) study_id" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_pclr_pretrains_with_positives_and_identification_runs(tmp_path):
    src = tmp_path / "src"
    generate_mimic_iv_ecg(src, 10, visits=(2, 3), seconds=4.0, seed=5)
    data = tmp_path / "data"
    assert main([str(src), str(data), "--no-progress", "--no-attributes"]) == 0
    ckpt = tmp_path / "ckpt"
    run = hydra_train(
        PRETRAIN_CONFIGS,
        "patient",
        [
            "preset=cpu_small",
            "task.sample_size=1000",
            "dataset.batch_size=8",
            "dataset.num_workers=0",
            f"task.data={data}",
            f"checkpoint.save_dir={ckpt}",
            "optimization.max_epoch=1",
            "task.strategy.same_recording=false",
        ],
        tmp_path,
    )
    log = run.stdout + run.stderr
    described = re.search(r"train: (\d+) records, strategy (\{.*\})", log)
    assert described and "'strategy': 'patient'" in described.group(2), log[-3000:]
    assert "'records_without_partner': 0" in described.group(2), described.group(0)
    out = tmp_path / "identify.json"
    checkpoint = str(ckpt / "checkpoint_last.pt")
    assert identify([checkpoint, "--data", str(data), "--split", "train", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint_task"] == "ecg_pretraining" and result["n_patients_with_probes"] >= 4
    assert result["split"] == "train" and result["n_probe"] > 0 and "top1" in result
