"""The one augmentation module: SimCLR-style time-series transforms and random lead masking.

Every function takes a float32 array ``x`` of shape [leads, T] (any number of leads) and a
``numpy.random.Generator`` and returns a new float32 array; none modifies its input. Transforms
follow Um et al. (2017) as used by the Good Views paper: jitter, scaling, flip, lead permutation,
time warp and magnitude warp, composed with a probability per transform.

Every transform works on the whole [leads, T] array at once, in float32. The warps' smooth curves
are cubic splines through random knots; a spline is linear in its knot values, so each curve is
the knot values times a [knots + 2, T] basis (scipy's ``CubicSpline`` of the identity, computed
once per (T, knots)), and the time warp is one vectorised linear interpolation of every lead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Tuple

import numpy as np
import torch
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
    time_warp_prob: float = field(
        default=0.0, metadata={"help": "probability of a smooth time warp (same for all leads)"}
    )
    time_warp_sigma: float = field(default=0.2, metadata={"help": "std of the local speed around 1 at each knot"})
    magnitude_warp_prob: float = field(default=0.0, metadata={"help": "probability of a smooth per-lead gain curve"})
    magnitude_warp_sigma: float = field(default=0.2, metadata={"help": "std of the gain around 1 at each knot"})
    warp_knots: int = field(default=4, metadata={"help": "interior spline knots of the warps"})


def jitter(x: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Additive N(0, sigma) noise, drawn by torch's vectorised sampler from a seed that ``rng`` draws."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).numpy()
    noise *= np.float32(sigma)
    noise += x
    return noise


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


def rotate(x: np.ndarray, rng: np.random.Generator, lead_present: np.ndarray | None = None) -> np.ndarray:
    """The Good Views paper's "rotation": a random sign per lead, then the present leads shuffled."""
    signs = rng.choice(np.array([-1.0, 1.0], dtype=x.dtype), size=(x.shape[0], 1))
    return permute_leads(x * signs, rng, lead_present)


@lru_cache(maxsize=32)
def _spline_basis(length: int, knots: int) -> np.ndarray:
    """[knots + 2, length] float32: row k is the not-a-knot cubic spline through the k-th unit knot vector."""
    knot_x = np.linspace(0, length - 1, knots + 2)
    basis = CubicSpline(knot_x, np.eye(knots + 2), axis=0)(np.arange(length)).T
    basis = np.ascontiguousarray(basis, dtype=np.float32)
    basis.setflags(write=False)
    return basis


def _smooth_curve(rng: np.random.Generator, n_curves: int, length: int, sigma: float, knots: int) -> np.ndarray:
    """Cubic-spline curves through ``knots + 2`` evenly spaced points drawn from N(1, sigma): [n, length] float32."""
    knot_y = rng.normal(1.0, sigma, size=(n_curves, knots + 2)).astype(np.float32)
    return knot_y @ _spline_basis(length, knots)


def magnitude_warp(x: np.ndarray, rng: np.random.Generator, sigma: float, knots: int) -> np.ndarray:
    return x * _smooth_curve(rng, x.shape[0], x.shape[1], sigma, knots).astype(x.dtype, copy=False)


def time_warp(x: np.ndarray, rng: np.random.Generator, sigma: float, knots: int) -> np.ndarray:
    """Resample every lead along one smooth, monotone time warp of the same total length."""
    length = x.shape[1]
    speed = np.clip(_smooth_curve(rng, 1, length, sigma, knots)[0].astype(np.float64), 0.1, None)
    warped = np.cumsum(speed)
    warped = (warped - warped[0]) * (length - 1) / (warped[-1] - warped[0])
    # Linear interpolation of every lead at the warped times (np.interp, for all leads at once).
    left = np.minimum(warped.astype(np.int64), max(length - 2, 0))
    right = np.minimum(left + 1, length - 1)
    weight = (warped - left).astype(np.float32)
    before = np.take(x, left, axis=1)
    return before + (np.take(x, right, axis=1) - before) * weight


#: The transform set of the Good Views paper's SimCLR (jittering, scaling, flipping, rotating,
#: time and size warping), each applied alone by :func:`apply_transform`.
PAPER_TRANSFORMS = ("jitter", "scaling", "flip", "rotation", "time_warp", "magnitude_warp")


def apply_transform(
    name: str, x: np.ndarray, rng: np.random.Generator, cfg: AugmentationConfig, lead_present: np.ndarray | None = None
) -> np.ndarray:
    """One transform of :data:`PAPER_TRANSFORMS` with its configured strength: [leads, T] -> [leads, T]."""
    if name == "jitter":
        x = jitter(x, rng, cfg.jitter_sigma)
        if lead_present is not None:
            x[~np.asarray(lead_present, bool)] = 0.0
        return x
    if name == "scaling":
        return scaling(x, rng, cfg.scaling_sigma)
    if name == "flip":
        return flip(x, rng)
    if name == "rotation":
        return rotate(x, rng, lead_present)
    if name == "time_warp":
        return time_warp(x, rng, cfg.time_warp_sigma, cfg.warp_knots)
    if name == "magnitude_warp":
        return magnitude_warp(x, rng, cfg.magnitude_warp_sigma, cfg.warp_knots)
    raise ValueError(f"unknown transform {name!r}; one of {', '.join(PAPER_TRANSFORMS)}")


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
