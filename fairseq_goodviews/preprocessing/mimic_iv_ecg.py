"""MIMIC-IV-ECG -> per-record ``.mat`` files, patient-wise splits and manifests.

Layout read (PhysioNet's "MIMIC-IV-ECG: Diagnostic Electrocardiogram Matched Subset")::

    SRC/record_list.csv            subject_id, study_id, path (WFDB record under SRC, no extension)
    SRC/machine_measurements.csv   per study_id: cart_id, ecg_time, report_0 .. report_17,
                                   rr_interval, p_onset, p_end, qrs_onset, qrs_end, t_end (ms),
                                   p_axis, qrs_axis, t_axis (degrees)          (optional)
    SRC/waveform_note_links.csv    per study_id: note_id of the cardiologist's note (optional)
    SRC/files/pNNNN/pSUBJECT/sSTUDY/STUDY.{hea,dat}   12 leads, 500 Hz, 10 s, format 16

A record is a study (key = ``study_id``), its patient the ``subject_id``; the header's
``# <subject_id>:`` comment must name the same subject (else the record is skipped). Leads are
matched by name (the headers list aVF before aVL). Splits are patient-wise and seeded
(:func:`~.splits.assign_splits`), so every study of a subject is in one split.

**Attributes.** The cart's global measurements become the ``attr_*`` columns in the units of the
Attributes strategy (Chapman's, :func:`cart_attributes`): ``VentricularRate`` = 60000 /
``rr_interval`` (bpm), ``QRSDuration`` = ``qrs_end - qrs_onset`` and ``QTInterval`` = ``t_end -
qrs_onset`` (ms), ``QTCorrected`` Bazett's, ``RAxis``/``TAxis`` the ``qrs_axis``/``t_axis`` in
Chapman's range (-90, 270], ``AtrialRate`` the ventricular rate when the cart measured a P wave
(``p_onset`` < ``p_end`` <= ``qrs_onset``). The cart writes :data:`NOT_MEASURED` (29999) where it
measured nothing; that, a blank and a non-positive duration are missing values, never numbers.
What the cart leaves missing, and ``QRSCount`` (no cart column), comes from our own delineation
(:func:`~.wave_attributes.compute_wave_attributes`, as for the other WFDB sources);
:func:`merge_attributes` says how the two are combined, ``attr_from_cart`` which attributes came
from the cart, ``attr_missing`` why any is still missing. ``--no-attributes`` skips the
delineation; the cart's values are still written.

The raw cart columns are kept in the metadata table (sentinels as empty), as are ``ecg_time``,
``cart_id``, ``note_id`` and ``machine_report`` (the non-empty ``report_*`` lines joined by
``"; "``). Age and sex are in MIMIC-IV's ``patients`` table, which this release does not contain:
the ``age`` and ``sex`` columns stay empty unless a header carries them, so the Demographics
strategy has nothing to group by (:func:`supported_strategies` says what the written data supports).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.io.records import EcgRecord
from fairseq_goodviews.preprocessing.items import (
    DUPLICATE,
    UNREADABLE,
    PrepareError,
    PrepareOptions,
    PrepareResult,
    Skipped,
    SkipRecord,
    SourceItem,
    read_source_table,
)
from fairseq_goodviews.preprocessing.median_beat import reported_qonset
from fairseq_goodviews.preprocessing.pipeline import prepare
from fairseq_goodviews.preprocessing.wave_attributes import WaveAttributes, compute_wave_attributes
from fairseq_goodviews.preprocessing.wfdb_dir import WfdbConverter, converter_config
from fairseq_goodviews.preprocessing.wfdb_reader import read_header_comments

RECORD_LIST = "record_list.csv"
MEASUREMENTS = "machine_measurements.csv"
NOTE_LINKS = "waveform_note_links.csv"
RECORD_LIST_COLUMNS: tuple[str, ...] = ("subject_id", "study_id", "path")
MEASUREMENTS_KEY_COLUMNS: tuple[str, ...] = ("subject_id", "study_id")
NOTE_LINK_COLUMNS: tuple[str, ...] = ("study_id", "note_id")
#: The cart's global measurements: intervals in ms from the start of its median-beat frame, axes in degrees.
CART_COLUMNS: tuple[str, ...] = (
    "rr_interval",
    "p_onset",
    "p_end",
    "qrs_onset",
    "qrs_end",
    "t_end",
    "p_axis",
    "qrs_axis",
    "t_axis",
)
REPORT_COLUMNS: tuple[str, ...] = tuple(f"report_{k}" for k in range(18))
#: The value MIMIC-IV-ECG's carts write for a fiducial or axis they did not measure.
NOT_MEASURED = 29999
SOURCE = "mimic-iv-ecg"
_MS_PER_SAMPLE = 2.0  # Chapman's median-beat frame is sampled at 500 Hz
_NOT_MEASURED_REASON = f"not measured by the cart ({NOT_MEASURED} or blank)"


def _integer(text: Any) -> int | None:
    """``"10000032"`` -> 10000032; anything that is not a whole number -> None."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value.is_integer() else None


