"""Patient identification by retrieval: ``goodviews-identify CHECKPOINT --data DIR --split test --json OUT``.

The gallery/probe protocol of Oh et al. (CHIL 2022, second downstream task) and its metrics
(``top1``, ``top5``, ``eer``) are those of :mod:`fairseq_goodviews.scoring.retrieval`, within
one split (or several pooled: ``--split train,valid`` or ``--split all``), with gallery and
probes in manifest order; the embedding of a record is the encoder's embedding of a centred crop
of ``sample_size`` samples.

With ``--standardize`` the embeddings are standardised per dimension with the statistics of the
``train`` split (or another named split) before the cosines; see :func:`identify`.

With ``--distractors`` (a documented variant), the records of patients with a single record in
the split are added to the gallery as distractors; they have no probes, so they only make
retrieval harder. Records without a patient id are left out and counted (``n_without_patient``).

Any checkpoint of this project serves: a pretraining checkpoint (ResNet or wav2vec 2.0), a
linear probe or fine-tune of ``ecg_classification``, or an ArcFace fine-tune of
``ecg_identification`` (:mod:`fairseq_goodviews.tasks.ecg_identification`). The embedding is
the encoder's ``encode`` output (before any projection or classification head).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairseq_goodviews.evaluation.device import scoring_device
from fairseq_goodviews.evaluation.embed import embed_records, load_encoder
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.leads import lead_names
from fairseq_goodviews.scoring.bootstrap import MIN_RECORDS, bootstrap_intervals, intervals_note, with_interval
from fairseq_goodviews.scoring.retrieval import (
    IdentificationError,
    gallery_probe_split,
    retrieval_metrics,
    retrieval_statistic,
    similarities,
    standardizer,
)

#: The splits ``--split all`` pools, those the folder has, in this order.
POOLED_SPLITS = ("train", "valid", "test")


def requested_splits(data: str | Path, split: str) -> list[str]:
    """The splits named by ``split``: one name, several separated by commas (pooled), or ``all``
    (those of :data:`POOLED_SPLITS` with a manifest in ``data``)."""
    if split.strip() == "all":
        present = [s for s in POOLED_SPLITS if (Path(data) / f"{s}.tsv").is_file()]
        if not present:
            raise IdentificationError(f"{data}: none of {', '.join(f'{s}.tsv' for s in POOLED_SPLITS)} to pool")
        return present
    names = [s.strip() for s in split.split(",") if s.strip()]
    if not names or len(set(names)) != len(names):
        raise IdentificationError(f"--split {split!r}: give one split, several separated by commas, or all")
    return names


def pooling_advice(data: str | Path, splits: Sequence[str]) -> str:
    """What could still find more patients with several records: pooling the splits not pooled yet."""
    others = [s for s in POOLED_SPLITS if s not in splits and (Path(data) / f"{s}.tsv").is_file()]
    if others:
        return f"pooling splits may find more (--split {','.join([*splits, *others])} or --split all)"
    return "the splits are pooled already: the data has too few patients with several ECGs for identification"


def identify(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    leads: Sequence[int] | None = None,
    sample_size: int | None = None,
    distractors: bool = False,
    standardize_split: str | None = None,
    batch_size: int = 64,
    device: str | None = None,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the gallery/probe protocol of the module docstring on ``data``'s ``split`` (one split,
    ``train,valid`` or ``all``: the records of those splits pooled, in that order, a patient id
    naming the same patient in every split), with the leads outside ``leads`` (canonical slot
    indices; None: all 12) zero-filled.

    With ``standardize_split`` (e.g. ``train``), every embedding dimension is standardised with the
    mean and standard deviation over that split's records before the cosine similarities, as the
    linear probes standardise their inputs with training statistics: an untrained encoder's
    embeddings share a large common component that raw cosines barely look past.

    ``warnings`` lists what makes the figures shaky (fewer than 30 patients with probes); with
    ``bootstrap`` replicates, ``intervals`` holds the 95 % percentile bootstrap interval of
    ``top1``, ``top5`` and ``eer``, resampling the patients with probes (the gallery stays whole).
    """
    scoring_device(device)  # an unusable device is reported before any work
    splits = requested_splits(data, split)
    tables = [read_metadata(data, s, required=("patient_id",)) for s in splits]
    patients = pd.concat([t["patient_id"] for t in tables], ignore_index=True)
    split_of = np.repeat(np.arange(len(splits)), [len(t) for t in tables])
    row_of = np.concatenate([np.arange(len(t)) for t in tables])
    where = ", ".join(str(Path(data) / f"{s}.csv") for s in splits)
    protocol = gallery_probe_split(patients, distractors, where, pooling_advice(data, splits))
    model = load_encoder(checkpoint, device)
    crop = sample_size or model.sample_size
    chosen = np.r_[protocol.gallery, protocol.probe]
    parts, positions = [], []
    for k, name in enumerate(splits):
        mine = np.flatnonzero(split_of[chosen] == k)
        if len(mine):
            parts.append(
                embed_records(model, Path(data) / f"{name}.tsv", row_of[chosen[mine]], crop, leads, batch_size)
            )
            positions.append(mine)
    embeddings = np.concatenate(parts)[np.argsort(np.concatenate(positions))]
    if standardize_split:
        n_fit = len(read_metadata(data, standardize_split))
        fit = embed_records(model, Path(data) / f"{standardize_split}.tsv", np.arange(n_fit), crop, leads, batch_size)
        mean, std = standardizer(fit)
        embeddings = (embeddings - mean) / std
    gallery, probes = embeddings[: len(protocol.gallery)], embeddings[len(protocol.gallery) :]
    result: dict[str, Any] = retrieval_metrics(gallery, protocol.gallery_patients, probes, protocol.probe_patients)
    n_with_probes = len(set(protocol.probe_patients.tolist()))
    result.update(
        {
            "n_patients_with_probes": n_with_probes,
            "n_without_patient": int(patients.isna().sum()),
            "distractors": distractors,
            "standardized_with": standardize_split or "none",
            "split": ",".join(splits),
            "leads": "all" if leads is None else ",".join(lead_names(leads)),
            "sample_size": crop,
            "checkpoint_task": model.task_name,
        }
    )
    warnings = []
    if n_with_probes < MIN_RECORDS:
        warnings.append(
            f"only {n_with_probes} patients with probes (fewer than {MIN_RECORDS}): top-1, top-5 and the EER are "
            "unstable, read their intervals"
        )
    result["warnings"] = warnings
    if bootstrap:
        scores = similarities(gallery, protocol.gallery_patients, probes, protocol.probe_patients)
        intervals = bootstrap_intervals(
            retrieval_statistic(scores), len(protocol.probe), protocol.probe_patients, bootstrap, seed
        )
        result["intervals"] = {name: interval.as_json() for name, interval in intervals.items()}
    return result


def format_identification(result: dict[str, Any]) -> str:
    """One line per figure, ``value [lo, hi]`` where ``result["intervals"]`` has its interval."""
    intervals = result.get("intervals", {})
    lines = [
        f"{key:>22s}  {with_interval(value, intervals, key)}" if isinstance(value, float) else f"{key:>22s}  {value}"
        for key, value in result.items()
        if key not in ("intervals", "warnings")
    ]
    if intervals:
        lines.append(f"{'intervals':>22s}  {intervals_note(intervals)}")
    return "\n".join(lines)
