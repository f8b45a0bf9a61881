"""Automatic wave attributes (Chapman's eleven) for records that come without them.

:func:`compute_wave_attributes` measures, from a [12, T] signal in mV:

* ``VentricularRate`` (bpm, 60 / mean RR), ``QRSCount`` (R peaks in the analysed window),
* ``QOnset``, ``QOffset``, ``TOffset``: sample indices at 500 Hz in a 600-sample median-beat frame
  placed as Chapman's MUSE places it (:func:`reported_qonset`), so that
  ``QRSDuration = 2 * (QOffset - QOnset)`` ms and ``QTInterval = 2 * (TOffset - QOnset)`` ms hold
  exactly,
* ``QTCorrected`` (Bazett: QT / sqrt(mean RR in s), as in Chapman),
* ``RAxis`` and ``TAxis`` (degrees in (-90, 270], Chapman's range) from the net QRS and ST-T areas
  of the median beat in leads I and aVF (derived from two other limb leads where I or aVF is
  absent, through Einthoven's and Goldberger's relations),
* ``AtrialRate``: equal to the ventricular rate when a consistent P wave precedes the QRS
  complexes (1:1 conduction); NaN otherwise (atrial fibrillation, flutter, junctional rhythms):
  fibrillatory and flutter rates are not measured.

R peaks come from one of :data:`R_PEAK_DETECTORS` (``detector=``): wfdb's XQRS
(``wfdb.processing.xqrs_detect``, the default) or GQRS (``gqrs_detect``), run on the QRS lead (the
measured leads projected on their first principal direction in the QRS band: the one signed lead
that carries the most QRS energy, what these single-lead detectors are built for); or neurokit2's
``ecg_peaks`` (the optional extra ``fairseq_goodviews[neurokit2]``, :class:`MissingExtraError`
without it), run on the QRS-band spatial magnitude of the measured leads. Every detector's marks
are moved to the maximum of that magnitude within ``PEAK_SNAP_S``, then cleaned: weak detections
inside an ordinary RR interval (T or P waves, which an adaptive threshold can pick up in
bradycardia) are dropped, and beats the detector skipped at the record's edges or in long gaps are
recovered. ``python -m fairseq_goodviews.evaluation.validate_attributes --compare-detectors``
measures the detectors against each other and against device measurements.

The delineation is done on the multi-lead median beat, the way ECG carts such as GE MUSE measure:
global QRS onset/offset from each lead's slope relative to its own QRS (so the slow terminal
forces of a bundle branch block count), T end by the trapezium-area method on the T wave's
principal component, searched no later than the next beat's P onset (one RR after the median
beat's own P onset, where a P wave precedes every QRS) nor the next QRS. The T axis is taken over
the T wave, from ``ST_SEGMENT_S`` after the QRS end, so that an ST depression or elevation does
not turn it. neurokit2's per-beat wavelet delineations of one lead (``method=
"neurokit_dwt"`` and ``"neurokit_cwt"``, which need the neurokit2 extra as well) are kept for
comparison; on the real Chapman records with GE MUSE measurements they err more on every fiducial
than the median beat, so the median beat is the default for QRS onset, QRS offset and T end alike
(``python -m fairseq_goodviews.evaluation.validate_attributes`` reports all three).

Attributes are measured on the first ``window_seconds`` (default 10 s, Chapman's length) so that
``QRSCount`` is comparable across sources and the cost is bounded for long recordings. Nothing here
raises on bad signals: an attribute that cannot be derived is NaN and :attr:`WaveAttributes.reasons`
says why.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import warnings
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import scipy.ndimage
import scipy.signal

from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES
from fairseq_goodviews.io.records import FLAT_LEAD_MV
from fairseq_goodviews.io.signal import resample
from fairseq_goodviews.leads import CANONICAL_LEADS
from fairseq_goodviews.preprocessing.median_beat import (
    FS,
    R_INDEX,
    align_beats,
    beat_matrix,
    dominant_beats,
    frontal_axis,
    frontal_leads,
    isoelectric_level,
    nanmedian_beat,
    p_onset,
    p_wave_consistent,
    qrs_bounds,
    reported_qonset,
    smooth_beat,
    t_offset,
    t_wave_start,
)

METHODS = ("median_beat", "neurokit_dwt", "neurokit_cwt")
R_PEAK_DETECTORS = ("xqrs", "gqrs", "neurokit2")
DEFAULT_R_PEAK_DETECTOR = "xqrs"
NEUROKIT2_EXTRA = "neurokit2"  # the setup.py extra that installs neurokit2
MIN_SECONDS = 2.5
# R-peak detection (see _detect_rpeaks): plausible rates, refractory period, mark-to-peak snap.
MIN_RATE_BPM = 20.0
MAX_RATE_BPM = 320.0
REFRACTORY_S = 0.2
PEAK_SNAP_S = 0.06
# Delineation constants (see _drop_spurious, _qrs_bounds and _t_offset).
SPURIOUS_AMPLITUDE = 0.4
SPURIOUS_GAP = 1.5
MISSED_AMPLITUDE = 0.3
EDGE_S = 0.06  # a QRS peak closer to the window's edge has its complex cut: not counted

# The eight independent leads (III, aVR, aVL, aVF are combinations of I and II): global
# measurements use them so that the limb leads do not count three times.
_INDEPENDENT = tuple(CANONICAL_LEADS.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"))


class WaveAttributeOptionError(GoodviewsError, ValueError):
    """An unknown delineation method or R-peak detector."""


class MissingExtraError(GoodviewsError, ImportError):
    """An option that needs an optional dependency (a setup.py extra) that is not installed."""


@dataclass
class WaveAttributes:
    """Values (NaN where not derivable) keyed by :data:`ATTRIBUTE_NAMES`, and why each NaN is NaN."""

    values: dict[str, float] = field(default_factory=lambda: {n: math.nan for n in ATTRIBUTE_NAMES})
    reasons: dict[str, str] = field(default_factory=dict)

    def as_columns(self) -> dict[str, float]:
        """``{"attr_<name>": value}``, the manifest's column names."""
        return {f"attr_{name}": float(value) for name, value in self.values.items()}

    def fail(self, reason: str, names: tuple[str, ...] | None = None) -> None:
        for name in names or ATTRIBUTE_NAMES:
            if math.isnan(self.values[name]):
                self.reasons.setdefault(name, reason)


