"""Two CPU processes through torchrun and fairseq-hydra-train with gloo (the README's recipe)."""

import shutil
import socket
import subprocess
import sys
from pathlib import Path

from conftest import USER_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two_gloo_workers(
    config_dir: Path, config_name: str, overrides: list[str], cwd: Path
) -> subprocess.CompletedProcess:
    """Run ``fairseq-hydra-train`` in two gloo processes; returns the completed process (output captured)."""
    bindir = Path(sys.executable).parent
    cmd = [
        shutil.which("torchrun", path=str(bindir)),
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        shutil.which("fairseq-hydra-train", path=str(bindir)),
        "--config-dir",
        str(config_dir),
        "--config-name",
        config_name,
        *overrides,
        f"common.user_dir={USER_DIR}",
        f"hydra.run.dir={cwd}/hydra_dist",
        "distributed_training.distributed_backend=gloo",
        "distributed_training.distributed_world_size=2",
        "distributed_training.distributed_init_method=env://",
        "distributed_training.distributed_no_spawn=true",
        "distributed_training.distributed_rank=${oc.env:RANK}",
        "distributed_training.ddp_backend=legacy_ddp",
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
