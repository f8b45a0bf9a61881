"""Shared fixtures: small prepared datasets written with the project's own record/manifest writers."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fairseq_goodviews
from fairseq_goodviews.io.manifest import ATTRIBUTE_NAMES, write_manifest
from fairseq_goodviews.io.records import EcgRecord, write_record

REPO_ROOT = Path(__file__).resolve().parents[1]
# The plugin the tests import: the repository's in the development set-up, an installed wheel's
# when examples/gpu_check.sh runs the tests against its install.
USER_DIR = Path(fairseq_goodviews.__file__).resolve().parent
PRETRAIN_CONFIGS = USER_DIR / "config" / "pretraining"
FINETUNE_CONFIGS = USER_DIR / "config" / "finetuning"
#: A wav2vec 2.0 small enough for unit tests (one 32-d layer, 16-sample stride).
W2V_TINY = {
    "conv_feature_layers": "[(32, 2, 2)] * 4",
    "encoder_layers": 1,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "conv_pos": 8,
    "conv_pos_groups": 4,
    "final_dim": 16,
    "latent_vars": 16,
    "latent_groups": 2,
    "num_negatives": 10,
    "encoder_layerdrop": 0.0,
}
RHYTHMS = {"AFIB": ["AFIB", "AF"], "GSVT": ["ST", "SVT"], "SB": ["SB"], "SR": ["SR", "SA"]}


def shared_data() -> Path:
    """The real shared files, or a skip naming the variable to set."""
    root = os.environ.get("GOODVIEWS_SHARED_DATA")
    if not root:
        pytest.skip("GOODVIEWS_SHARED_DATA is not set (CI sets it to ../shared/data)")
    return Path(root)


def write_tiny_dataset(root: Path, n_per_split=(48, 16, 16), sample_size: int = 1000, seed: int = 0) -> Path:
    """A labelled dataset whose classes differ in rate, with demographics, beats, attributes and patients.

    Records are sums of Gaussian beats at a class-dependent rate (so a linear probe can learn
    something), two records per patient, and Chapman-style metadata columns.
    """
    rng = np.random.default_rng(seed)
    classes = list(RHYTHMS)
    t = np.arange(sample_size) / 500.0
    lead_gain = rng.normal(1.0, 0.3, size=(12, 1))
    for split, n in zip(("train", "valid", "test"), n_per_split, strict=True):
        rows = []
        for i in range(n):
            label = classes[i % 4]
            rate = {"AFIB": 100, "GSVT": 130, "SB": 50, "SR": 75}[label] + rng.normal(0, 5)
            beats = np.arange(rng.uniform(0, 0.3), t[-1], 60.0 / rate)
            signal = np.exp(-((t[None, :] - beats[:, None]) ** 2) / (2 * 0.012**2)).sum(0)
            feats = (lead_gain * signal + rng.normal(0, 0.05, size=(12, sample_size))).astype(np.float32)
            key = f"{split}_{i:03d}"
            rel = f"records/{key}.mat"
            attributes = {name: float(rng.normal(100, 20)) for name in ATTRIBUTE_NAMES}
            attributes["VentricularRate"] = rate
            write_record(root / rel, EcgRecord(feats, 500.0, meta={"patient_id": f"{split}_p{i // 2}"}))
            rows.append(
                {
                    "path": rel,
                    "n_samples": sample_size,
                    "record_id": key,
                    "patient_id": f"{split}_p{i // 2}",
                    "age": int(rng.integers(18, 95)),
                    "sex": "M" if rng.random() < 0.5 else "F",
                    "rhythm": RHYTHMS[label][i // 4 % len(RHYTHMS[label])],
                    "beat": "NONE" if i % 3 else "RBBB",
                    "label": label,
                    "source": "tiny",
                    "sample_rate": 500.0,
                    **{f"attr_{k}": v for k, v in attributes.items()},
                }
            )
        write_manifest(root, split, root, pd.DataFrame(rows))
    return root


#: Rhythm class -> CinC 2021 SNOMED code; "RBBB" beats add 59118001 (scored as CRBBB|RBBB).
DX = {"AFIB": "164889003", "GSVT": "427084000", "SB": "426177001", "SR": "426783006"}


def add_dx_column(root: Path) -> Path:
    """Give every split of a :func:`write_tiny_dataset` folder the ``dx`` column of the CinC 2021
    label set: the SNOMED code of its rhythm class, and RBBB's where its beat is one."""
    for split in ("train", "valid", "test"):
        table = pd.read_csv(root / f"{split}.csv", keep_default_na=False)
        table["dx"] = [
            DX[label] + (" 59118001" if beat == "RBBB" else "")
            for label, beat in zip(table["label"], table["beat"], strict=True)
        ]
        table.to_csv(root / f"{split}.csv", index=False)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def hydra_train(config_dir: Path, config_name: str, overrides, cwd: Path, timeout: int = 600, env=None):
    """Run ``fairseq-hydra-train`` as a user would; returns the completed process (output captured)."""
    exe = shutil.which("fairseq-hydra-train", path=str(Path(sys.executable).parent)) or "fairseq-hydra-train"
    cmd = [
        exe,
        "--config-dir",
        str(config_dir),
        "--config-name",
        config_name,
        f"common.user_dir={USER_DIR}",
        f"hydra.run.dir={cwd}/hydra",
        *overrides,
    ]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(
            f"fairseq-hydra-train failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


@pytest.fixture
def one_thread():
    """Tiny tensors: intra-op threads only add overhead (and stall on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


HAS_GPU = torch.cuda.is_available()


def console_script(name: str) -> str:
    """The installed ``goodviews-*`` command ``name`` of this environment (what a user runs)."""
    return str(Path(sys.executable).parent / name)


# The devices a device-parametrised test runs on: the CPU always, the GPU where one is visible.
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU")])]
