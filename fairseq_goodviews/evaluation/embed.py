"""Encoders outside fairseq: any checkpoint of this project as a ``torch.nn.Module``, and embeddings.

Python::

    from fairseq_goodviews.evaluation.embed import load_encoder

    encoder = load_encoder("checkpoints/simclr/checkpoint_last.pt")  # eval mode, on the GPU if any
    encoder.leads, encoder.sample_rate, encoder.sample_size            # what it expects
    embeddings = encoder(signals)                                      # [B, 12, T] mV -> [B, D]

Command line: ``goodviews-embed CKPT --data DIR [--split SPLIT] --out FILE.npz`` writes one
embedding per record of a prepared folder's split, of every WFDB (``.hea``) or ``.mat`` record
under a folder of raw records, or (``goodviews-embed CKPT FILE... --out FILE.npz``) of the record
files named: ``embedding`` [N, D] float32, ``record`` [N] (the manifest's paths, the paths under
the folder, or the files as given; ``root`` says relative to what), ``leads`` (the leads kept; the
others are zero-filled), ``sample_size`` (samples per crop) and ``crop``: ``whole`` (the default:
the mean embedding of the consecutive crops covering the record, as ``goodviews-evaluate`` scores
a record) or ``centre`` (the centred crop alone). Raw records are read at the encoder's rate:
WFDB records by the preparers' reader, ``.mat`` records resampled; unreadable ones are skipped
and named.

Any checkpoint serves: pretraining (ResNet or wav2vec 2.0), a linear probe or fine-tune of
``ecg_classification`` (single- or multi-label), an ArcFace fine-tune of ``ecg_identification``.
The fields that size a head (class or patient count) come from the weights' shapes, so a
checkpoint whose saved config kept a stale default still loads. The embedding is the
encoder's ``encode`` output: before any projection or classification head, with no masking and
no augmentation. Leads the checkpoint was not trained on (a lead-subset fine-tune) are zero-filled
in their canonical slots, as in training.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from fairseq.dataclass.utils import merge_with_parent
from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
from omegaconf import OmegaConf, open_dict

from fairseq_goodviews import register_plugins
from fairseq_goodviews.data.ecg_dataset import EcgRecordSource, centred_crop, covering_crops
from fairseq_goodviews.errors import GoodviewsError
from fairseq_goodviews.evaluation.device import scoring_device
from fairseq_goodviews.io.atomic import atomic_path
from fairseq_goodviews.io.checkpoints import CheckpointError, read_checkpoint
from fairseq_goodviews.io.manifest import read_manifest
from fairseq_goodviews.io.records import RecordError, read_record
from fairseq_goodviews.io.signal import resample
from fairseq_goodviews.leads import lead_keep_mask, lead_names, parse_leads
from fairseq_goodviews.models.ecg_classifier import config_matching_weights
from fairseq_goodviews.preprocessing.wfdb_reader import read_wfdb


class EmbedInputError(GoodviewsError, ValueError):
    """Records to embed that cannot be found or read; the message names the file and the problem."""


#: How ``goodviews-embed`` covers a record: every crop of it, averaged, or its centred crop.
CROPS = ("whole", "centre")


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


def embed_signals(
    model: EcgEncoder,
    signals: Iterable[np.ndarray],
    sample_size: int,
    leads: Sequence[int] | None = None,
    crop: str = "whole",
    batch_size: int = 64,
) -> np.ndarray:
    """Embeddings [N, D] float32 of N signals [12, L] (mV, canonical lead order, at the encoder's rate).

    ``crop="whole"`` embeds a record as ``goodviews-evaluate`` scores one: the mean of the
    embeddings of the consecutive ``sample_size`` crops covering it
    (:func:`~fairseq_goodviews.data.ecg_dataset.covering_crops`); ``"centre"`` embeds its centred
    crop. Leads outside ``leads`` (canonical slot indices; None: all 12) are zero-filled in their
    slots (the lead-subset convention). ``batch_size`` records go through the encoder at once.
    """
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    keep = lead_keep_mask(leads)
    out: list[torch.Tensor] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        crops = np.concatenate(batch)  # a copy: the zero-filling below leaves the signals alone
        crops[:, ~keep] = 0.0
        embeddings = model.embed(torch.from_numpy(crops))
        out.extend(part.mean(dim=0) for part in embeddings.split([len(c) for c in batch]))
        batch.clear()

    for signal in signals:
        batch.append(
            covering_crops(signal, sample_size) if crop == "whole" else centred_crop(signal, sample_size)[None]
        )
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return torch.stack(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def embed_records(
    model: EcgEncoder,
    manifest: str | Path,
    indices: np.ndarray,
    sample_size: int,
    leads: Sequence[int] | None = None,
    batch_size: int = 64,
    crop: str = "centre",
) -> np.ndarray:
    """Embeddings [len(indices), D] of manifest rows ``indices`` (see :func:`embed_signals`; by
    default of their centred ``sample_size`` crops, the only part of a record then read)."""
    source = EcgRecordSource(manifest, model.sample_rate)
    signals = (
        source.load(int(index), int(source.sizes[index]) if crop == "whole" else sample_size, None)[0]
        for index in indices
    )
    return embed_signals(model, signals, sample_size, leads, crop, batch_size)


def record_kind(path: Path) -> tuple[str, Path]:
    """``("wfdb", record path without suffix)`` for a WFDB record (its ``.hea``, its signal file
    beside a ``.hea``, or its name without suffix), else ``("mat", path)``: one of our records."""
    stem = path.with_suffix("") if path.suffix.lower() in (".hea", ".mat", ".dat") else path
    if stem.with_name(stem.name + ".hea").is_file():
        return "wfdb", stem
    return "mat", path


def find_raw_records(folder: Path) -> list[Path]:
    """Every WFDB record under ``folder`` (as its path without ``.hea``) and every ``.mat`` record
    of ours (a ``.mat`` with no ``.hea`` beside it), sorted; :class:`EmbedInputError` if none."""
    found = sorted(
        p.with_suffix("") if p.suffix.lower() == ".hea" else p
        for p in folder.rglob("*")
        if p.is_file()
        and (p.suffix.lower() == ".hea" or (p.suffix.lower() == ".mat" and not p.with_suffix(".hea").is_file()))
    )
    if not found:
        raise EmbedInputError(f"{folder}: no WFDB records (.hea) and no .mat records (and no <split>.tsv manifest)")
    return found


def read_raw_record(path: Path, sample_rate: float) -> np.ndarray:
    """float32 [12, T] in mV at ``sample_rate`` of a WFDB record (read by the preparers' reader,
    :func:`~fairseq_goodviews.preprocessing.wfdb_reader.read_wfdb`: leads matched by name, gains
    and units applied, absent leads zero-filled) or of one of our ``.mat`` records (resampled
    with :func:`~fairseq_goodviews.io.signal.resample`); :class:`RecordError` names the file."""
    kind, record_path = record_kind(path)
    if kind == "wfdb":
        return read_wfdb(record_path, target_rate=sample_rate).record.feats
    record = read_record(path, with_meta=False)
    if record.n_samples == 0 or not np.isfinite(record.feats).all():
        raise RecordError(path, "no samples" if record.n_samples == 0 else "NaN or inf in the signal")
    if abs(record.sample_rate - sample_rate) > 1e-6:
        return resample(record.feats, record.sample_rate, sample_rate).astype(np.float32)
    return record.feats


@dataclass
class Embedded:
    """What :func:`write_embeddings` wrote: ``n`` embeddings of ``source``, and the files it
    skipped (``"<file>: <problem>"``, one each)."""

    n: int
    source: str
    skipped: list[str] = field(default_factory=list)


def _raw_signals(
    paths: Sequence[Path], sample_rate: float, read: list[int], skipped: list[str]
) -> Iterator[np.ndarray]:
    """The signals of ``paths`` that read; the position of each is appended to ``read``, every
    unreadable file to ``skipped``."""
    for number, path in enumerate(paths):
        try:
            signal = read_raw_record(path, sample_rate)
        except RecordError as exc:
            skipped.append(str(exc))
            continue
        read.append(number)
        yield signal


@dataclass
class _Input:
    """The records to embed: a manifest or raw files, and the names the ``.npz`` gives them."""

    source: str
    root: str
    manifest: Path | None = None
    paths: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _input(data: str | Path | None, split: str | None, records: Sequence[str | Path]) -> _Input:
    if (data is None) == (not records):
        raise EmbedInputError("give either a folder (--data) or record files, not both and not neither")
    if records:
        paths = [Path(p) for p in records]
        return _Input(
            f"{len(paths)} record file{'s' if len(paths) != 1 else ''}", "", None, paths, list(map(str, records))
        )
    folder = Path(data)
    manifest = folder / f"{split or 'test'}.tsv"
    if manifest.is_file():
        root, entries = read_manifest(manifest)
        return _Input(str(manifest), str(root), manifest, names=[rel for rel, _ in entries])
    if not folder.is_dir():
        raise EmbedInputError(f"{folder}: {'not a folder' if folder.exists() else 'not found'}")
    if split is not None or any(folder.glob("*.tsv")):
        raise EmbedInputError(f"{manifest}: manifest not found")
    paths = find_raw_records(folder)
    return _Input(
        f"the records under {folder}", str(folder), None, paths, [p.relative_to(folder).as_posix() for p in paths]
    )


def write_embeddings(
    checkpoint: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    split: str | None = None,
    records: Sequence[str | Path] = (),
    crop: str = "whole",
    leads: Sequence[int] | None = None,
    sample_size: int | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> Embedded:
    """Write one embedding per record to ``out`` (``.npz``, see the module docstring).

    The records are a prepared folder's ``split`` (``data`` with ``<split>.tsv``; default test),
    every WFDB or ``.mat`` record under a folder ``data``, or the files ``records``. Raw records
    are read at the encoder's rate (:func:`read_raw_record`); one that cannot be read is skipped
    and named in :attr:`Embedded.skipped`. ``leads`` defaults to the checkpoint's leads; naming
    one it was not trained on is an :class:`EmbedInputError`, as is no record to embed.
    """
    scoring_device(device)  # an unusable --device is named before any file is read
    given = _input(data, split, records)
    encoder = load_encoder(checkpoint, device)
    if leads is None:
        leads = encoder.lead_indices
    outside = sorted(set(leads) - set(encoder.lead_indices))
    if outside:
        raise EmbedInputError(
            f"{checkpoint}: trained on leads {','.join(encoder.leads)}; --leads names "
            f"{','.join(lead_names(outside))} too"
        )
    crop_size = sample_size or encoder.sample_size
    skipped: list[str] = []
    if given.manifest is not None:
        rows = np.arange(len(given.names))
        embeddings = embed_records(encoder, given.manifest, rows, crop_size, leads, batch_size, crop)
        names = given.names
    else:
        read: list[int] = []
        signals = _raw_signals(given.paths, encoder.sample_rate, read, skipped)
        embeddings = embed_signals(encoder, signals, crop_size, leads, crop, batch_size)
        names = [given.names[i] for i in read]
        if not names:
            raise EmbedInputError(f"{given.source}: no record could be read ({len(skipped)} skipped: {skipped[0]})")
    with atomic_path(Path(out)) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            embedding=embeddings.astype(np.float32),
            record=np.array(names),
            root=given.root,
            leads=np.array(lead_names(leads)),
            sample_size=crop_size,
            crop=crop,
        )
    return Embedded(len(names), given.source, skipped)
