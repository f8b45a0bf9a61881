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

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fairseq_goodviews import quiet_fairseq_logging
from fairseq_goodviews.evaluation.device import DeviceError, add_device_argument, scoring_device
from fairseq_goodviews.evaluation.embed import CheckpointError, embed_records, load_encoder
from fairseq_goodviews.io.atomic import atomic_open
from fairseq_goodviews.io.manifest import ManifestError, read_metadata
from fairseq_goodviews.io.records import RecordError
from fairseq_goodviews.leads import UnknownLeadError, lead_names, parse_leads
from fairseq_goodviews.scoring.retrieval import (
    IdentificationError,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="goodviews-identify", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", help="any checkpoint of this project (pretraining, classification, identification)"
    )
    parser.add_argument(
        "--data", required=True, help="manifest folder with <split>.tsv and <split>.csv (patient_id column)"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--leads", help="comma-separated leads to keep, e.g. I,II,V2 (default: all 12)")
    parser.add_argument("--sample-size", type=int, help="samples per centred crop (default: the checkpoint task's)")
    parser.add_argument("--distractors", action="store_true", help="add single-record patients to the gallery")
    parser.add_argument(
        "--standardize",
        metavar="SPLIT",
        nargs="?",
        const="train",
        help="standardise embeddings with this split's statistics (default when given: train)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="write the metrics here as JSON")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    quiet_fairseq_logging()
    try:
        result = identify(
            args.checkpoint,
            args.data,
            args.split,
            None if args.leads is None else parse_leads(args.leads),
            args.sample_size,
            args.distractors,
            args.standardize,
            args.batch_size,
            args.device,
        )
    except (IdentificationError, CheckpointError, DeviceError, ManifestError, RecordError, UnknownLeadError) as exc:
        parser.exit(2, f"error: {exc}\n")
    for key, value in result.items():
        print(f"{key:>22s}  {value:.4f}" if isinstance(value, float) else f"{key:>22s}  {value}")
    if args.json:
        with atomic_open(args.json) as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
