"""fairseq-signals manifest folders as its preprocessing scripts write them (shared by the tests
of the folder importer and of the fairseq-signals chain): the older per-dataset layout
(``write_fs_folder``: label and patient inside each ``.mat``) and its current pipeline's
(``write_fs_pipeline_folder``: labels in ``labels/y.npy`` and patients in ``meta.csv``, both by
the recording's ``idx``, standardised leads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
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


def write_fs_pipeline_folder(
    tmp: Path,
    n_records: int = 12,
    *,
    statistics: bool = True,
    patient_column: str | None = "subject_id",
    label_def: bool = True,
    class_names: tuple[str, ...] = ("AF", "STach", "SB", "NSR"),
    first_idx: int = 100,
    segments: int = 2,
    seconds: float = 2.0,
    splits=(0.6, 0.2, 0.2),
    seed: int = 0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """A folder as fairseq-signals' current scripts write it, and each segment's signal in mV.

    Under the processed root ``tmp/mimic_iv_ecg`` (what ``*_signals.py``, ``*_labels.py`` and
    ``prepare_clf_labels.py`` write): ``segmented/mimic_iv_ecg_R<i>_<s>.mat`` (savemat,
    uncompressed) with ``feats`` float64 [12, T], each lead standardised over the whole recording,
    ``mean`` and ``std`` [12, 1] of that recording (left out without ``statistics``, as a folder
    whose files lost them), ``idx`` (``first_idx + i``: a second data source numbers on from the
    first's), ``segment_i``, ``curr_sample_rate``, ``curr_sample_size``, ``org_sample_rate`` and
    ``org_sample_size``, and no label or patient; ``meta.csv`` (``idx``, ``save_file``, ``age``,
    ``sex`` 0/1, and the patient under ``patient_column``, two recordings a patient, left out
    when None); ``labels/labels.csv`` and ``labels/y.npy`` (float64, a row for every idx up to the
    largest, zeros for the rows of no recording) with ``labels/label_def.csv`` naming its columns
    in ``name`` (left out without ``label_def``). Manifests (what ``manifests.py`` writes with
    pandas): ``tmp/manifests/<split>.tsv``, the first line a tab then the segments' common folder,
    then ``<file><TAB><n_samples>``. Records of class ``k`` beat at ``RATES[k]``; every third
    also has class ``k + 1``. Returns the manifest folder and ``{file name: mV signal}``.
    """
    rng = np.random.default_rng(seed)
    root = tmp / "mimic_iv_ecg"
    (root / "segmented").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    n = int(seconds * RATE)
    k_classes = len(class_names)
    y = np.zeros((first_idx + n_records, k_classes))
    meta, lines, signals = [], [], {}
    for i in range(n_records):
        idx = first_idx + i
        k = i % k_classes
        y[idx, k] = 1
        if i % 3 == 2:
            y[idx, (k + 1) % k_classes] = 1
        mv = ecg(rng, RATES[k % 4] + rng.normal(0, 5), n * segments)
        mean = mv.mean(axis=1, keepdims=True)
        std = (mv - mean).std(axis=1, keepdims=True)
        standardised = (mv - mean) / std
        save_file = f"mimic_iv_ecg_R{i:03d}.mat"
        meta.append(
            {"idx": idx, "save_file": save_file, "age": 40 + i, "sex": (i + 1) % 2, "subject_id": 5000 + i // 2}
        )
        for s in range(segments):
            data = {
                "org_sample_rate": RATE,
                "curr_sample_rate": RATE,
                "org_sample_size": n * segments,
                "curr_sample_size": n,
                "feats": standardised[:, s * n : (s + 1) * n],
                "idx": idx,
                **({"mean": mean, "std": std} if statistics else {}),
                "segment_i": s,
            }
            name = save_file[:-4] + f"_{s}.mat"
            scipy.io.savemat(str(root / "segmented" / name), data)
            signals[name] = mv[:, s * n : (s + 1) * n]
            lines.append((i, f"{name}\t{n}"))
    table = pd.DataFrame(meta)
    if patient_column is None:
        table = table.drop(columns="subject_id")
    else:
        table = table.rename(columns={"subject_id": patient_column})
    table.to_csv(root / "meta.csv", index=False)
    labelled = y[first_idx:].astype(int)
    pd.DataFrame(labelled, columns=list(class_names), index=pd.Index(table["idx"], name="idx")).to_csv(
        root / "labels" / "labels.csv"
    )
    np.save(root / "labels" / "y.npy", y)
    if label_def:
        pd.DataFrame({"name": class_names, "pos_count_all": labelled.sum(axis=0)}).to_csv(
            root / "labels" / "label_def.csv", index=False
        )
    manifests = tmp / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    bounds = np.cumsum([round(f * n_records) for f in splits])
    common = os.path.realpath(root / "segmented") + "/"
    for split, low, high in zip(("train", "valid", "test"), [0, *bounds[:-1]], bounds, strict=True):
        chosen = [line for i, line in lines if low <= i < high]
        (manifests / f"{split}.tsv").write_text(f"\t{common}\n" + "".join(f"{line}\n" for line in chosen))
    return manifests, signals
