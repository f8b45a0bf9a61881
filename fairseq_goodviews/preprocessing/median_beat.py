"""Delineation of the median beat: beats cut around R peaks, aligned and combined into a median
beat per lead, then QRS onset and offset, T end and the frontal axes measured on it.

Input arrays are in mV at :data:`FS`; a beat matrix is [n_beats, 12, FRAME] with the R peak at
:data:`R_INDEX`; a median beat is [12, FRAME]. The R peaks come from
:mod:`fairseq_goodviews.preprocessing.wave_attributes`, which also turns these measurements into
the attributes.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage
import scipy.signal

from fairseq_goodviews.leads import CANONICAL_LEADS

FS = 500.0
R_INDEX = 250  # R peak position in the internal median-beat frame (see reported_qonset)
FRAME = 600
QONSET_INTERCEPT = 233.4
QONSET_SLOPE = -0.311
QRS_SLOPE_FRACTION = 0.03
QRS_QUIET_RUN = 4  # samples
QRS_LEAD_SHARE = 0.2
QRS_END_LEVEL = 0.3
QRS_SEARCH = 110  # samples searched on either side of the steepest QRS point
T_REFERENCE_S = 0.15
ST_SEGMENT_S = 0.04  # the T wave is looked for (and its axis taken) this long after the QRS end
QTC_LIMIT_S = 0.70
NEXT_QRS_MARGIN_S = 0.04
P_PEAK_WINDOW_S = (0.16, 0.03)  # the P peak is searched this long to this short before the QRS onset
P_MIN_MV = 0.04  # spatial magnitude of the smallest P wave taken for one
P_ONSET_LEVEL = 0.2  # P onset: where the magnitude falls below this share of the P peak
P_MAX_HALF_S = 0.1  # the P onset lies at most this long before the P peak
T_MIN_S = 0.08  # the shortest stretch a next-P bound may leave the T wave (see t_offset)
P_TROUGH = 1.2  # the previous T wave rises this many times above the trough before a P wave
_LEAD = {name: i for i, name in enumerate(CANONICAL_LEADS)}
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_AVF_GAIN = math.sqrt(3.0) / 2.0


def beat_matrix(signal: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """[n_beats, 12, FRAME] windows with the R peak at ``R_INDEX``; NaN outside the record."""
    n = signal.shape[1]
    beats = np.full((len(peaks), signal.shape[0], FRAME), np.nan)
    for k, p in enumerate(peaks):
        start = p - R_INDEX
        lo, hi = max(start, 0), min(start + FRAME, n)
        beats[k, :, lo - start : hi - start] = signal[:, lo:hi]
    return beats


def nanmedian_beat(beats: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where every beat is NaN); much faster than
    :func:`numpy.nanmedian`, which goes through masked arrays."""
    ordered = np.sort(beats, axis=0)  # NaN sort last
    count = np.sum(~np.isnan(beats), axis=0)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], axis=0)[0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None], axis=0)[0]
    median = (low + high) / 2.0
    median[count == 0] = np.nan
    return median


def align_beats(beats: np.ndarray, leads: np.ndarray, max_shift: int = 10) -> np.ndarray:
    """Shift each beat by up to ``max_shift`` samples to best match the median QRS."""
    lo, hi = R_INDEX - int(0.06 * FS), R_INDEX + int(0.06 * FS)
    ref = np.nan_to_num(nanmedian_beat(beats)[leads, lo:hi])
    region = np.nan_to_num(beats[:, leads, lo - max_shift : hi + max_shift])
    windows = np.lib.stride_tricks.sliding_window_view(region, hi - lo, axis=2)  # [beats, leads, shifts, width]
    shifts = np.argmax(np.einsum("blsw,lw->bs", windows, ref), axis=1) - max_shift
    aligned = np.full_like(beats, np.nan)
    for k, shift in enumerate(shifts):
        if shift >= 0:
            aligned[k, :, : FRAME - shift] = beats[k, :, shift:]
        else:
            aligned[k, :, -shift:] = beats[k, :, : FRAME + shift]
    return aligned