@dataclass
class _Prepared:
    signal: np.ndarray  # [12, T] at 500 Hz, baseline removed (high-pass), absent leads zero
    detection: np.ndarray  # [T] QRS-band (8-30 Hz) spatial magnitude, for R-peak detection
    qrs_lead: np.ndarray  # [T] measured leads on their first QRS-band principal direction, in mV
    present: np.ndarray  # [12] bool, usable leads
    measured: np.ndarray  # lead slots the delineation uses (the independent leads present)


def compute_wave_attributes(
    feats: np.ndarray,
    sample_rate: float,
    lead_present: np.ndarray | None = None,
    window_seconds: float | None = 10.0,
    method: str = "median_beat",
    detector: str = DEFAULT_R_PEAK_DETECTOR,
) -> WaveAttributes:
    """Measure the eleven wave attributes with the R peaks of ``detector`` (one of
    :data:`R_PEAK_DETECTORS`); never raises on a bad signal (see the module docstring).

    Raises :class:`WaveAttributeOptionError` for an unknown ``method`` or ``detector`` and
    :class:`MissingExtraError` when they need neurokit2 and it is not installed.
    """
    load_backend(detector, method)
    result = WaveAttributes()
    try:
        prepared = _prepare(np.asarray(feats, dtype=np.float64), float(sample_rate), lead_present, window_seconds)
        if isinstance(prepared, str):
            result.fail(prepared)
            return result
        _measure(prepared, method, detector, result)
    except Exception as exc:  # a measurement must never stop a preprocessing run
        result.fail(f"measurement failed ({type(exc).__name__}: {exc})")
    return result