def cart_value(text: Any) -> float | None:
    """One cart measurement: a number, or None when blank, unreadable or :data:`NOT_MEASURED`."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return None if not math.isfinite(value) or value == NOT_MEASURED else value


def chapman_axis(degrees: float) -> float:
    """An axis in Chapman's range (-90, 270]: -100 -> 260, 300 -> -60."""
    angle = (degrees + 90.0) % 360.0 - 90.0
    return 270.0 if angle == -90.0 else angle


def cart_attributes(row: Mapping[str, Any]) -> WaveAttributes:
    """The attributes the cart's measurements give (``row``: :data:`CART_COLUMNS`, sentinels as
    None or NaN), in Chapman's units; NaN with a reason where the cart gives none.

    ``QOnset``, ``QOffset``, ``TOffset`` and ``QRSCount`` are left to :func:`merge_attributes`
    and the delineation.
    """
    got = {c: cart_value(row.get(c)) for c in CART_COLUMNS}
    result = WaveAttributes()
    values, reasons = result.values, result.reasons
    rr = got["rr_interval"]
    if rr is None or rr <= 0:
        reasons["VentricularRate"] = f"rr_interval {_NOT_MEASURED_REASON if rr is None else 'not positive'}"
    else:
        values["VentricularRate"] = float(round(60000.0 / rr))
    onset, end = got["qrs_onset"], got["qrs_end"]
    if onset is None or end is None:
        reasons["QRSDuration"] = f"qrs_onset or qrs_end {_NOT_MEASURED_REASON}"
    elif end <= onset:
        reasons["QRSDuration"] = "qrs_end not after qrs_onset"
    else:
        values["QRSDuration"] = end - onset
    t_end = got["t_end"]
    if onset is None or t_end is None:
        reasons["QTInterval"] = f"qrs_onset or t_end {_NOT_MEASURED_REASON}"
    elif t_end <= (end if end is not None and end > onset else onset):
        reasons["QTInterval"] = "t_end not after the QRS"
    else:
        values["QTInterval"] = t_end - onset
    if math.isnan(values["QTInterval"]) or rr is None or rr <= 0:
        reasons["QTCorrected"] = "needs the cart's QT and rr_interval"
    else:
        values["QTCorrected"] = float(round(values["QTInterval"] / math.sqrt(rr / 1000.0)))
    p_onset, p_end = got["p_onset"], got["p_end"]
    p_wave = p_onset is not None and p_end is not None and p_onset < p_end and (onset is None or p_end <= onset)
    if not p_wave:
        reasons["AtrialRate"] = f"no P wave measured by the cart (p_onset, p_end {NOT_MEASURED}, blank or out of order)"
    elif math.isnan(values["VentricularRate"]):
        reasons["AtrialRate"] = reasons["VentricularRate"]
    else:
        values["AtrialRate"] = values["VentricularRate"]
    for name, column in (("RAxis", "qrs_axis"), ("TAxis", "t_axis")):
        if got[column] is None:
            reasons[name] = f"{column} {_NOT_MEASURED_REASON}"
        else:
            values[name] = chapman_axis(got[column])
    result.fail("not among the cart's measurements")
    return result


def _known(value: float) -> bool:
    return not math.isnan(value)


