"""The one augmentation module: SimCLR-style time-series transforms and random lead masking.

Every function takes a float32 array ``x`` of shape [leads, T] (any number of leads) and a
``numpy.random.Generator`` and returns a new array; none modifies its input. Transforms follow
Um et al. (2017) as used by the Good Views paper: jitter, scaling, flip, lead permutation,
time warp and magnitude warp, composed with a probability per transform.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple

import numpy as np
from scipy.interpolate import CubicSpline


@dataclass
class AugmentationConfig:
    """Per-transform probabilities and strengths (amplitudes in mV, the unit of the records)."""

    jitter_prob: float = field(default=0.0, metadata={"help": "probability of additive Gaussian noise"})
    jitter_sigma: float = field(default=0.03, metadata={"help": "std of the additive noise, mV"})
    scaling_prob: float = field(default=0.0, metadata={"help": "probability of per-lead scaling"})
    scaling_sigma: float = field(default=0.1, metadata={"help": "std of the per-lead factor around 1"})
    flip_prob: float = field(default=0.0, metadata={"help": "probability of negating the whole record"})
    permute_prob: float = field(default=0.0, metadata={"help": "probability of permuting the leads ('rotation')"})
    time_warp_prob: float = field(default=0.0, metadata={"help": "probability of a smooth time warp (same for all leads)"})
    time_warp_sigma: float = field(default=0.2, metadata={"help": "std of the local speed around 1 at each knot"})
    magnitude_warp_prob: float = field(default=0.0, metadata={"help": "probability of a smooth per-lead gain curve"})
    magnitude_warp_sigma: float = field(default=0.2, metadata={"help": "std of the gain around 1 at each knot"})
    warp_knots: int = field(default=4, metadata={"help": "interior spline knots of the warps"})


def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return x + rng.normal(0.0, sigma, size=x.shape).astype(x.dtype)


def scaling(x: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return x * rng.normal(1.0, sigma, size=(x.shape[0], 1)).astype(x.dtype)


def flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return -x


def permute_leads(x: np.ndarray, rng: np.random.Generator, lead_present: np.ndarray | None = None) -> np.ndarray:
    """Shuffle the present leads among the present slots (absent slots stay zero)."""
    slots = np.arange(x.shape[0]) if lead_present is None else np.flatnonzero(lead_present)
    out = x.copy()
    out[slots] = x[rng.permutation(slots)]
    return out


def _smooth_curve(rng: np.random.Generator, n_curves: int, length: int, sigma: float, knots: int) -> np.ndarray:
    """Cubic-spline curves through ``knots + 2`` points drawn from N(1, sigma), shape [n, length]."""
    knot_x = np.linspace(0, length - 1, knots + 2)
    knot_y = rng.normal(1.0, sigma, size=(n_curves, knots + 2))
    return CubicSpline(knot_x, knot_y, axis=1)(np.arange(length))


def magnitude_warp(x: np.ndarray, rng: np.random.Generator, sigma: float, knots: int) -> np.ndarray:
    return (x * _smooth_curve(rng, x.shape[0], x.shape[1], sigma, knots)).astype(x.dtype)


def time_warp(x: np.ndarray, rng: np.random.Generator, sigma: float, knots: int) -> np.ndarray:
    """Resample every lead along one smooth, monotone time warp of the same total length."""
    length = x.shape[1]
    speed = np.clip(_smooth_curve(rng, 1, length, sigma, knots)[0], 0.1, None)
    warped = np.cumsum(speed)
    warped = (warped - warped[0]) * (length - 1) / (warped[-1] - warped[0])
    grid = np.arange(length)
    return np.stack([np.interp(warped, grid, lead) for lead in x]).astype(x.dtype)


def augment(
    x: np.ndarray, rng: np.random.Generator, cfg: AugmentationConfig, lead_present: np.ndarray | None = None
) -> np.ndarray:
    """Apply each transform independently with its probability, in a fixed order."""
    if rng.random() < cfg.time_warp_prob:
        x = time_warp(x, rng, cfg.time_warp_sigma, cfg.warp_knots)
    if rng.random() < cfg.magnitude_warp_prob:
        x = magnitude_warp(x, rng, cfg.magnitude_warp_sigma, cfg.warp_knots)
    if rng.random() < cfg.scaling_prob:
        x = scaling(x, rng, cfg.scaling_sigma)
    if rng.random() < cfg.permute_prob:
        x = permute_leads(x, rng, lead_present)
    if rng.random() < cfg.flip_prob:
        x = flip(x, rng)
    if rng.random() < cfg.jitter_prob:
        x = jitter(x, rng, cfg.jitter_sigma)
        if lead_present is not None:
            x[~np.asarray(lead_present, bool)] = 0.0
    return x


def random_lead_mask(
    x: np.ndarray, lead_present: np.ndarray, prob: float, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Random lead masking (Oh et al. 2022): zero each present lead independently with ``prob``.

    Returns the masked copy and the boolean ``lead_mask`` (True = zeroed by the mask). Works for
    any number of leads. When every present lead would be masked, one of them, chosen at random,
    is kept: a view with no signal at all carries nothing to contrast. Absent leads stay zero and
    are never reported as masked.
    """
    present = np.asarray(lead_present, dtype=bool)
    lead_mask = (rng.random(x.shape[0]) < prob) & present
    if present.any() and lead_mask[present].all():
        keep = rng.choice(np.flatnonzero(present))
        lead_mask[keep] = False
    masked = x.copy()
    masked[lead_mask] = 0.0
    return masked, lead_mask
