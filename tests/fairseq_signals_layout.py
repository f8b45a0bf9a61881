"""fairseq-signals manifest folders as its preprocessing scripts write them (shared by the tests
of the folder importer and of the fairseq-signals chain)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io

RATE = 500
RATES = (100, 130, 50, 75)  # beats per minute of each class, so that a probe can learn something


def ecg(rng: np.random.Generator, bpm: float, n_samples: int) -> np.ndarray:
    """float64 [12, n] in mV: Gaussian beats at ``bpm`` with noise, as fairseq-signals stores them."""
    t = np.arange(n_samples) / RATE
    beats = np.arange(rng.uniform(0, 0.3), t[-1], 60.0 / bpm)
    signal = np.exp(-((t[None, :] - beats[:, None]) ** 2) / (2 * 0.012**2)).sum(0)
    return rng.normal(1.0, 0.3, (12, 1)) * signal + rng.normal(0, 0.05, (12, n_samples))


def write_fs_folder(
    tmp: Path,
    n_records: int = 12,
    *,
    label: str = "multi_hot",
    n_classes: int = 4,
    segments: int = 2,
    seconds: float = 2.0,
    splits=(0.6, 0.2, 0.2),
    seed: int = 0,
) -> Path:
    """A fairseq-signals folder as ``preprocess_physionet2021.py`` and ``manifest.py`` write it:
    ``signals/<subset>/<record>_<i>.mat`` (one per segment, ``scipy.io.savemat``, every other one
    compressed) with ``age``, ``sex`` (0 male, 1 female), ``label`` (a bool multi-hot vector, or a
    class index), ``patient_id``, ``curr_sample_rate`` and ``feats``; ``manifest/<split>.tsv`` with
    the real path of the root and paths relative to it. Records of class ``k`` beat at
    ``RATES[k]``; every third record also has class ``(k + 1) % n_classes``."""
    rng = np.random.default_rng(seed)
    root = tmp / "signals"
    lines = []
    n = int(seconds * RATE)
    for i in range(n_records):
        subset = ("cpsc_2018", "georgia")[i % 2]
        (root / subset).mkdir(parents=True, exist_ok=True)
        k = i % n_classes
        hot = np.zeros(n_classes, dtype=bool)
        hot[k] = True
        if i % 3 == 2:
            hot[(k + 1) % n_classes] = True
        feats = ecg(rng, RATES[k % 4] + rng.normal(0, 5), n * segments)
        for s in range(segments):
            data = {
                "age": 30 + i,
                "sex": i % 2,
                "label": hot if label == "multi_hot" else k,
                "patient_id": 1000 + i // 2,
                "curr_sample_rate": RATE,
                "feats": feats[:, s * n : (s + 1) * n],
            }
            name = f"{subset}/R{i:03d}_{s}.mat"
            scipy.io.savemat(str(root / name), data, do_compression=bool((i + s) % 2))
            lines.append((i, f"{name}\t{n}"))
    manifest = tmp / "manifest"
    manifest.mkdir(parents=True, exist_ok=True)
    bounds = np.cumsum([round(f * n_records) for f in splits])
    for split, low, high in zip(("train", "valid", "test"), [0, *bounds[:-1]], bounds, strict=True):
        chosen = [line for i, line in lines if low <= i < high]
        (manifest / f"{split}.tsv").write_text(os.path.realpath(root) + "\n" + "\n".join(chosen) + "\n")
    return manifest