def detect_r_peaks(
    feats: np.ndarray,
    sample_rate: float,
    lead_present: np.ndarray | None = None,
    window_seconds: float | None = 10.0,
    detector: str = DEFAULT_R_PEAK_DETECTOR,
) -> np.ndarray | str:
    """The cleaned R peaks that :func:`compute_wave_attributes` measures from: sample indices at
    500 Hz in the analysed window, or the reason there are none. A bad signal never raises; an
    unknown or unavailable ``detector`` raises as in :func:`load_backend`."""
    load_backend(detector)
    prepared = _prepare(np.asarray(feats, dtype=np.float64), float(sample_rate), lead_present, window_seconds)
    return prepared if isinstance(prepared, str) else _detect_rpeaks(prepared, detector)


def load_backend(detector: str = DEFAULT_R_PEAK_DETECTOR, method: str = "median_beat") -> None:
    """Check ``detector`` and ``method`` and import what they need now (neurokit2 takes seconds):
    call before forking workers so that they inherit it.

    Raises :class:`WaveAttributeOptionError` for an unknown option and :class:`MissingExtraError`
    naming the extra to install when neurokit2 is needed and missing.
    """
    if method not in METHODS:
        raise WaveAttributeOptionError(f"method must be one of {METHODS}, got {method!r}")
    if detector not in R_PEAK_DETECTORS:
        raise WaveAttributeOptionError(f"R-peak detector must be one of {R_PEAK_DETECTORS}, got {detector!r}")
    import wfdb.processing  # noqa: F401

    if detector == "neurokit2":
        _neurokit2(f"the R-peak detector {detector!r}")
    if method.startswith("neurokit_"):
        _neurokit2(f"the delineation method {method!r}")


def _neurokit2(needed_by: str) -> ModuleType:
    """The neurokit2 module, or :class:`MissingExtraError` saying what needs it and how to install it."""
    try:
        import neurokit2  # an optional extra: imported only when asked for
    except ImportError as exc:
        raise MissingExtraError(
            f"{needed_by} needs neurokit2, which is not installed: pip install 'fairseq_goodviews[{NEUROKIT2_EXTRA}]'"
        ) from exc
    return neurokit2


def _prepare(
    feats: np.ndarray,
    sample_rate: float,
    lead_present: np.ndarray | None,
    window_seconds: float | None,
) -> _Prepared | str:
    if feats.ndim != 2 or feats.shape[0] != len(CANONICAL_LEADS):
        return f"expected a [12, T] signal, got shape {list(feats.shape)}"
    if not math.isfinite(sample_rate) or sample_rate <= 0:
        return f"invalid sample rate {sample_rate}"
    present = np.ones(len(CANONICAL_LEADS), bool) if lead_present is None else np.asarray(lead_present, bool).copy()
    if window_seconds:
        feats = feats[:, : round(window_seconds * sample_rate)]
    if feats.shape[1] == 0:
        return "no samples"
    present &= np.isfinite(feats).all(axis=1)
    finite = np.where(np.isfinite(feats), feats, 0.0)
    present &= np.ptp(finite, axis=1) >= FLAT_LEAD_MV
    if not present.any():
        return "no usable lead (absent, flat or non-finite)"
    seconds = feats.shape[1] / sample_rate
    if seconds < MIN_SECONDS:
        return f"record too short ({seconds:.2f} s < {MIN_SECONDS} s) for wave measurements"
    if sample_rate != FS:
        finite = resample(finite, sample_rate, FS)
    finite[~present] = 0.0
    highpass = scipy.signal.butter(2, 0.5, btype="highpass", fs=FS, output="sos")
    signal = scipy.signal.sosfiltfilt(highpass, finite, axis=1)
    independent = [i for i in _INDEPENDENT if present[i]]
    measured = np.asarray(independent if len(independent) >= 2 else np.flatnonzero(present))
    qrs_band = scipy.signal.butter(2, [8.0, 30.0], btype="bandpass", fs=FS, output="sos")
    banded = scipy.signal.sosfiltfilt(qrs_band, finite[measured], axis=1)
    detection = np.sqrt(np.sum(banded**2, axis=0))
    direction = np.linalg.svd(banded, full_matrices=False)[0][:, 0]
    qrs_lead = direction @ signal[measured]
    if qrs_lead.max() < -qrs_lead.min():
        qrs_lead = -qrs_lead
    return _Prepared(signal=signal, detection=detection, qrs_lead=qrs_lead, present=present, measured=measured)


