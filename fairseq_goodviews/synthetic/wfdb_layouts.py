"""Small synthetic WFDB collections in the layouts of PhysioNet 2021, PTB-XL and generic folders.

For tests and benchmarks of the WFDB preparers (no data may be downloaded at run time). Signals
come from the same dipole model as the synthetic Chapman data
(:func:`fairseq_goodviews.synthetic.ecg.synthesize_record`), so leads are mutually consistent
(III = II - I, ...) and the frontal axes are known. ``.dat`` records are written with
:func:`wfdb.wrsamp`; PhysioNet-2021-style ``.mat`` signal files (format ``16+24``: a MATLAB v4 file
whose 24-byte preamble precedes the interleaved int16 samples of its ``val`` variable) with
:func:`scipy.io.savemat` and a header written here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import wfdb

from fairseq_goodviews.io.signal import resample
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.synthetic.dipole import FS
from fairseq_goodviews.synthetic.ecg import synthesize_record
from fairseq_goodviews.synthetic.errors import SyntheticDataError
from fairseq_goodviews.synthetic.targets import Targets


def ecg_signal(
    seconds: float = 10.0,
    fs: float = 500.0,
    rate: float = 70.0,
    *,
    seed: int = 0,
    qrs_axis: float = 60.0,
    t_axis: float = 45.0,
    rhythm: str = "SR",
) -> np.ndarray:
    """A [12, round(seconds * fs)] ECG in mV (canonical lead order) from the dipole model.

    ``rhythm`` is a Chapman rhythm code (``"SR"``, ``"SB"``, ``"ST"``, ``"AFIB"``, ...; ``"AFIB"``
    has irregular RR intervals and no P waves); ``qrs_axis`` and ``t_axis`` are the frontal axes
    (degrees) the QRS and T waves have in leads I and aVF; QRS 90 ms, QTc 400 ms (Bazett).
    """
    targets = Targets(
        rhythm=rhythm,
        codes=frozenset(),
        age=55,
        male=bool(seed % 2),
        rate=rate,
        qrsd=90.0,
        qt=400.0 * math.sqrt(60.0 / rate),
        raxis=qrs_axis,
        taxis=t_axis,
    )
    n_samples = max(round(seconds * FS), FS)
    _, microvolts = synthesize_record(seed, 0, targets, n_samples=n_samples)
    signal = microvolts.T / 1000.0
    if fs != FS:
        signal = resample(signal, float(FS), float(fs))
    return signal[:, : round(seconds * fs)]


def write_wfdb(
    record: str | Path,
    signal_mv: np.ndarray,
    fs: float,
    names: Sequence[str],
    *,
    comments: Sequence[str] = (),
    storage: str = "dat",
    units: str = "mV",
    gain: float = 1000.0,
) -> Path:
    """Write ``signal_mv`` [C, T] as WFDB record ``record`` (path without extension); returns the header path.

    ``storage="dat"`` uses :func:`wfdb.wrsamp` (format 16); ``"mat"`` a format ``16+24`` ``.mat``
    file as PhysioNet 2020-2021 ship. ``units="uV"`` stores the same signal in microvolts.
    """
    record = Path(record)
    record.parent.mkdir(parents=True, exist_ok=True)
    # The same digital values in either unit: only the gain (units per ADC step) changes.
    digital = np.clip(np.round(np.asarray(signal_mv) * gain), -32767, 32767).astype(np.int16)
    adc_gain = gain / (1000.0 if units.lower() in ("uv", "µv") else 1.0)
    if storage == "dat":
        wfdb.wrsamp(
            record.name,
            fs=fs,
            units=[units] * len(names),
            sig_name=list(names),
            d_signal=digital.T.astype(np.int64),
            fmt=["16"] * len(names),
            adc_gain=[adc_gain] * len(names),
            baseline=[0] * len(names),
            comments=list(comments),
            write_dir=str(record.parent),
        )
        return record.with_suffix(".hea")
    if storage != "mat":
        raise SyntheticDataError(f"storage must be 'dat' or 'mat', got {storage!r}")
    scipy.io.savemat(str(record) + ".mat", {"val": digital}, format="4")
    fs_text = f"{fs:g}"
    lines = [f"{record.name} {len(names)} {fs_text} {digital.shape[1]}"]
    for channel, name in enumerate(names):
        lines.append(f"{record.name}.mat 16+24 {adc_gain:g}/{units} 16 0 {int(digital[channel, 0])} 0 0 {name}")
    lines.extend(f"#{c}" for c in comments)
    (record.parent / f"{record.name}.hea").write_text("\n".join(lines) + "\n")
    return record.parent / f"{record.name}.hea"


# (SNOMED code, rhythm class) of the synthetic PhysioNet records, by rhythm.
_PHYSIONET_RHYTHMS: dict[str, tuple[str, float]] = {
    "426783006": ("SR", 72.0),
    "426177001": ("SB", 50.0),
    "427084000": ("ST", 115.0),
    "164889003": ("AFIB", 95.0),
}


def write_physionet2021_tree(
    root: str | Path,
    n_per_subset: int = 3,
    subsets: Sequence[str] = ("chapman_shaoxing", "georgia", "cpsc_2018"),
    *,
    seconds: float = 10.0,
    rates: Sequence[float] = (500.0, 257.0, 1000.0),
    seed: int = 0,
) -> list[Path]:
    """``root/training/<subset>/g1/<id>.{hea,mat}`` records with ``#Age/#Sex/#Dx`` comments."""
    root = Path(root)
    codes = list(_PHYSIONET_RHYTHMS)
    prefixes = {
        "chapman_shaoxing": "JS",
        "georgia": "E",
        "cpsc_2018": "A",
        "ningbo": "JN",
        "ptb-xl": "HR",
        "st_petersburg_incart": "I",
        "ptb": "S",
        "cpsc_2018_extra": "Q",
    }
    headers: list[Path] = []
    k = 0
    for s_index, subset in enumerate(subsets):
        for i in range(n_per_subset):
            code = codes[k % len(codes)]
            rhythm, hr = _PHYSIONET_RHYTHMS[code]
            fs = rates[k % len(rates)]
            signal = ecg_signal(seconds, fs, hr, seed=seed * 1000 + k, rhythm=rhythm)
            name = f"{prefixes.get(subset, subset[:2].upper())}{s_index:01d}{i:04d}"
            comments = [
                f"Age: {30 + (k * 7) % 60}",
                f"Sex: {'Male' if k % 2 else 'Female'}",
                f"Dx: {code},164934002",
                "Rx: Unknown",
                "Hx: Unknown",
                "Sx: Unknown",
            ]
            headers.append(
                write_wfdb(
                    root / "training" / subset / "g1" / name,
                    signal,
                    fs,
                    CANONICAL_LEADS,
                    comments=comments,
                    storage="mat",
                )
            )
            k += 1
    return headers


