"""Patient identification by retrieval: ``goodviews-identify CHECKPOINT --data DIR --split test --json OUT``.

The gallery/probe protocol of Oh et al. (CHIL 2022, second downstream task) and its metrics
(``top1``, ``top5``, ``eer``) are those of :mod:`fairseq_goodviews.scoring.retrieval`, within
one split, with gallery and probes in manifest order; the embedding of a record is the
encoder's embedding of a centred crop of ``sample_size`` samples.

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

from fairseq_goodviews.evaluation.device import scoring_device
from fairseq_goodviews.evaluation.embed import embed_records, load_encoder
from fairseq_goodviews.io.manifest import read_metadata
from fairseq_goodviews.leads import lead_names
from fairseq_goodviews.scoring.retrieval import (
    gallery_probe_split,
    retrieval_metrics,
    standardizer,
)


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
) -> dict[str, Any]:
    """Run the gallery/probe protocol of the module docstring on ``data``'s ``split``, with the
    leads outside ``leads`` (canonical slot indices; None: all 12) zero-filled.

    With ``standardize_split`` (e.g. ``train``), every embedding dimension is standardised with the
    mean and standard deviation over that split's records before the cosine similarities, as the
    linear probes standardise their inputs with training statistics (as the linear probes do): an untrained
    encoder's embeddings share a large common component that raw cosines barely look past.
    """
    scoring_device(device)  # an unusable device is reported before any work
    table = read_metadata(data, split, required=("patient_id",))
    where = str(Path(data) / f"{split}.csv")
    protocol = gallery_probe_split(table["patient_id"], distractors, where)
    model = load_encoder(checkpoint, device)
    crop = sample_size or model.sample_size
    manifest = Path(data) / f"{split}.tsv"
    embeddings = embed_records(model, manifest, np.r_[protocol.gallery, protocol.probe], crop, leads, batch_size)
    if standardize_split:
        n_fit = len(read_metadata(data, standardize_split))
        fit = embed_records(model, Path(data) / f"{standardize_split}.tsv", np.arange(n_fit), crop, leads, batch_size)
        mean, std = standardizer(fit)
        embeddings = (embeddings - mean) / std
    gallery, probes = embeddings[: len(protocol.gallery)], embeddings[len(protocol.gallery) :]
    result: dict[str, Any] = retrieval_metrics(gallery, protocol.gallery_patients, probes, protocol.probe_patients)
    result.update(
        {
            "n_patients_with_probes": len(set(protocol.probe_patients.tolist())),
            "n_without_patient": int(table["patient_id"].isna().sum()),
            "distractors": distractors,
            "standardized_with": standardize_split or "none",
            "split": split,
            "leads": "all" if leads is None else ",".join(lead_names(leads)),
            "sample_size": crop,
            "checkpoint_task": model.task_name,
        }
    )
    return result
