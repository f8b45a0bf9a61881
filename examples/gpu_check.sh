#!/usr/bin/env bash
# GPU check: install the project offline, then measure 1-GPU pretraining: fairseq against a bare
# PyTorch loop, how busy the GPU is, the loader beside it, W2V+CMSC+RLM at the published size.
#
#   examples/gpu_check.sh WHEELHOUSE [OUT_DIR]
#
# Needs a Python 3.11-3.13 that already has the machine's own CUDA build of PyTorch ($PYTHON,
# default python3; the venv made here reads that interpreter's packages, torch included, in place)
# and WHEELHOUSE, prepared beforehand on a machine with a package index (docs/gpu.md): the
# project's wheel, a fairseq-fixed wheel for that Python, and wheels of whatever the project needs
# that the machine lacks. Nothing is downloaded: pip runs with --no-index and no config, and keeps
# every package the machine already has that satisfies the project's version ranges.
#
# Then one prepared run, section by section, each under its own time limit and all of them within
# TIME_BUDGET seconds (default 420: about 8 minutes on an H100 with the install), so that a slow
# section cannot eat the rest; a section that fails or runs out of time is reported and the next
# one runs. In order of what matters most, with bf16 autocast:
#   tests       the GPU tests (pytest -m gpu): bf16 steps, NCCL gather, scoring GPU vs CPU, fused torch_adam
#   data        RECORDS synthetic Chapman-like records, packed (unless DATA names a prepared folder)
#   paper       fairseq-hydra-train vs a bare loop, paper ResNet-18 at batch 64: the ratio with its
#               interval, records/s with TFLOP/s and the share of the GPU's bf16 peak
#   step-rate   the training step alone (no loader) at batches 64/256/1024, cudnn.benchmark on
#   w2v         W2V+CMSC+RLM at the published size (768-d, 12 layers), batch 64: records/s, peak memory
#   loader      the training loader alone (preset=throughput, WORKERS) beside the fastest step rate
#   throughput  fairseq-hydra-train vs the bare loop with preset=throughput (batch 256)
#   compile     the step-rate batches again with the encoder compiled (torch.compile)
# Figures are printed, written as JSON under OUT_DIR, and the sections' outcomes summed up at the end.
#
# Environment: DATA=prepared manifest folder (default: RECORDS synthetic records made here, 1200),
# WORKERS (data-loading workers, default 8), STRATEGY (default simclr), TIME_BUDGET (seconds for
# everything after the install, default 420), INSTALL_ONLY=1 (stop after installing and importing),
# SKIP_TESTS=1 (no GPU tests), CPU=1 (no GPU: every section on the CPU with small models, presets
# cpu_small and w2v_cpu_small, and small batches: the check's own end-to-end proof).
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
TIME_BUDGET=${TIME_BUDGET:-420}
CPU=${CPU:-0}

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
if [ "$CPU" = 1 ]; then
  # The check's own proof without a GPU: the same sections, small enough for a CPU.
  DEVICE=(--device cpu); BF16=(); RECORDS=${RECORDS:-200}
  PAPER=cpu_small; FAST=cpu_small; W2V=w2v_cpu_small; SAMPLES=(--sample-size 500); BATCH=8; FAST_BATCH=16
  SIZES=(8 16); COMPILE_SIZES=(8); STEPS=(--warmup 1 --steps 3)
  SLICES=(--slices 2 --blocks 1 --slice-seconds 3 --warmup 2 --log-every 1); FAST_SLICES=("${SLICES[@]}")
  W2V_BATCH=4; LOADER=(--preset cpu_small --batch-size 16 --sample-size 500 --batches 4)
  export OMP_NUM_THREADS=1
else
  "$PY" -c "import torch, sys; torch.cuda.is_available() or sys.exit('gpu_check: no GPU visible to torch (CPU=1: the sections on the CPU)')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  DEVICE=(--device cuda); BF16=(--bf16); RECORDS=${RECORDS:-1200}
  PAPER=paper; FAST=throughput; W2V=w2v_paper; SAMPLES=(--sample-size 5000); BATCH=64; FAST_BATCH=256
  SIZES=(64 256 1024); COMPILE_SIZES=(1024 256 64); STEPS=(--warmup 5 --steps 20)
  SLICES=(--slices 10 --blocks 5 --slice-seconds 3 --warmup 30 --log-every 25)
  FAST_SLICES=(--slices 6 --blocks 3 --slice-seconds 3 --warmup 10 --log-every 5)
  W2V_BATCH=64; LOADER=(--preset throughput --batches 20)