def dominant_beats(beats: np.ndarray, leads: np.ndarray) -> np.ndarray:
    """Indices of the beats whose QRS correlates with the median QRS (drops ectopic or noisy
    beats); all beats when fewer than half would remain."""
    template = nanmedian_beat(beats)[leads]
    lo, hi = R_INDEX - int(0.08 * FS), R_INDEX + int(0.1 * FS)
    ref = template[:, lo:hi].ravel()
    keep = []
    for k, beat in enumerate(beats):
        seg = beat[leads, lo:hi].ravel()
        ok = ~np.isnan(seg) & ~np.isnan(ref)
        if ok.sum() > 0.8 * len(seg) and np.corrcoef(seg[ok], ref[ok])[0, 1] > 0.8:
            keep.append(k)
    return np.asarray(keep) if len(keep) >= max(2, 0.5 * len(beats)) else np.arange(len(beats))


def smooth_beat(median: np.ndarray) -> np.ndarray:
    """Binomial 5-tap smoothing along time (suppresses mains and muscle noise, keeps QRS edges)."""
    return scipy.ndimage.convolve1d(median, _BINOMIAL, axis=-1, mode="nearest")


def reported_qonset(qrs_samples: int) -> int:
    """QOnset in the reported 600-sample median-beat frame, from the QRS width in samples.

    ECG carts place the median beat on their own fiducial point; in Chapman's real file (MUSE)
    QOnset = 233.4 - 0.311 * (QOffset - QOnset) (least squares over its 10,646 records, residual
    std 5.8 samples): the fiducial sits about a third into the QRS. Using the same relation keeps
    QOnset/QOffset/TOffset comparable with Chapman's; the durations do not depend on it.
    """
    return round(QONSET_INTERCEPT + QONSET_SLOPE * qrs_samples)


def qrs_bounds(median: np.ndarray) -> tuple[int, int] | str:
    """Global QRS onset and offset of the median beat ([leads, FRAME], measured leads, smoothed).

    Per lead, the onset is where the lead's absolute slope was last below ``QRS_SLOPE_FRACTION``
    of its QRS maximum (above its own noise floor) for ``QRS_QUIET_RUN`` samples in a row before
    the QRS, the offset where it first is so after it. A lead-relative threshold catches the slow
    terminal forces of wide complexes (bundle branch blocks), which one lead shows and the
    spatial velocity, dominated by the steepest lead, hides. Only leads whose QRS is steep (at
    least ``QRS_LEAD_SHARE`` of the steepest lead's slope) vote, so that a lead with a tiny QRS
    and a tall T wave does not stretch the QRS into the T wave; and a lead's offset only counts
    when the lead is back within ``QRS_END_LEVEL`` of its QRS amplitude from its PR level there
    (at fast rates a T wave can follow the QRS without an ST segment, and its flat apex would
    pass for the end of the QRS). The global onset is the second
    earliest lead onset and the offset the second latest lead offset (the earliest and the latest,
    as ECG carts take them, without trusting a single lead).
    """
    slopes = np.abs(np.diff(median, axis=1))
    velocity = np.sqrt(np.sum(slopes**2, axis=0))
    lo, hi = R_INDEX - 40, R_INDEX + 40
    peak = lo + int(np.argmax(velocity[lo:hi]))
    if velocity[peak] <= 0:
        return "no QRS complex in the median beat"
    first = max(peak - QRS_SEARCH, 0)
    quiet_zones = np.concatenate(
        [slopes[:, first : max(peak - 60, first + 1)], slopes[:, peak + 150 : peak + 200]], axis=1
    )
    floor = np.median(quiet_zones, axis=1)
    tops = lo + np.argmax(slopes[:, lo:hi], axis=1)
    top_slopes = slopes[np.arange(len(slopes)), tops]
    onsets, offsets = [], []
    for lead, slope, noise, top in zip(median, slopes, floor, tops, strict=True):
        if slope[top] <= noise or slope[top] < QRS_LEAD_SHARE * top_slopes.max():
            continue
        quiet = slope < noise + QRS_SLOPE_FRACTION * (slope[top] - noise)
        run = np.convolve(quiet, np.ones(QRS_QUIET_RUN), mode="valid") == QRS_QUIET_RUN
        before = np.flatnonzero(run[first : peak - QRS_QUIET_RUN + 1])
        after = np.flatnonzero(run[peak : peak + QRS_SEARCH])
        if not len(before) or not len(after):
            continue
        onset, offset = first + int(before[-1]) + QRS_QUIET_RUN, peak + int(after[0])
        onsets.append(onset)
        level = lead[max(onset - 6, 0) : max(onset - 1, 1)].mean()
        if abs(lead[offset] - level) <= QRS_END_LEVEL * np.ptp(lead[onset : offset + 1]):
            offsets.append(offset)
    if not onsets or not offsets:
        return "QRS onset or offset not found in the median beat"
    return int(np.sort(onsets)[min(1, len(onsets) - 1)]), int(np.sort(offsets)[::-1][min(1, len(offsets) - 1)])


