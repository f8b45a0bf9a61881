#!/usr/bin/env bash
# Pretrain on every GPU of one node with torchrun and NCCL (fairseq's own distributed path).
#   examples/torchrun_single_node.sh STRATEGY MANIFEST_DIR [extra hydra overrides...]
# e.g. examples/torchrun_single_node.sh attributes /data/chapman_manifest optimization.max_epoch=50
# dataset.batch_size is per GPU: embeddings are all-gathered, so negatives come from the global batch.
set -euo pipefail
STRATEGY=${1:?strategy config name, e.g. simclr}
DATA=${2:?manifest folder}
shift 2
NGPU=${NGPU:-$(nvidia-smi -L | wc -l)}
exec torchrun --standalone --nproc_per_node="$NGPU" "$(command -v goodviews-train)" "pretraining/$STRATEGY" \
  task.data="$DATA" \
  checkpoint.save_dir="${SAVE_DIR:-checkpoints/$STRATEGY}" \
  distributed_training.distributed_world_size="$NGPU" \
  distributed_training.distributed_init_method=env:// \
  distributed_training.distributed_no_spawn=true \
  'distributed_training.distributed_rank=${oc.env:RANK}' \
  'distributed_training.device_id=${oc.env:LOCAL_RANK}' \
  distributed_training.distributed_backend=nccl \
  "$@"
