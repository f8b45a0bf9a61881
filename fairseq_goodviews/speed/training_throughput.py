"""Training throughput: ``fairseq-hydra-train`` against a bare PyTorch loop, side by side.

Both train the same model (the pretraining config's ResNet with the chosen preset) on the same
dataset, strategy, batch size and number of data-loading workers; each is timed over the same
number of updates after a warm-up. The target (DESIGN.md §5) is a ratio of at least 0.9.

    python -m fairseq_goodviews.perf.training_throughput --data MANIFEST_DIR --out DIR
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List

import torch
from omegaconf import OmegaConf

from fairseq_goodviews.evaluation.evaluate import write_json

REPO_ROOT = Path(__file__).resolve().parents[2]
USER_DIR = REPO_ROOT / "fairseq_goodviews"
_INNER = re.compile(r"^\[(?P<stamp>[\d-]+ [\d:,]+)\]\[train_inner\]\[INFO\] - .*num_updates[= ](?P<n>\d+)")


def _overrides(args: argparse.Namespace) -> List[str]:
    return [f"preset={args.preset}", f"task.data={args.data}", f"dataset.batch_size={args.batch_size}",
            f"dataset.num_workers={args.workers}", f"task.sample_size={args.sample_size}"]


def fairseq_samples_per_second(args: argparse.Namespace, workdir: Path) -> float:
    """Samples/s between update ``warmup`` and the last one, from the trainer's own log timestamps."""
    hydra = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    cmd = [hydra, "--config-dir", str(REPO_ROOT / "configs" / "pretraining"), "--config-name", args.strategy,
           *_overrides(args), f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={workdir}/ckpt",
           f"hydra.run.dir={workdir}/hydra", "checkpoint.no_save=true", "dataset.disable_validation=true",
           "common.log_interval=1", f"optimization.max_update={args.warmup + args.updates}",
           "optimization.max_epoch=0"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"fairseq-hydra-train failed:\n{log[-3000:]}")
    stamps: Dict[int, datetime] = {}
    for line in log.splitlines():
        match = _INNER.match(line)
        if match:
            stamps[int(match["n"])] = datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f")
    first, last = args.warmup, args.warmup + args.updates
    if first not in stamps or last not in stamps:
        raise RuntimeError(f"updates {first} and {last} not both logged (dataset too small for the run?)")
    return args.updates * args.batch_size / (stamps[last] - stamps[first]).total_seconds()


def bare_samples_per_second(args: argparse.Namespace) -> float:
    """The same model, data, loss and optimiser in a plain loop over a torch DataLoader."""
    from fairseq.dataclass.utils import merge_with_parent

    from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce
    from fairseq_goodviews.models.resnet1d import Resnet1dConfig, Resnet1dModel
    from fairseq_goodviews.tasks.ecg_pretraining import EcgPretrainingConfig, EcgPretrainingTask

    config_dir = REPO_ROOT / "configs" / "pretraining"
    cfg = OmegaConf.merge(OmegaConf.load(config_dir / f"{args.strategy}.yaml"),
                          OmegaConf.load(config_dir / "preset" / f"{args.preset}.yaml"))
    cfg.pop("defaults", None)
    cfg.task.data, cfg.task.sample_size, cfg.task.seed = str(args.data), args.sample_size, 1
    task = EcgPretrainingTask(merge_with_parent(EcgPretrainingConfig(), cfg.task))
    task.load_dataset("train")
    dataset = task.dataset("train")
    torch.manual_seed(1)
    model = Resnet1dModel(merge_with_parent(Resnet1dConfig(), cfg.model))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.optimization.lr[0]))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        collate_fn=dataset.collater, drop_last=True, persistent_workers=args.workers > 0,
    )
    temperature = float(cfg.criterion.temperature)
    updates, start = 0, None
    while updates < args.warmup + args.updates:
        for batch in loader:
            embeddings = model(**batch["net_input"])["embedding"]
            positive = task.positive_mask(batch["views_meta"])
            loss, n_positive = multi_positive_info_nce(embeddings, embeddings, positive, 0, temperature)
            optimizer.zero_grad()
            (loss.sum() / max(int((n_positive > 0).sum()), 1)).backward()
            optimizer.step()
            updates += 1
            if updates == args.warmup:
                start = time.perf_counter()
            if updates == args.warmup + args.updates:
                break
    return args.updates * args.batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="prepared manifest folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--strategy", default="simclr")
    parser.add_argument("--preset", default="cpu_small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sample-size", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=1, help="data-loading worker processes (both loops)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args(argv)
    args.data = args.data.resolve()
    with tempfile.TemporaryDirectory() as workdir:
        fairseq_rate = fairseq_samples_per_second(args, Path(workdir))
    bare_rate = bare_samples_per_second(args)
    result = {
        "fairseq_samples_per_s": fairseq_rate, "bare_pytorch_samples_per_s": bare_rate,
        "ratio": fairseq_rate / bare_rate, "target_ratio": 0.9,
        "settings": {k: str(v) for k, v in vars(args).items() if k != "out"},
    }
    print(f"{'loop':<24}{'samples/s':>12}")
    print(f"{'fairseq-hydra-train':<24}{fairseq_rate:>12.1f}")
    print(f"{'bare PyTorch':<24}{bare_rate:>12.1f}")
    print(f"{'ratio (target >= 0.9)':<24}{fairseq_rate / bare_rate:>12.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "training_throughput.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
