"""Encoders outside fairseq: any checkpoint of this project as a ``torch.nn.Module``, and embeddings.

Python::

    from fairseq_goodviews.evaluation.embed import load_encoder

    encoder = load_encoder("checkpoints/simclr/checkpoint_last.pt")  # eval mode, on the GPU if any
    encoder.leads, encoder.sample_rate, encoder.sample_size            # what it expects
    embeddings = encoder(signals)                                      # [B, 12, T] mV -> [B, D]

Command line: ``goodviews-embed CKPT --data DIR --split SPLIT --out FILE.npz`` writes one
embedding per record of the split (``embedding`` [N, D] float32, ``record`` [N] the record
paths as in the manifest, ``leads``, ``sample_size``).

Any checkpoint serves: pretraining (ResNet or wav2vec 2.0), a linear probe or fine-tune of
``ecg_classification`` (single- or multi-label), an ArcFace fine-tune of ``ecg_identification``.
The fields that size a head (class or patient count) come from the weights' shapes, so a
checkpoint whose saved config kept a stale default still loads. The embedding is the
encoder's ``encode`` output: before any projection or classification head, with no masking and
no augmentation. Leads the checkpoint was not trained on (a lead-subset fine-tune) are zero-filled
in their canonical slots, as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
from omegaconf import OmegaConf, open_dict

from fairseq_goodviews import register_plugins
from fairseq_goodviews.data.ecg_dataset import EcgRecordSource
from fairseq_goodviews.evaluation.device import scoring_device
from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.io.checkpoints import CheckpointError, read_checkpoint
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.leads import lead_keep_mask, lead_names, parse_leads
from fairseq_goodviews.models.ecg_classifier import config_matching_weights


class EcgEncoder(torch.nn.Module):
    """The encoder of a checkpoint: [B, 12, T] signals in mV (canonical lead order) -> [B, D].

    ``lead_indices`` are the canonical slots of the leads it was trained on (None: all 12; the
    others are zero-filled before encoding) and ``leads`` their names, ``sample_rate`` the rate
    its records must have, ``sample_size`` its training crop in samples.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        task_name: str,
        sample_rate: float,
        sample_size: int,
        lead_indices: Sequence[int] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.task_name = task_name
        self.sample_rate = sample_rate
        self.sample_size = sample_size
        keep = lead_keep_mask(lead_indices)
        self.lead_indices = [int(i) for i in keep.nonzero()[0]]
        self.leads = lead_names(self.lead_indices)
        self.register_buffer("lead_mask", torch.from_numpy(keep)[:, None], persistent=False)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        """[B, 12, T] -> [B, D] float32."""
        return self.encoder.encode(signals * self.lead_mask.to(signals.dtype)).float()

    @torch.no_grad()
    def embed(self, signals: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without gradients, on the encoder's device; [B, 12, T] -> [B, D] float32 on the CPU."""
        return self(signals.to(self.device, non_blocking=True)).cpu()

    @property
    def device(self) -> torch.device:
        return self.lead_mask.device


def load_encoder(checkpoint: str | Path, device: str | None = None) -> EcgEncoder:
    """The encoder of any checkpoint of this project, in eval mode, on ``device`` (default: the GPU
    when one is visible, else the CPU; see :func:`~fairseq_goodviews.evaluation.device.scoring_device`).

    The model is rebuilt from the checkpoint's own config and weights; a pretraining checkpoint
    it was built from (``model_path``) is read only for the encoder's architecture, and only if
    it still exists. :class:`CheckpointError` names the file when it is missing, not a fairseq
    checkpoint, or holds a model without an encoder.
    """

    register_plugins()
    target = scoring_device(device)
    path = Path(checkpoint)
    state = read_checkpoint(path)
    cfg = state["cfg"]
    model_cfg = cfg.model
    name = model_cfg.get("_name")
    if name not in MODEL_REGISTRY:
        raise CheckpointError(f"{path}: model {name!r} is not a model of this plugin")
    with open_dict(model_cfg):
        if model_cfg.get("model_path") and not Path(model_cfg.model_path).is_file():
            # The weights below include the pretrained encoder's; its config must then be in model_cfg.
            model_cfg.model_path = None
    built_cfg = OmegaConf.create(config_matching_weights(model_cfg, state["model"]))
    model = MODEL_REGISTRY[name].build_model(merge_with_parent(MODEL_DATACLASS_REGISTRY[name](), built_cfg), task=None)
    try:
        model.load_state_dict(state["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the model config ({str(exc).splitlines()[0]})") from None
    encoder = model if hasattr(model, "encode") else getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "encode"):
        raise CheckpointError(f"{path}: model {name!r} has no encoder with an encode() method")
    task_cfg = cfg.get("task") or {}
    wrapped = EcgEncoder(
        encoder,
        str(task_cfg.get("_name")),
        float(task_cfg.get("sample_rate", 500.0)),
        int(task_cfg.get("sample_size", 5000)),
        parse_leads(task_cfg.get("leads")),
    )
    return wrapped.to(target).eval()


def embed_records(
    model: EcgEncoder,
    manifest: str | Path,
    indices: np.ndarray,
    sample_size: int,
    leads: Sequence[int] | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Embeddings [len(indices), D] of centred ``sample_size`` crops of manifest rows ``indices``.

    Leads outside ``leads`` (canonical slot indices; None: all 12) are zero-filled in their
    slots (the lead-subset convention).
    """

    source = EcgRecordSource(manifest, model.sample_rate)
    keep = lead_keep_mask(leads)
    out = []
    for start in range(0, len(indices), batch_size):
        batch = []
        for index in indices[start : start + batch_size]:
            signal, _ = source.load(int(index), sample_size, None)
            signal[~keep] = 0.0
            batch.append(signal)
        out.append(model.embed(torch.from_numpy(np.stack(batch))).numpy())
    return np.concatenate(out)


def embed_split(
    checkpoint: str | Path,
    data: str | Path,
    split: str,
    out: str | Path,
    sample_size: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> int:
    """Write one embedding per record of ``data``'s ``split`` to ``out`` (``.npz``); returns N."""
    encoder = load_encoder(checkpoint, device)
    manifest = Path(data) / f"{split}.tsv"
    root, entries = read_manifest(manifest)
    crop = sample_size or encoder.sample_size
    embeddings = embed_records(encoder, manifest, np.arange(len(entries)), crop, encoder.lead_indices, batch_size)
    with atomic_path(Path(out)) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            embedding=embeddings.astype(np.float32),
            record=np.array([rel for rel, _ in entries]),
            root=str(root),
            leads=np.array(encoder.leads),
            sample_size=crop,
        )
    return len(entries)
