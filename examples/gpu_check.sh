#!/usr/bin/env bash
# GPU check: install the project offline, then measure 1-GPU pretraining beside a bare PyTorch loop.
#
#   examples/gpu_check.sh WHEELHOUSE [OUT_DIR]
#
# Needs a Python 3.11-3.13 that already has the machine's own CUDA build of PyTorch ($PYTHON,
# default python3; the venv made here reads that interpreter's packages, torch included, in place)
# and WHEELHOUSE, prepared beforehand on a machine with a package index (README "GPU check"): the
# project's wheel, a fairseq-fixed wheel for that Python, and wheels of whatever the project needs
# that the machine lacks. Nothing is downloaded: pip runs with --no-index and no config, and keeps
# every package the machine already has that satisfies the project's version ranges.
#
# Then, on one GPU:
#   * the GPU tests (pytest -m gpu): bf16 train/valid steps (float32 loss, finite gradients, close
#     to float32), NCCL collectives of the view gather, scoring on the GPU against the CPU;
# and with bf16 autocast (task.autocast_bf16=true):
#   * a ResNet strategy (STRATEGY, default simclr) with the paper preset through fairseq-hydra-train,
#     interleaved with the same training in a bare PyTorch loop: samples/s of both and their ratio;
#   * W2V+CMSC+RLM with the paper model (w2v_paper) through fairseq-hydra-train: samples/s;
#   * one W2V+CMSC step with the CMSC term on the masked pass vs a second, unmasked pass.
# Figures are printed and written to OUT_DIR/training_throughput.json.
#
# Environment: DATA=prepared manifest folder (default: 600 synthetic Chapman-like records made here),
# WORKERS (data-loading workers, default 8), RECORDS (synthetic records, default 600),
# INSTALL_ONLY=1 (stop after installing and importing: the offline-install proof on a machine
# without a GPU), SKIP_TESTS=1 (no GPU tests).
set -euo pipefail
WHEELHOUSE=$(cd "${1:?usage: examples/gpu_check.sh WHEELHOUSE [OUT_DIR]}" && pwd)
OUT=${2:-gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-8}
DATA=${DATA:+$(cd "$DATA" && pwd)}
STRATEGY=${STRATEGY:-simclr}

echo "== interpreter and its own PyTorch"
"$PYTHON" - <<'EOF'
import sys
import torch
if not (3, 11) <= sys.version_info[:2] <= (3, 13):
    sys.exit(f"gpu_check: Python 3.11 to 3.13 needed, this is {sys.version.split()[0]}")
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"GPU visible: {torch.cuda.is_available()}")
EOF

echo "== offline install into $OUT/venv (sees the machine's torch; installs only from $WHEELHOUSE)"
"$PYTHON" -m venv "$OUT/venv"
PY="$OUT/venv/bin/python"
# The machine's torch stays where it is: its site folder is appended to the venv's path (after the
# venv's own packages), whether $PYTHON is a system, conda or venv interpreter. pip sees what is
# there as installed, so only what is missing or outside the project's ranges comes from WHEELHOUSE.
TORCH_SITE=$("$PYTHON" -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
"$PY" -c "import site; print(site.getsitepackages()[0])" | { read -r VENV_SITE; echo "$TORCH_SITE" > "$VENV_SITE/machine_torch.pth"; }
# No pip configuration, no index, no other wheel folder: only the wheelhouse can satisfy a requirement.
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELHOUSE" PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONSTRAINT
# fairseq-fixed without its declared dependencies (it names torchaudio, which nothing here uses),
# then its real runtime needs and the project with the ranges of its package metadata.
# Both go into the venv even where the machine's site has a copy: the wheels are what is checked.
"$PY" -m pip install --no-index --find-links "$WHEELHOUSE" --no-deps --force-reinstall "fairseq-fixed==0.12.3.1" fairseq_goodviews
"$PY" -m pip install --no-index --find-links "$WHEELHOUSE" fairseq_goodviews cffi cython regex sacrebleu tqdm bitarray packaging
cd "$OUT"  # import the installed plugin, not the repository's copy
"$PY" - <<'EOF'
import fairseq
import torch

import fairseq_goodviews
from fairseq_goodviews.criterions.multi_positive_infonce import multi_positive_info_nce  # noqa: F401
print(f"installed: fairseq {fairseq.__version__}, plugin at {fairseq_goodviews.__file__}, torch {torch.__version__}")
EOF
HYDRA="$OUT/venv/bin/fairseq-hydra-train"
test -x "$HYDRA" || { echo "gpu_check: fairseq-hydra-train missing from the venv" >&2; exit 1; }
if [ "${INSTALL_ONLY:-0}" = 1 ]; then
  echo "== INSTALL_ONLY=1: offline install checked; no GPU run"
  exit 0
fi
"$PY" -c "import torch, sys; torch.cuda.is_available() or sys.exit('gpu_check: no GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== GPU tests (pytest -m gpu)"
  # Run from $OUT so that the tests import the installed package, not the repository's copy.
  "$PY" -m pytest -c "$REPO/pytest.ini" --rootdir "$REPO" -m gpu -q -rs -p no:cacheprovider \
    "$REPO/tests/criterions/test_bf16_autocast.py" "$REPO/tests/distributed/test_gather_views.py" \
    "$REPO/tests/evaluation/test_embed.py" "$REPO/tests/optim/test_torch_adam.py" || GPU_TESTS_FAILED=1
fi

if [ -z "${DATA:-}" ]; then
  echo "== ${RECORDS:=600} synthetic Chapman-like records (set DATA to use a prepared manifest folder)"
  "$PY" -m fairseq_goodviews.cli.synthetic_chapman "$OUT/chapman_src" --records "$RECORDS" --seed 0 --workers "$WORKERS"
  "$PY" -m fairseq_goodviews.cli.prepare_chapman "$OUT/chapman_src" "$OUT/chapman" --workers "$WORKERS" --no-progress --pack
  DATA="$OUT/chapman"
fi

echo "== 1-GPU pretraining, bf16: $STRATEGY (paper ResNet) vs a bare loop; W2V+CMSC+RLM (paper model)"
"$OUT/venv/bin/goodviews-perf" training-throughput --data "$DATA" --out "$OUT" \
  --device cuda --bf16 --workers "$WORKERS" \
  --strategy "$STRATEGY" --preset paper --batch-size 64 --sample-size 5000 \
  --warmup 30 --slices 24 --slice-seconds 4 --blocks 6 --log-every 25 \
  --w2v-preset w2v_paper --w2v-batch-size 64 --w2v-warmup 3 --w2v-steps 10 --w2v-fairseq-updates 50
echo "== figures: $OUT/training_throughput.json"
if [ "${GPU_TESTS_FAILED:-0}" = 1 ]; then
  echo "gpu_check: GPU tests failed (see above)" >&2
  exit 1
fi