def _detector_marks(prepared: _Prepared, detector: str) -> np.ndarray:
    """The detector's own QRS marks (sample indices), before any cleaning.

    wfdb's XQRS and GQRS are single-lead detectors with amplitude thresholds in mV: they run on
    the QRS lead, with the refractory period and rate limits below (their defaults, 200 and
    214 bpm at most, would miss the beats of a supraventricular tachycardia). neurokit2 runs on
    the QRS-band magnitude, positive whatever the QRS polarity of each lead, whose 8-30 Hz band
    keeps tall T waves from being counted.
    """
    if detector == "neurokit2":
        with _quiet():
            _, info = _neurokit2(f"the R-peak detector {detector!r}").ecg_peaks(
                prepared.detection, sampling_rate=int(FS), method="neurokit", mindelay=REFRACTORY_S
            )
        return np.asarray(info["ECG_R_Peaks"], dtype=int)
    import wfdb.processing  # here: a preparation that measures no attributes does not pay its import

    if detector == "xqrs":
        conf = wfdb.processing.XQRS.Conf(hr_min=MIN_RATE_BPM, hr_max=60.0 / REFRACTORY_S, ref_period=REFRACTORY_S)
        marks = wfdb.processing.xqrs_detect(prepared.qrs_lead, FS, conf=conf, verbose=False)
    else:
        marks = wfdb.processing.gqrs_detect(prepared.qrs_lead, fs=FS, RRmin=REFRACTORY_S, RRmax=60.0 / MIN_RATE_BPM)
    return np.asarray(marks, dtype=int)


