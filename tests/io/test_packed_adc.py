"""An int16 pack of a 16-bit source holds the source's ADC values: real PhysioNet 2021 and PTB-XL
records, and a synthetic MIMIC-IV-ECG tree (200 steps per mV), prepared and packed as a user would."""

from pathlib import Path

import numpy as np
import scipy.io
import wfdb

from conftest import shared_data
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.io.packed import INT16, ShardedPack, write_pack
from fairseq_goodviews.leads import CANONICAL_LEADS, canonical_lead_name
from fairseq_goodviews.preprocessing.items import PrepareOptions
from fairseq_goodviews.preprocessing.mimic_iv_ecg import prepare_mimic_iv_ecg
from fairseq_goodviews.preprocessing.physionet2021 import prepare_physionet2021
from fairseq_goodviews.preprocessing.ptbxl import prepare_ptbxl
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter
from fairseq_goodviews.synthetic.mimic_iv_ecg import generate_mimic_iv_ecg

OPTIONS = PrepareOptions(progress=False, pack=True)
SPLITS = ("train", "valid", "test")


def _source_adc(header: Path) -> dict[str, np.ndarray]:
    """Each lead's digital samples, read without our reader: ``val`` of a PhysioNet ``.mat``
    file, wfdb's digital signal of a ``.dat`` file; keyed by canonical lead name."""
    lines = [line for line in header.read_text().splitlines() if line and not line.startswith("#")]
    names = [line.split()[-1] for line in lines[1:]]
    if lines[1].split()[0].endswith(".mat"):
        digital = scipy.io.loadmat(header.with_suffix(".mat"))["val"]
    else:
        digital = wfdb.rdrecord(str(header.with_suffix("")), physical=False).d_signal.T
    return {canonical_lead_name(name): np.asarray(row) for name, row in zip(names, digital, strict=True)}


def _check_every_value_is_the_adc_value(out: Path, header_of) -> tuple[int, set[float]]:
    """Every int16 record of every split equals its source's ADC values lead by lead (absent
    leads are zero); returns how many records were checked and the gains seen."""
    checked, gains = 0, set()
    for split in SPLITS:
        if not (out / f"{split}.tsv").is_file():
            continue
        table = read_metadata(out, split)
        pack = ShardedPack(out / f"{split}.tsv")
        for i, row in enumerate(table.itertuples()):
            assert pack.forms[i] == INT16, row.path
            n = pack.lengths[i]
            steps = pack.shard(pack.shards[i])[pack.offsets[i] : pack.offsets[i] + 12 * n].reshape(12, n)
            adc = _source_adc(header_of(row))
            for slot, lead in enumerate(CANONICAL_LEADS):
                expected = adc[lead] if pack.lead_present[i, slot] else np.zeros(n)
                np.testing.assert_array_equal(steps[slot], expected, err_msg=f"{row.path} {lead}")
            gains.update(pack.gains[pack.scales[i]].tolist())
            checked += 1
    return checked, gains


def _repack_in_two_processes(out: Path) -> None:
    for split in SPLITS:
        if (out / f"{split}.tsv").is_file():
            summary = write_pack(out / f"{split}.tsv", shard_records=2, workers=2)
            assert summary["shards"] == -(-summary["records"] // 2)


def test_real_physionet2021_records_pack_as_their_adc_values(tmp_path):
    src = shared_data() / "real" / "physionet2021"
    prepare_physionet2021(src, tmp_path, converter=WfdbConverter(attributes=False), options=OPTIONS)
    headers = {p.stem: p for p in src.rglob("*.hea")}
    checked, gains = _check_every_value_is_the_adc_value(tmp_path, lambda row: headers[row.record_name])
    assert checked == 13 and gains == {1000.0}
    _repack_in_two_processes(tmp_path)  # shards of 2 records, written by 2 processes at once
    assert _check_every_value_is_the_adc_value(tmp_path, lambda row: headers[row.record_name]) == (13, {1000.0})


def test_real_ptbxl_records_pack_as_their_adc_values(tmp_path):
    src = shared_data() / "real" / "ptbxl"
    prepare_ptbxl(src, tmp_path, converter=WfdbConverter(attributes=False), options=OPTIONS)
    headers = {p.stem: p for p in src.rglob("*.hea")}
    checked, gains = _check_every_value_is_the_adc_value(tmp_path, lambda row: headers[Path(row.path).stem])
    assert checked == 12 and gains == {1000.0}
    _repack_in_two_processes(tmp_path)
    assert _check_every_value_is_the_adc_value(tmp_path, lambda row: headers[Path(row.path).stem]) == (12, {1000.0})


def test_synthetic_mimic_iv_ecg_packs_as_its_adc_values_at_200_per_mv(tmp_path):
    truth = generate_mimic_iv_ecg(tmp_path / "src", 4, visits=(2, 2), seconds=3.0, seed=1)
    prepare_mimic_iv_ecg(tmp_path / "src", tmp_path / "out", converter=None, options=OPTIONS)
    headers = {Path(p).name: tmp_path / "src" / f"{p}.hea" for p in truth["path"]}
    checked, gains = _check_every_value_is_the_adc_value(
        tmp_path / "out", lambda row: headers[str(row.record_id).split("/")[-1]]
    )
    assert checked == len(truth) and gains == {200.0}