def merge_attributes(cart: WaveAttributes, measured: WaveAttributes | None) -> tuple[WaveAttributes, list[str]]:
    """The cart's attributes where it gives them, the delineation's (``measured``; None: not
    measured) elsewhere; returns them and the names that came from the cart.

    ``QTCorrected`` is the cart's when QT and rate both come from the cart, the delineation's
    when both come from it, else Bazett's at the merged QT and rate. ``QOnset``, ``QOffset`` and
    ``TOffset`` are placed from the merged QRS duration and QT in the 600-sample frame
    (:func:`~.median_beat.reported_qonset`), so that ``QRSDuration = 2 (QOffset - QOnset)`` and
    ``QTInterval = 2 (TOffset - QOnset)`` hold whatever each came from.
    """
    merged = WaveAttributes()
    values, reasons = merged.values, merged.reasons
    source: dict[str, str] = {}
    for name in ("VentricularRate", "AtrialRate", "QRSDuration", "QTInterval", "RAxis", "TAxis", "QRSCount"):
        if _known(cart.values[name]):
            values[name], source[name] = cart.values[name], "cart"
        elif measured is not None and _known(measured.values[name]):
            values[name], source[name] = measured.values[name], "measured"
        else:
            why = [cart.reasons.get(name, "not in the cart")]
            why.append("not measured (--no-attributes)" if measured is None else measured.reasons.get(name, ""))
            reasons[name] = "; ".join(w for w in why if w)
    qt_source, rate_source = source.get("QTInterval"), source.get("VentricularRate")
    if qt_source and qt_source == rate_source:
        taken = cart if qt_source == "cart" else measured
        values["QTCorrected"] = taken.values["QTCorrected"] if taken is not None else math.nan
        source["QTCorrected"] = qt_source
    elif qt_source and rate_source:
        values["QTCorrected"] = float(round(values["QTInterval"] / math.sqrt(60.0 / values["VentricularRate"])))
        source["QTCorrected"] = "mixed"
    if _known(values["QRSDuration"]):
        qrs = values["QRSDuration"] / _MS_PER_SAMPLE
        values["QOnset"] = float(reported_qonset(qrs))
        values["QOffset"] = values["QOnset"] + qrs
        source["QOnset"] = source["QOffset"] = source["QRSDuration"]
        if _known(values["QTInterval"]):
            values["TOffset"] = values["QOnset"] + values["QTInterval"] / _MS_PER_SAMPLE
            source["TOffset"] = "cart" if "measured" not in (source["QRSDuration"], qt_source) else "measured"
    merged.fail("needs the QRS duration and QT from the cart or the delineation")
    return merged, [name for name in ATTRIBUTE_NAMES if source.get(name) == "cart"]


@dataclass(frozen=True)
class MimicConverter(WfdbConverter):
    """:class:`WfdbConverter` for MIMIC-IV-ECG studies: checks the header's subject against the
    item's patient and writes :func:`merge_attributes` of the cart's values (the item's
    :data:`CART_COLUMNS`) and, with ``attributes``, the delineation's."""

    def __call__(self, item: SourceItem) -> EcgRecord:
        record = WfdbConverter.__call__(dataclasses.replace(self, attributes=False), item)
        header = read_header_comments(item.source)
        if header.patient_id is not None and header.patient_id != item.patient_id:
            raise SkipRecord(
                f"the header names subject {header.patient_id}, {RECORD_LIST} subject {item.patient_id}",
                category=UNREADABLE,
                file=str(item.source) + ".hea",
            )
        measured = None
        if self.attributes:
            measured = compute_wave_attributes(record.feats, record.sample_rate, record.lead_present)
        merged, from_cart = merge_attributes(cart_attributes(item.meta), measured)
        record.meta.update(merged.as_columns())
        record.meta["attributes"] = np.array([merged.values[n] for n in ATTRIBUTE_NAMES], dtype=np.float32)
        record.meta["attr_missing"] = "; ".join(f"{n}: {r}" for n, r in merged.reasons.items())
        record.meta["attr_from_cart"] = ",".join(from_cart)
        return record


def machine_report(row: Mapping[str, Any]) -> str:
    """The non-empty ``report_0`` .. ``report_17`` lines of a measurement row, joined by ``"; "``."""
    lines = (str(row.get(c, "")).strip() for c in REPORT_COLUMNS)
    return "; ".join(line for line in lines if line and line.lower() != "nan")


