"""How fast the device trains without the loader: records/s, TFLOP/s and peak memory per batch size.

For each ``--batch-sizes`` entry, the pretraining ``--config`` with ``--preset`` (default: SimCLR
with the paper ResNet-18; ``--config w2v_cmsc_rlm --preset w2v_paper`` for W2V+CMSC+RLM at the
published size) trains on fixed batches made once from the dataset's records and kept on the
device: the forward pass (under bf16 autocast with ``--bf16``), the loss (the config's: the
multi-positive InfoNCE, or wav2vec 2.0 + CMSC), the backward pass and the AdamW step, the
training step of the throughput benchmark's bare loop. After ``--warmup`` steps (cuDNN's
algorithm search, ``torch.compile``), ``--steps`` steps are timed, the device synchronised at both
ends. ``--cudnn-benchmark`` and ``--compile`` set ``task.cudnn_benchmark`` and
``model.compile_encoder``. Beside records/s: the achieved TFLOP/s from the model's FLOPs per record
(:mod:`fairseq_goodviews.perf.flops`), its share of the GPU's bf16 peak, and the peak GPU memory.

    goodviews-perf step-rate --data MANIFEST_DIR --out DIR [--batch-sizes 64 256 1024] [--compile]
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from fairseq.dataclass.utils import merge_with_parent
from omegaconf import OmegaConf

from fairseq_goodviews.config.compose import compose
from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce
from fairseq_goodviews.criterions.w2v_cmsc import Wav2Vec2CmscCriterion
from fairseq_goodviews.optim.torch_adam import adam_betas, build_adamw
from fairseq_goodviews.perf import PerfSettingsError
from fairseq_goodviews.perf.flops import MODELS, flops_per_record, format_utilisation, utilisation
from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "pretraining"


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def contrastive_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    task: EcgPretrainingTask,
    batch: dict[str, Any],
    temperature: float,
    bf16: bool,
) -> None:
    """One training step of a ResNet strategy on ``batch`` (on the model's device): its views
    ``net_input.source`` [views, leads, T] through the model, the multi-positive InfoNCE over the
    task's positive relation, the backward pass and ``optimizer``'s update."""
    source = batch["net_input"]["source"]
    with torch.autocast(source.device.type, dtype=torch.bfloat16, enabled=bf16):
        embeddings = model(source)["embedding"]
        positive = task.positive_mask(batch["views_meta"])
        loss, n_positive = multi_positive_info_nce(embeddings, embeddings, positive, 0, temperature)
    optimizer.zero_grad()
    (loss.sum() / max(int((n_positive > 0).sum()), 1)).backward()
    optimizer.step()


def build_optimizer(cfg: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
    """PyTorch's AdamW kernel with the config's hyperparameters, as ``torch_adam`` runs it."""
    return build_adamw(
        list(model.parameters()),
        str(cfg.optimizer.get("implementation", "auto")),
        lr=float(cfg.optimization.lr[0]),
        betas=adam_betas(cfg.optimizer.adam_betas),
        eps=float(cfg.optimizer.get("adam_eps", 1e-8)),
        weight_decay=float(cfg.optimizer.get("weight_decay", 0.0)),
    )


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """``batch`` with its source and view metadata on ``device``."""
    moved = dict(batch)
    moved["net_input"] = {**batch["net_input"], "source": batch["net_input"]["source"].to(device)}
    moved["views_meta"] = {key: value.to(device) for key, value in batch["views_meta"].items()}
    return moved


def _step(cfg: Any, task: EcgPretrainingTask, model: torch.nn.Module, bf16: bool) -> Callable[[dict], None]:
    """The config's training step on a batch: the contrastive one, or W2V+CMSC's criterion."""
    optimizer = build_optimizer(cfg, model)
    if cfg.model._name == "resnet1d":
        temperature = float(cfg.criterion.temperature)
        return lambda batch: contrastive_step(model, optimizer, task, batch, temperature, bf16)
    criterion_cfg = OmegaConf.to_container(cfg.criterion)
    criterion_cfg.pop("_name")
    criterion = Wav2Vec2CmscCriterion(task, **criterion_cfg).train()

    def step(batch: dict) -> None:
        with torch.autocast(batch["net_input"]["source"].device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = criterion(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def measure(
    data: Path,
    config: str,
    preset: str,
    batch_size: int,
    device: str,
    bf16: bool,
    cudnn_benchmark: bool,
    compile_encoder: bool,
    warmup: int,
    steps: int,
    sample_size: int | None = None,
) -> dict[str, Any]:
    """Records/s (and peak GPU memory, GiB) of ``steps`` timed training steps at ``batch_size``."""
    overrides = [
        f"preset={preset}",
        f"++task.cudnn_benchmark={str(cudnn_benchmark).lower()}",
        f"++model.compile_encoder={str(compile_encoder).lower()}",
    ]
    cfg = compose(CONFIG_DIR.parent, CONFIG_DIR.name, config, overrides)
    OmegaConf.update(cfg, "task.data", str(data), force_add=True)
    OmegaConf.update(cfg, "task.seed", 1, force_add=True)
    if sample_size:
        OmegaConf.update(cfg, "task.sample_size", sample_size, force_add=True)
    torch.backends.cudnn.benchmark = cudnn_benchmark  # the task sets it only on
    torch.compiler.reset()  # each measurement compiles afresh
    task = EcgPretrainingTask.setup_task(merge_with_parent(EcgPretrainingConfig(), cfg.task))
    task.load_dataset("train")
    dataset = task.dataset("train")
    target = torch.device(device)
    torch.manual_seed(1)
    model_class, config_class = MODELS[str(cfg.model._name)]
    model = model_class.build_model(merge_with_parent(config_class(), cfg.model)).to(target).train()
    step = _step(cfg, task, model, bf16)
    batches = [
        _to(dataset.collater([dataset[(start + i) % len(dataset)] for i in range(batch_size)]), target)
        for start in (0, batch_size)
    ]
    if target.type == "cuda":
        torch.cuda.reset_peak_memory_stats(target)
    for index in range(warmup):
        step(batches[index % 2])
    synchronize(target)
    start = time.perf_counter()
    for index in range(steps):
        step(batches[index % 2])
    synchronize(target)
    elapsed = time.perf_counter() - start
    return {
        "batch_size": batch_size,
        "records_per_s": steps * batch_size / elapsed,
        "peak_memory_gib": torch.cuda.max_memory_allocated(target) / 2**30 if target.type == "cuda" else None,
    }


def run(
    data: Path,
    config: str,
    preset: str,
    batch_sizes: Sequence[int],
    device: str,
    bf16: bool,
    cudnn_benchmark: bool,
    compile_encoder: bool,
    warmup: int,
    steps: int,
    sample_size: int | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every batch size's row (``report`` receives each as measured) and the FLOPs they are scored with."""
    if warmup < 1 or steps < 1:
        raise PerfSettingsError(f"--warmup ({warmup}) and --steps ({steps}) must be at least 1")
    device_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    count = flops_per_record(config, preset, sample_size)
    report(
        f"{config} ({preset}), {count.gflop_per_record:.2f} GFLOP/record, on {device_name}"
        f"{', bf16' if bf16 else ''}{', cudnn.benchmark' if cudnn_benchmark else ''}"
        f"{', compiled encoder' if compile_encoder else ''}"
    )
    rows = []
    for batch_size in batch_sizes:
        row = measure(
            data, config, preset, batch_size, device, bf16, cudnn_benchmark, compile_encoder, warmup, steps, sample_size
        )
        row.update(utilisation(row["records_per_s"], count.gflop_per_record, device_name))
        rows.append(row)
        memory = f", peak memory {row['peak_memory_gib']:.1f} GiB" if row["peak_memory_gib"] is not None else ""
        report(
            f"  batch {batch_size:>5}: {row['records_per_s']:>9.1f} records/s, "
            f"{format_utilisation(row, device_name)}{memory}"
        )
    return {
        "config": config,
        "preset": preset,
        "device_name": device_name,
        "bf16": bf16,
        "cudnn_benchmark": cudnn_benchmark,
        "compile_encoder": compile_encoder,
        "gflop_per_record": count.gflop_per_record,
        "views_per_record": count.views_per_record,
        "view_samples": count.view_samples,
        "warmup": warmup,
        "steps": steps,
        "rows": rows,
    }
