"""The fit of a patient's beat to the record's targets, and the model's own true fiducials.

:func:`calibrate` finds the QRS time scale, the T-wave position and the frontal rotations of the
QRS and T loops whose true fiducials (:func:`true_fiducials`) give the targeted QRS duration, QT
and axes. A wave of the dipole is "on" while its magnitude is at least :data:`FIDUCIAL_MV`; the
fiducials are the instants the QRS and T waves are on, in closed form, not a measurement of any
signal (see :mod:`fairseq_goodviews.synthetic.ecg`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fairseq_goodviews.synthetic.dipole import Waves
from fairseq_goodviews.synthetic.patient import Patient
from fairseq_goodviews.synthetic.targets import NO_P_WAVES, RETROGRADE, Targets

FIDUCIAL_MV = 0.02  # a wave is "on" while its dipole magnitude is at least this (see the docstring)
_SQRT3 = math.sqrt(3.0)


def chapman_axis(angle: float) -> int:
    """An angle in degrees in Chapman's (MUSE's) range (-90, 270], rounded."""
    return int(270 - (270 - round(angle)) % 360)


@dataclass(frozen=True)
class Calibration:
    """How a patient's dominant beat is fitted to the targets (see :func:`calibrate`)."""

    stretch: float  # time scale of the QRS
    qrs_rotation: float  # degrees
    t_rotation: float  # degrees
    t_centre: float  # s, T reference after the R wave
    onset: float  # s from the true QRS onset to R
    offset: float  # s from R to the true QRS offset


def dominant_beat(pat: Patient, cal: Calibration) -> tuple[Waves, Waves]:
    """QRS+ST and T(+U) waves of a dominant beat, R at t = 0, rotated to the calibrated axes."""
    qrs = pat.qrs.stretched(cal.stretch)
    j_point = float(np.max(qrs.t + 2 * qrs.sr)) if len(qrs.t) else 0.0
    depol = Waves.concat([qrs, pat.st.shifted(j_point)]).rotated(cal.qrs_rotation)
    return depol, pat.repol.shifted(cal.t_centre).rotated(cal.t_rotation)


def beat_p(pat: Patient, cal: Calibration, rhythm: str) -> tuple[Waves, float]:
    """The P wave that belongs to each beat and its centre relative to the R wave (s)."""
    if rhythm in RETROGRADE:
        return pat.p_retro, cal.offset + pat.retro_delay
    return pat.p_sinus, -cal.onset - pat.pr + _p_half(pat)


def _p_half(pat: Patient) -> float:
    """Half the visible duration of the P wave (s)."""
    return float(np.max(np.abs(pat.p_sinus.t)) + 2.5 * np.max(pat.p_sinus.sl))


def _extent(waves: Waves) -> tuple[float, float]:
    """First and last instant (s, in the waves' own frame) at which a wave of the group is on.

    A wave of peak magnitude ``a`` > :data:`FIDUCIAL_MV` and widths ``sl``, ``sr`` is on from
    ``t - sl * r`` to ``t + sr * r`` with ``r = sqrt(2 ln(a / FIDUCIAL_MV))``.
    """
    amp = np.linalg.norm(waves.v, axis=1)
    on = amp > FIDUCIAL_MV
    if not on.any():
        return 0.0, 0.0
    reach = np.sqrt(2.0 * np.log(amp[on] / FIDUCIAL_MV))
    return float(np.min(waves.t[on] - waves.sl[on] * reach)), float(np.max(waves.t[on] + waves.sr[on] * reach))


def _net_area(waves: Waves) -> np.ndarray:
    """Time integral of the dipole of a group of asymmetric Gaussian waves, (3,) mV s."""
    return (waves.v * (math.sqrt(math.pi / 2.0) * (waves.sl + waves.sr))[:, None]).sum(axis=0)


def _frontal_axis(area: np.ndarray, leads: np.ndarray) -> float:
    """Axis (degrees) of a dipole area vector seen in leads I and aVF, as on the hexaxial
    reference system (Einthoven's triangle gives aVF a gain of sqrt(3)/2 relative to I)."""
    lead_i, lead_ii = float(area @ leads[0]), float(area @ leads[1])
    return math.degrees(math.atan2(2.0 * (lead_ii - lead_i / 2.0), _SQRT3 * lead_i))