def p_onset(median: np.ndarray, q_on: int, q_off: int, rr: float) -> int | None:
    """P-wave onset of the median beat ([leads, FRAME], measured leads, baseline-corrected at the
    PR segment; QRS from ``q_on`` to ``q_off``, mean RR ``rr`` in s), or None when no P wave shows
    before the QRS.

    The P peak is the largest local maximum of the spatial magnitude from ``P_PEAK_WINDOW_S[0]`` to
    ``P_PEAK_WINDOW_S[1]`` before the QRS onset (a local maximum, so that the descending limb of the
    previous T wave, which enters the window at fast rates, does not count). The onset is the last
    sample before the peak where the magnitude is below ``P_ONSET_LEVEL`` of the peak's, or, when
    the previous T wave runs into the P wave, the lowest point between them. A P wave is a wave of
    its own: between the previous beat's QRS and the onset, the previous T wave must rise
    ``P_TROUGH`` times above the onset's magnitude; otherwise the wave before the QRS is the
    previous T wave itself (a QT as long as the RR, with no P wave of its own to see).
    """
    lo, hi = q_on - int(P_PEAK_WINDOW_S[0] * FS), q_on - int(P_PEAK_WINDOW_S[1] * FS)
    if lo < 1:
        return None
    magnitude = np.sqrt(np.sum(median[:, :hi] ** 2, axis=0))
    maxima = lo + scipy.signal.find_peaks(magnitude[lo:hi])[0]
    if not len(maxima):
        return None
    peak = int(maxima[np.argmax(magnitude[maxima])])
    if magnitude[peak] < P_MIN_MV:
        return None
    start = max(peak - int(P_MAX_HALF_S * FS), 0)
    below = np.flatnonzero(magnitude[start:peak] <= P_ONSET_LEVEL * magnitude[peak])
    onset = start + int(below[-1]) if len(below) else start + int(np.argmin(magnitude[start:peak]))
    previous_t = magnitude[max(t_wave_start(q_off) - int(rr * FS), 0) : onset]
    if len(previous_t) and previous_t.max() < P_TROUGH * magnitude[onset]:
        return None
    return onset


def t_wave_start(q_off: int) -> int:
    """Where the T wave is looked for: ``ST_SEGMENT_S`` after the QRS end, past the ST segment,
    which an elevation would make the T peak and a depression would turn the T axis."""
    return q_off + int(ST_SEGMENT_S * FS)


def t_offset(median: np.ndarray, q_on: int, q_off: int, rr: float, p_on: int | None = None) -> int | str:
    """T-wave end by the trapezium-area method (Vazquez-Seisdedos et al. 2011) on the T wave's
    principal component.

    The ST-T segments of the measured leads (``median``: [leads, FRAME], baseline-corrected) are
    projected on their first principal direction, which carries the T wave whatever its polarity
    in each lead. From the point of steepest descent after the T peak, ``xm``, to a reference
    ``xr`` ``T_REFERENCE_S`` later, the T end is the point ``xi`` that maximises the area of the
    trapezium (xm, y(xm)), (xi, y(xi)), (xr, y(xi)), (xr, y(xm)): it does not depend on the
    baseline level after the T wave, which the tangent method needs. Values beyond the PR-segment
    baseline on the far side count as the baseline, so that a following wave of the opposite
    polarity (often the next P wave at fast rates) does not drag the end later. Searched after the J point,
    up to a QTc of ``QTC_LIMIT_S``, ``NEXT_QRS_MARGIN_S`` before the next QRS and, when the beat has a
    P wave starting at ``p_on`` (:func:`p_onset`), up to the next beat's P onset, one RR later: at fast
    rates the next P wave follows the T wave closely and would otherwise pass for its descending limb.
    A bound that leaves the T wave less than ``T_MIN_S`` is ignored.
    """
    end = int(min(FRAME - 1, q_on + (rr - NEXT_QRS_MARGIN_S) * FS, q_on + QTC_LIMIT_S * math.sqrt(rr) * FS))
    start = t_wave_start(q_off)
    if p_on is not None and p_on + int(rr * FS) >= start + T_MIN_S * FS:
        end = min(end, p_on + int(rr * FS))
    found = _trapezium_end(median, start, end)
    return found if isinstance(found, str) else found[0]