def _by_study(table: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """Rows keyed by their integer ``study_id`` (the first row of a study listed twice)."""
    rows: dict[int, dict[str, Any]] = {}
    for row in table.to_dict("records"):
        study = _integer(row["study_id"])
        if study is not None:
            rows.setdefault(study, row)
    return rows


def _optional_table(path: Path, required: tuple[str, ...], what: str) -> dict[int, dict[str, Any]]:
    return (
        _by_study(read_source_table(path, required, what, dtype=str, keep_default_na=False)) if path.is_file() else {}
    )


def mimic_items(src_dir: str | Path) -> tuple[list[SourceItem], list[Skipped], dict[str, Any]]:
    """List the studies of a MIMIC-IV-ECG folder; return (items, rejected up front, facts for the report)."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise PrepareError(f"{src_dir}: not a directory")
    record_list = src_dir / RECORD_LIST
    if not record_list.is_file():
        raise PrepareError(f"{record_list}: MIMIC-IV-ECG record list not found")
    table = read_source_table(record_list, RECORD_LIST_COLUMNS, "record list", dtype=str, keep_default_na=False)
    if table.empty:
        raise PrepareError(f"{record_list}: the table has no rows")
    measurements = _optional_table(src_dir / MEASUREMENTS, MEASUREMENTS_KEY_COLUMNS, "machine measurements")
    notes = _optional_table(src_dir / NOTE_LINKS, NOTE_LINK_COLUMNS, "note links")
    items: list[SourceItem] = []
    skipped: list[Skipped] = []
    seen: set[int] = set()
    for number, row in enumerate(table.to_dict("records"), start=2):
        where = f"{record_list} row {number}"
        study, subject, path = _integer(row["study_id"]), _integer(row["subject_id"]), row["path"].strip()
        if study is None or subject is None or not path:
            problem = "study_id" if study is None else "subject_id" if subject is None else "path"
            bad = f"{where}: {problem} {row[problem]!r} is not {'a path' if problem == 'path' else 'an integer'}"
            skipped.append(Skipped(f"row{number}", str(record_list), bad, UNREADABLE))
            continue
        record = src_dir / path
        if study in seen:
            skipped.append(
                Skipped(str(study), str(record) + ".hea", f"listed more than once in {RECORD_LIST}", DUPLICATE)
            )
            continue
        seen.add(study)
        cart = measurements.get(study, {})
        meta: dict[str, Any] = {
            "source": SOURCE,
            "study_id": study,
            "ecg_time": str(cart.get("ecg_time") or row.get("ecg_time", "")),
            "cart_id": _integer(cart.get("cart_id")),
            "note_id": str(notes.get(study, {}).get("note_id", "")),
            "machine_report": machine_report(cart),
            **{column: cart_value(cart.get(column)) for column in CART_COLUMNS},
        }
        items.append(SourceItem(key=str(study), patient_id=str(subject), meta=meta, source=record))
    studies = Counter(item.patient_id for item in items)
    facts = {
        "record_list_rows": len(table),
        "with_machine_measurements": sum(int(i.meta["study_id"]) in measurements for i in items),
        "with_note_links": sum(int(i.meta["study_id"]) in notes for i in items),
        "patients": len(studies),
        "patients_with_several_studies": sum(n > 1 for n in studies.values()),
    }
    return items, skipped, facts


def supported_strategies(result: PrepareResult) -> str:
    """One line on the positive-pair strategies the written data supports and why the others are not."""
    rows = pd.concat(list(result.splits.values()), ignore_index=True)
    per_patient = rows.groupby("patient_id")["record_id"].nunique()
    several = int((per_patient > 1).sum())
    has_attributes = rows[[f"attr_{n}" for n in ATTRIBUTE_NAMES]].notna().any(axis=1).sum()
    supported = [
        f"patient (PCLR) and identification ({several} of {len(per_patient)} patients have 2+ studies)",
        f"attributes ({has_attributes} of {len(rows)} records have wave attributes)",
    ]
    age = pd.to_numeric(rows.get("age"), errors="coerce") if "age" in rows else pd.Series(dtype=float)
    sex = rows["sex"].fillna("").astype(str) if "sex" in rows else pd.Series(dtype=str)
    with_demographics = int((age.notna() & sex.isin(["M", "F"])).sum()) if len(age) else 0
    line = "strategies the data supports: " + "; ".join(supported)
    if with_demographics:
        return line + f"; demographics ({with_demographics} records have age and sex from their header)"
    return line + (
        "; not demographics: age and sex are in MIMIC-IV's patients table, which this release does not contain"
    )


def prepare_mimic_iv_ecg(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    converter: MimicConverter | None = None,
    options: PrepareOptions | None = None,
) -> PrepareResult:
    """Prepare a MIMIC-IV-ECG folder into ``out_dir`` with patient-wise splits (see
    :func:`~.pipeline.prepare`); prints :func:`supported_strategies`."""
    converter = converter or MimicConverter()
    items, skipped, facts = mimic_items(src_dir)
    config = {"src_dir": str(Path(src_dir).resolve()), **converter_config(converter), **facts}
    result = prepare(items, converter, out_dir, options=options, skipped=skipped, source="mimic_iv_ecg", config=config)
    if result.shard is None:  # a shard's records are counted when the shards are merged
        print(supported_strategies(result))
    return result