fi
PERF="$OUT/venv/bin/goodviews-perf"
START=$(date +%s)
SUMMARY=()
# section NAME LIMIT CMD...: CMD under min(LIMIT, what is left of TIME_BUDGET) seconds; its outcome noted.
section() {
  local name=$1 limit=$2 left rc t0 took
  shift 2
  left=$((TIME_BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 20 ]; then
    SUMMARY+=("$name: SKIPPED (TIME_BUDGET spent)")
    echo "== $name: skipped, TIME_BUDGET spent"
    return 0
  fi
  [ "$limit" -lt "$left" ] || limit=$left
  echo "== $name (at most $limit s)"
  t0=$(date +%s)
  set +e
  timeout --kill-after=15 "$limit" "$@"
  rc=$?
  set -e
  took=$(($(date +%s) - t0))
  case $rc in
    0) SUMMARY+=("$name: ok (${took} s)") ;;
    124 | 137) SUMMARY+=("$name: TIMED OUT after ${limit} s") && FAILED=1 ;;
    *) SUMMARY+=("$name: FAILED (exit $rc, ${took} s)") && FAILED=1 ;;
  esac
}

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  # From $OUT, so that the tests import the installed package, not the repository's copy.
  section "tests (pytest -m gpu)" 150 "$PY" -m pytest -c "$REPO/pytest.ini" --rootdir "$REPO" -m gpu -q -rs \
    -p no:cacheprovider "$REPO/tests/criterions/test_bf16_autocast.py" "$REPO/tests/distributed/test_gather_views.py" \
    "$REPO/tests/evaluation/test_embed.py" "$REPO/tests/optim/test_torch_adam.py"
fi

if [ -z "${DATA:-}" ]; then
  DATA="$OUT/chapman"
  if [ ! -f "$DATA/train.tsv" ]; then
    section "data ($RECORDS synthetic Chapman-like records, packed)" 150 bash -c '
      "$1" -m fairseq_goodviews.cli.synthetic_chapman "$2/chapman_src" --records "$3" --seed 0 --workers "$4" &&
      "$1" -m fairseq_goodviews.cli.prepare_chapman "$2/chapman_src" "$2/chapman" --workers "$4" --no-progress --pack
    ' _ "$PY" "$OUT" "$RECORDS" "$WORKERS"
  fi
fi

section "paper: fairseq vs bare loop, $STRATEGY/$PAPER, batch $BATCH" 170 \
  "$PERF" training-throughput --data "$DATA" --out "$OUT/paper" "${DEVICE[@]}" "${BF16[@]}" --workers "$WORKERS" \
  --strategy "$STRATEGY" --preset "$PAPER" --batch-size "$BATCH" "${SAMPLES[@]}" "${SLICES[@]}" --w2v-steps 0
section "step-rate: $STRATEGY/$PAPER, batches ${SIZES[*]}, cudnn.benchmark" 100 \
  "$PERF" step-rate --data "$DATA" --out "$OUT" --config "$STRATEGY" --preset "$PAPER" "${DEVICE[@]}" "${BF16[@]}" \
  --batch-sizes "${SIZES[@]}" "${SAMPLES[@]}" "${STEPS[@]}" --cudnn-benchmark
section "w2v: W2V+CMSC+RLM ($W2V), batch $W2V_BATCH" 90 \
  "$PERF" step-rate --data "$DATA" --out "$OUT" --config w2v_cmsc_rlm --preset "$W2V" "${DEVICE[@]}" "${BF16[@]}" \
  --batch-sizes "$W2V_BATCH" "${STEPS[@]}"
# The fastest training step measured above: the rate the loader has to keep up with.
GPU_RATE=$("$PY" -c '
import json, pathlib, sys
rates = [row["records_per_s"] for p in pathlib.Path(sys.argv[1]).glob("step_rate_*.json")
         if not p.name.startswith("step_rate_w2v") for row in json.loads(p.read_text())["rows"]]
print(f"{max(rates):.1f}" if rates else "")
' "$OUT")
section "loader ($WORKERS workers) beside ${GPU_RATE:-no} records/s of the step" 60 \
  "$PERF" loader --data "$DATA" --out "$OUT" --workers "$WORKERS" "${LOADER[@]}" ${GPU_RATE:+--gpu-records-per-s "$GPU_RATE"}
section "throughput preset: fairseq vs bare loop, $STRATEGY/$FAST, batch $FAST_BATCH" 130 \
  "$PERF" training-throughput --data "$DATA" --out "$OUT/throughput" "${DEVICE[@]}" "${BF16[@]}" --workers "$WORKERS" \
  --strategy "$STRATEGY" --preset "$FAST" --batch-size "$FAST_BATCH" "${SAMPLES[@]}" "${FAST_SLICES[@]}" --w2v-steps 0
section "compile: $STRATEGY/$PAPER, batches ${COMPILE_SIZES[*]}, compiled encoder" 150 \
  "$PERF" step-rate --data "$DATA" --out "$OUT" --config "$STRATEGY" --preset "$PAPER" "${DEVICE[@]}" "${BF16[@]}" \
  --batch-sizes "${COMPILE_SIZES[@]}" "${SAMPLES[@]}" "${STEPS[@]}" --cudnn-benchmark --compile

echo "== summary: $(($(date +%s) - START)) s of TIME_BUDGET=$TIME_BUDGET; figures as JSON under $OUT"
printf '  %s\n' "${SUMMARY[@]}"
if [ "${FAILED:-0}" = 1 ]; then
  echo "gpu_check: a section failed or ran out of time (see above)" >&2
  exit 1
fi