def _rotation_for_axis(area: np.ndarray, leads: np.ndarray, target: float) -> float:
    """Rotation (degrees, about the anteroposterior axis) of the dipole area vector ``area`` that
    makes its axis in leads I and aVF equal ``target``.

    The axis seen in the leads is not the dipole's frontal angle (Dower's lead I has a vertical
    component), so the rotation is found on a 0.5-degree grid rather than by subtraction.
    """
    phi = np.radians(np.arange(-180.0, 180.0, 0.5))
    x, y, z = area
    rotated = np.stack(
        [x * np.cos(phi) - y * np.sin(phi), x * np.sin(phi) + y * np.cos(phi), np.full_like(phi, z)], axis=1
    )
    lead_i, lead_ii = rotated @ leads[0], rotated @ leads[1]
    seen = np.degrees(np.arctan2(2.0 * (lead_ii - lead_i / 2), _SQRT3 * lead_i))
    miss = np.abs((seen - target + 180.0) % 360.0 - 180.0) + 1e-3 * np.abs(np.degrees(phi))
    return float(np.degrees(phi[np.argmin(miss)]))


def _t_wave(pat: Patient) -> Waves:
    """The T wave alone (the first repolarisation wave; the second, if any, is the U wave)."""
    return Waves(pat.repol.t[:1], pat.repol.sl[:1], pat.repol.sr[:1], pat.repol.v[:1])


@dataclass(frozen=True)
class TrueFiducials:
    """The model's own fiducials of a dominant beat: times in s relative to the R wave, axes in
    degrees (Chapman's range). Not measured on any signal (see the module docstring)."""

    qrs_onset: float
    qrs_offset: float
    t_end: float
    raxis: int
    taxis: int


def true_fiducials(pat: Patient, cal: Calibration) -> TrueFiducials:
    """QRS onset and offset, T end and both axes of a dominant beat, in closed form."""
    qrs = pat.qrs.stretched(cal.stretch).rotated(cal.qrs_rotation)
    t_wave = _t_wave(pat).shifted(cal.t_centre).rotated(cal.t_rotation)
    onset, offset = _extent(qrs)
    return TrueFiducials(
        qrs_onset=onset,
        qrs_offset=offset,
        t_end=_extent(t_wave)[1],
        raxis=chapman_axis(_frontal_axis(_net_area(qrs), pat.leads)),
        taxis=chapman_axis(_frontal_axis(_net_area(t_wave), pat.leads)),
    )


def calibrate(pat: Patient, tg: Targets, rr: float) -> Calibration:
    """QRS time scale, T position and both frontal rotations whose true fiducials
    (:func:`true_fiducials`) give the targeted QRS duration, QT and axes; in closed form, since
    the QRS extent scales with the stretch and the T end moves with the T centre."""
    qrsd = float(np.clip(tg.qrsd, 60.0, 200.0)) / 1000.0
    first, last = _extent(pat.qrs)
    stretch = float(np.clip(qrsd / (last - first), 0.4, 3.0))
    onset, offset = -first * stretch, last * stretch
    qt_max = min(0.72 * math.sqrt(rr), rr - 0.02)
    if tg.rhythm not in NO_P_WAVES | RETROGRADE:
        # The T wave ends about where the next P starts, unless that would make the QT implausibly
        # short (a long PR at a fast rate puts the P wave on the T wave, as it does in patients).
        qt_max = min(qt_max, max(rr - pat.pr + 0.04, 0.8 * tg.qt / 1000.0))
    qt = float(np.clip(tg.qt / 1000.0, qrsd + 0.1, max(qt_max, qrsd + 0.1)))
    t_wave = _t_wave(pat)
    t_centre = max(qt - onset - _extent(t_wave)[1], offset + 1.2 * float(t_wave.sl[0]))
    return Calibration(
        stretch=stretch,
        qrs_rotation=_rotation_for_axis(_net_area(pat.qrs.stretched(stretch)), pat.leads, tg.raxis),
        t_rotation=_rotation_for_axis(_net_area(t_wave), pat.leads, tg.taxis),
        t_centre=t_centre,
        onset=onset,
        offset=offset,
    )