# (PTB-XL statement, Chapman rhythm of the waveform, rate)
_PTBXL_RHYTHMS = (("SR", "SR", 72.0), ("SBRAD", "SB", 50.0), ("STACH", "ST", 115.0), ("AFIB", "AFIB", 95.0))


def write_ptbxl_tree(
    root: str | Path,
    n_records: int = 10,
    *,
    seconds: float = 10.0,
    seed: int = 0,
    database_columns: Sequence[str] | None = None,
) -> Path:
    """``root/ptbxl_database.csv`` + ``root/records500/00000/<id>_hr.{hea,dat}``; returns the CSV path.

    ``database_columns`` keeps only these columns of the table (to test a missing one).
    """
    root = Path(root)
    names = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    rows = []
    for i in range(n_records):
        ecg_id = i + 1
        code, rhythm, hr = _PTBXL_RHYTHMS[i % len(_PTBXL_RHYTHMS)]
        rel = f"records500/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_hr"
        write_wfdb(root / rel, ecg_signal(seconds, 500.0, hr, seed=seed * 1000 + i, rhythm=rhythm), 500.0, names)
        scp = {"NORM": 100.0, code: 0.0} if code == "SR" else {code: 0.0, "NDT": 50.0}
        rows.append(
            {
                "ecg_id": ecg_id,
                "patient_id": float(1000 + i // 2),
                "age": 300.0 if i == 3 else float(40 + i),
                "sex": i % 2,
                "height": np.nan,
                "weight": np.nan,
                "scp_codes": repr(scp),
                "strat_fold": i % 10 + 1,
                "filename_lr": rel.replace("500", "100").replace("_hr", "_lr"),
                "filename_hr": rel,
            }
        )
    table = pd.DataFrame(rows)
    if database_columns is not None:
        table = table[list(database_columns)]
    path = root / "ptbxl_database.csv"
    table.to_csv(path, index=False)
    return path


def write_wfdb_dir_tree(root: str | Path, n_records: int = 6, *, seconds: float = 10.0, seed: int = 0) -> list[Path]:
    """Records with assorted lead names, orders, subsets, units and rates (``.dat``)."""
    root = Path(root)
    layouts = [
        (list(CANONICAL_LEADS), 500.0, "mV"),
        ([n.lower() for n in CANONICAL_LEADS] + ["vx", "vy", "vz"], 1000.0, "mV"),
        (["V6", "V5", "V4", "V3", "V2", "V1", "AVF", "AVL", "AVR", "III", "II", "I"], 250.0, "uV"),
        (["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"], 360.0, "mV"),
        (["MLII", "V", "PLETH"], 257.0, "mV"),
    ]
    headers: list[Path] = []
    for i in range(n_records):
        names, fs, units = layouts[i % len(layouts)]
        full = ecg_signal(seconds, fs, 60.0 + 5 * i, seed=seed * 1000 + i)
        lookup = {n.lower(): k for k, n in enumerate(CANONICAL_LEADS)}
        lookup.update({"mlii": 1, "v": 8, "vx": 0, "vy": 5, "vz": 7, "pleth": 1})
        signal = np.stack([full[lookup[n.lower()]] for n in names])
        comments = [f"age: {25 + 3 * i}", f"sex: {'male' if i % 2 else 'female'}"]
        if i % 3 == 2:
            comments.append(f"patient: P{i // 3:03d}")
        headers.append(
            write_wfdb(root / f"group{i % 2}" / f"rec{i:03d}", signal, fs, names, comments=comments, units=units)
        )
    return headers
