"""The cardiac dipole of the synthetic model: asymmetric Gaussian waves and their rendering.

A wave is a dipole vector (mV; x left, y feet, z anterior) whose magnitude rises and falls as a
Gaussian with different left and right widths. :class:`Waves` holds a group of them (the beat
templates of :mod:`fairseq_goodviews.synthetic.patient`); :func:`render` samples their sum at
:data:`FS` as a (n, 3) dipole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Sampling rate (Hz) of the model: every wave and record is rendered at it.
FS = 500


def direction(frontal: Any, elevation: Any) -> np.ndarray:
    """Unit vector(s): frontal angle from the left (+x) towards the feet (+y), elevation anterior (+z)."""
    f, e = np.radians(frontal), np.radians(elevation)
    return np.stack([np.cos(e) * np.cos(f), np.cos(e) * np.sin(f), np.sin(e)], axis=-1)


@dataclass(frozen=True)
class Waves:
    """Asymmetric Gaussian dipole waves: centres ``t`` [n] (s), left and right widths ``sl``, ``sr``
    [n] (s), vectors ``v`` [n, 3] (mV)."""

    t: np.ndarray
    sl: np.ndarray
    sr: np.ndarray
    v: np.ndarray

    @staticmethod
    def of(rows: Sequence[tuple[float, float, float, np.ndarray]]) -> Waves:
        if not rows:
            return Waves(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 3)))
        t, sl, sr, v = zip(*rows, strict=False)
        return Waves(np.array(t, float), np.array(sl, float), np.array(sr, float), np.array(v, float))

    @staticmethod
    def concat(parts: Sequence[Waves]) -> Waves:
        return Waves(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("t", "sl", "sr", "v")))

    def rotated(self, degrees: float) -> Waves:
        """Rotation about the anteroposterior axis: adds ``degrees`` to every frontal angle."""
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return Waves(self.t, self.sl, self.sr, self.v @ rot.T)

    def stretched(self, factor: float) -> Waves:
        return Waves(self.t * factor, self.sl * factor, self.sr * factor, self.v)

    def shifted(self, dt: float) -> Waves:
        return Waves(self.t + dt, self.sl, self.sr, self.v)

    def at(self, times: np.ndarray, shift: np.ndarray | None = None, gain: np.ndarray | None = None) -> Waves:
        """One copy per event time, optionally shifted (s) and scaled per event."""
        times = np.asarray(times, float)
        n = len(times)
        t = times[:, None] + self.t[None, :]
        if shift is not None:
            t = t + np.asarray(shift, float)[:, None]
        v = np.broadcast_to(self.v[None], (n, *self.v.shape))
        if gain is not None:
            v = v * np.asarray(gain, float)[:, None, None]
        return Waves(t.ravel(), np.tile(self.sl, n), np.tile(self.sr, n), v.reshape(-1, 3))


def render(waves: Waves, n: int) -> np.ndarray:
    """Sum of the waves sampled at :data:`FS` on ``n`` samples from t = 0: the dipole, (n, 3) mV."""
    return _render_groups([waves], n)[0]


def _render_groups(groups: Sequence[Waves], n: int) -> np.ndarray:
    """The dipole of each group of waves, (len(groups), n, 3), in one vectorised pass."""
    out = np.zeros((len(groups) * n, 3))
    waves = Waves.concat(groups)
    if not len(waves.t):
        return out.reshape(len(groups), n, 3)
    group = np.repeat(np.arange(len(groups)), [len(g.t) for g in groups])
    centre = waves.t * FS
    sl, sr = waves.sl * FS, waves.sr * FS
    half = math.ceil(4.0 * max(sl.max(), sr.max()))
    idx = np.rint(centre).astype(np.int64)[:, None] + np.arange(-half, half + 1)
    d = idx - centre[:, None]
    g = np.exp(-0.5 * (d / np.where(d < 0, sl[:, None], sr[:, None])) ** 2)
    keep = (idx >= 0) & (idx < n)
    rows = np.broadcast_to(np.arange(len(centre))[:, None], idx.shape)[keep]
    g = g[keep]
    flat = (idx + (group * n)[:, None])[keep]
    for axis in range(3):
        out[:, axis] = np.bincount(flat, weights=g * waves.v[rows, axis], minlength=len(groups) * n)
    return out.reshape(len(groups), n, 3)