def _snap_to_peaks(detection: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """Each mark moved to the largest sample of ``detection`` within ``PEAK_SNAP_S`` of it (wfdb's
    detectors mark their filters' peaks, up to tens of ms from the QRS peak); marks that land on
    the same peak count once, and peaks within ``EDGE_S`` of the window's edges, whose complex the
    edge cuts, not at all (MUSE counts the complexes that lie whole in the record)."""
    radius, edge = int(PEAK_SNAP_S * FS), int(EDGE_S * FS)
    snapped = np.unique(
        np.asarray(
            [max(m - radius, 0) + int(np.argmax(detection[max(m - radius, 0) : m + radius + 1])) for m in marks],
            dtype=int,
        )
    )
    return snapped[(snapped >= edge) & (snapped < len(detection) - edge)]


def _detect_rpeaks(prepared: _Prepared, detector: str = DEFAULT_R_PEAK_DETECTOR) -> np.ndarray | str:
    """R peaks: ``detector``'s marks (:func:`_detector_marks`) on the maxima of the QRS-band
    magnitude, then :func:`_drop_spurious` and :func:`_recover_missed`."""
    peaks = _snap_to_peaks(prepared.detection, _detector_marks(prepared, detector))
    peaks = _drop_spurious(prepared.detection, peaks)
    peaks = _recover_missed(prepared.detection, peaks)
    if len(peaks) < 2:
        return "fewer than two R peaks found"
    rate = 60.0 * FS / np.mean(np.diff(peaks))
    if not MIN_RATE_BPM <= rate <= MAX_RATE_BPM:
        return f"implausible heart rate {rate:.0f} bpm from the R peaks found"
    return peaks


def _recover_missed(detection: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Add QRS complexes the detector skipped: its filters need a second or so at the start of
    a record, and a beat can hide in a long gap. In the record's first and last stretches and
    in every gap longer than ``SPURIOUS_GAP`` median RRs, the largest peak of the detection
    signal at least 0.5 median RR from its neighbours and ``EDGE_S`` from the record's
    edges is a beat when it is as strong as ``MISSED_AMPLITUDE`` of the median peak."""
    if len(peaks) < 2:
        return peaks
    typical_rr = float(np.median(np.diff(peaks)))
    threshold = MISSED_AMPLITUDE * float(np.median(detection[peaks]))
    margin = int(0.5 * typical_rr)
    edge = int(EDGE_S * FS)  # a complex cut by the record's edge is not counted
    bounds = [(-typical_rr, peaks[0])] + [
        (a, b) for a, b in itertools.pairwise(peaks) if b - a > SPURIOUS_GAP * typical_rr
    ]
    bounds.append((peaks[-1], len(detection) - 1 + typical_rr))
    added = []
    for a, b in bounds:
        while True:
            lo, hi = int(max(a + margin, edge)), int(min(b - margin, len(detection) - 1 - edge))
            if hi <= lo:
                break
            best = lo + int(np.argmax(detection[lo : hi + 1]))
            if detection[best] < threshold or best in (lo, hi):
                break
            added.append(best)
            a = best  # look for a further beat after this one
    return np.sort(np.concatenate([peaks, np.asarray(added, dtype=peaks.dtype)])) if added else peaks


def _drop_spurious(detection: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Remove detections that are a T or P wave rather than a QRS complex.

    A detector's threshold adapts to the recent signal (neurokit2's to a moving average of the
    detection signal); in long RR intervals (bradycardia) it sinks until a T or P wave crosses it.
    Such a detection is weak (below ``SPURIOUS_AMPLITUDE`` of the 80th percentile of the peaks of
    the detection signal: a QRS complex, even when T and P waves outnumber the beats at very slow
    rates) and sits inside an ordinary RR interval: its neighbours are at most ``SPURIOUS_GAP``
    median RRs apart. A weak beat between neighbours further apart (a premature beat followed by
    its pause) is kept.
    """
    if len(peaks) < 3:
        return peaks
    keep = np.ones(len(peaks), bool)
    strong = detection[peaks] >= SPURIOUS_AMPLITUDE * np.percentile(detection[peaks], 80)
    if strong.sum() < 2:
        return peaks
    typical_rr = float(np.median(np.diff(peaks[strong])))
    for k in np.flatnonzero(~strong):
        before = peaks[:k][keep[:k]]
        after = peaks[k + 1 :]
        if len(before) and len(after) and after[0] - before[-1] <= SPURIOUS_GAP * typical_rr:
            keep[k] = False
        elif not len(before) or not len(after):  # a weak detection at an edge: a cut-off wave
            neighbour = after[0] if len(after) else before[-1]
            keep[k] = abs(neighbour - peaks[k]) > 0.7 * typical_rr
    return peaks[keep]


def _neurokit_bounds(prepared: _Prepared, peaks: np.ndarray, method: str) -> tuple[int, int, int] | str:
    """QRS onset/offset and T offset as medians of neurokit2's per-beat wavelet delineation
    (``method``: ``"dwt"`` or ``"cwt"``) of the measured lead with the largest QRS."""
    nk = _neurokit2(f"the delineation method 'neurokit_{method}'")
    lead = prepared.measured[int(np.argmax(np.ptp(prepared.signal[prepared.measured], axis=1)))]
    with _quiet():
        _, waves = nk.ecg_delineate(prepared.signal[lead], peaks, sampling_rate=int(FS), method=method)

    def median_offset(key: str) -> float:
        points = np.asarray(waves.get(key, []), dtype=float)
        n = min(len(points), len(peaks))
        delta = points[:n] - peaks[:n]
        delta = delta[np.isfinite(delta)]
        return float(np.median(delta)) if len(delta) else math.nan

    onset, offset, t_end = (median_offset(k) for k in ("ECG_R_Onsets", "ECG_R_Offsets", "ECG_T_Offsets"))
    if not all(math.isfinite(v) for v in (onset, offset, t_end)):
        return "neurokit2 delineation found no QRS onset/offset or T offset"
    return (R_INDEX + round(onset), R_INDEX + round(offset), R_INDEX + round(t_end))


def _measure(prepared: _Prepared, method: str, detector: str, result: WaveAttributes) -> None:
    values = result.values
    peaks = _detect_rpeaks(prepared, detector)
    if isinstance(peaks, str):
        result.fail(peaks)
        return
    rr = float(np.mean(np.diff(peaks))) / FS
    values["VentricularRate"] = float(round(60.0 / rr))
    values["QRSCount"] = float(len(peaks))

    aligned = align_beats(beat_matrix(prepared.signal, peaks), prepared.measured)
    dominant = dominant_beats(aligned, prepared.measured)
    beats = aligned[dominant]
    median = smooth_beat(nanmedian_beat(beats))
    if np.isnan(median[prepared.present][:, R_INDEX - int(0.3 * FS) : R_INDEX + int(0.3 * FS)]).any():
        result.fail("too few complete beats for a median beat")
        return
    median = np.nan_to_num(median)

    t_off: int | None = None
    if method.startswith("neurokit_"):
        bounds = _neurokit_bounds(prepared, peaks, method.split("_", 1)[1])
        if isinstance(bounds, str):
            result.fail(bounds)
            return
        q_on, q_off, t_off = bounds
        median = median - isoelectric_level(median, q_on)
        p_wave = p_wave_consistent(beats, median, prepared.measured, q_on)
    else:
        qrs = qrs_bounds(median[prepared.measured])
        if isinstance(qrs, str):
            result.fail(qrs)
            return
        q_on, q_off = qrs
        median = median - isoelectric_level(median, q_on)
        measured = median[prepared.measured]
        p_wave = p_wave_consistent(beats, median, prepared.measured, q_on)
        t_end = t_offset(measured, q_on, q_off, rr, p_onset(measured, q_on, q_off, rr) if p_wave else None)
        if isinstance(t_end, str):
            result.fail(t_end, ("TOffset", "QTInterval", "QTCorrected", "TAxis"))
        else:
            t_off = t_end
    shift = reported_qonset(q_off - q_on) - q_on
    values["QOnset"], values["QOffset"] = float(q_on + shift), float(q_off + shift)
    values["QRSDuration"] = 2.0 * (q_off - q_on)
    if t_off is not None:
        values["TOffset"] = float(t_off + shift)
        values["QTInterval"] = 2.0 * (t_off - q_on)
        values["QTCorrected"] = float(round(values["QTInterval"] / math.sqrt(rr)))

    frontal = frontal_leads(median, prepared.present)
    if isinstance(frontal, str):
        result.fail(frontal, ("RAxis", "TAxis"))
    else:
        lead_i, avf = frontal
        values["RAxis"] = float(round(frontal_axis(lead_i, avf, q_on, q_off)))
        if t_off is not None:
            values["TAxis"] = float(round(frontal_axis(lead_i, avf, t_wave_start(q_off), t_off)))

    if p_wave:
        values["AtrialRate"] = values["VentricularRate"]
    else:
        result.fail(
            "no P wave consistently before the QRS complexes (e.g. atrial fibrillation or "
            "flutter, whose atrial rate is not measured)",
            ("AtrialRate",),
        )
    result.fail("not derivable")


@contextlib.contextmanager
def _quiet():
    """Silence neurokit2's warnings and prints for one call."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