def _trapezium_end(median: np.ndarray, start: int, end: int) -> tuple[int, np.ndarray] | str:
    """The trapezium T end searched from ``start`` to ``end`` (see :func:`t_offset`) and the T
    wave (its principal component from ``start`` to ``end``, as a share of its peak); or why there
    is none."""
    if end - start < 8:
        return "RR too short to find the T wave"
    segment = median[:, start : end + 1]
    direction = np.linalg.svd(segment - segment.mean(axis=1, keepdims=True), full_matrices=False)[0][:, 0]
    wave = direction @ segment
    if wave.max() < -wave.min():
        wave = -wave
    top = int(np.argmax(wave))
    if wave[top] < 0.02:
        return "no T wave above 0.02 mV"
    slope = np.diff(wave[top:])
    if not len(slope) or slope.min() >= 0:
        return "T wave has no descending limb before the next beat"
    xm = top + int(np.argmin(slope))
    xr = min(len(wave) - 1, xm + int(T_REFERENCE_S * FS))
    xi = np.arange(xm, xr + 1)
    area = (wave[xm] - np.maximum(wave[xi], 0.0)) * (2 * xr - xi - xm)
    return start + xm + int(np.argmax(area)), wave / wave[top]


def frontal_leads(median: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    """Leads I and aVF of the median beat, derived from two other limb leads where needed."""
    have = {name: median[_LEAD[name]] for name in CANONICAL_LEADS[:6] if present[_LEAD[name]]}
    lead_i, lead_ii, lead_iii = have.get("I"), have.get("II"), have.get("III")
    if lead_i is None and "aVL" in have and lead_ii is not None:
        lead_i = have["aVL"] + lead_ii / 2
    if lead_i is None and "aVR" in have and lead_ii is not None:
        lead_i = -2 * have["aVR"] - lead_ii
    if lead_i is None and lead_ii is not None and lead_iii is not None:
        lead_i = lead_ii - lead_iii
    if lead_ii is None and lead_i is not None and lead_iii is not None:
        lead_ii = lead_i + lead_iii
    avf = have.get("aVF")
    if avf is None and lead_i is not None and lead_ii is not None:
        avf = lead_ii - lead_i / 2
    if lead_i is None or avf is None:
        return "leads I and aVF are neither present nor derivable from the limb leads present"
    return lead_i, avf


def frontal_axis(lead_i: np.ndarray, avf: np.ndarray, lo: int, hi: int) -> float:
    """Frontal axis in degrees, Chapman's range (-90, 270], from net areas in I and aVF.

    aVF sees the vertical component of the heart vector with gain sqrt(3)/2 (Einthoven triangle)
    and lead I the horizontal one with gain 1, hence the correction of the aVF area.
    """
    area_i = float(np.sum(lead_i[lo : hi + 1]))
    area_f = float(np.sum(avf[lo : hi + 1])) / _AVF_GAIN
    if area_i == 0.0 and area_f == 0.0:
        return math.nan
    angle = math.degrees(math.atan2(area_f, area_i))
    return angle + 360.0 if angle <= -90.0 else angle


def p_wave_consistent(beats: np.ndarray, median: np.ndarray, leads: np.ndarray, onset: int) -> bool:
    """True when a P wave shows in the median beat and in most single beats before the QRS."""
    lo, hi = max(onset - int(0.26 * FS), 0), onset - int(0.03 * FS)
    if hi - lo < int(0.08 * FS):
        return False
    template = median[leads, lo:hi]
    template = template - template.mean(axis=1, keepdims=True)
    if float(np.max(np.sqrt(np.mean(template**2, axis=0)))) < 0.03:
        return False
    matches = 0
    for beat in beats:
        seg = beat[leads, lo:hi]
        if np.isnan(seg).any():
            continue
        seg = seg - seg.mean(axis=1, keepdims=True)
        matches += np.corrcoef(seg.ravel(), template.ravel())[0, 1] > 0.5
    return matches >= 0.7 * len(beats)


def isoelectric_level(median: np.ndarray, onset: int) -> np.ndarray:
    """Per-lead baseline: the mean of the PR segment just before the QRS onset."""
    seg = median[:, max(onset - 6, 0) : max(onset - 1, 1)]
    return np.mean(seg, axis=1, keepdims=True)
