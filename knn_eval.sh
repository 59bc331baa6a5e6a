#!/usr/bin/env bash
# k-NN evaluation (k = 1 and 20) of a SimReg student's backbone, as the reference's knn_eval.sh.
# Edit the variables (or set them in the environment).
set -euo pipefail
cd "$(dirname "$0")"
EXP_NAME=${EXP_NAME:-simreg_moco_r50_to_r18}
SAVE_DIR=${SAVE_DIR:-./save/simreg}
EPOCH=${EPOCH:-130}                          # which ckpt/epoch_<EPOCH>.pth; EPOCH=last for ckpt/last.pth
DATASET=${DATASET:-imagenet}                 # imagenet | imagenet100 | cifar100 | digits
DATA_ROOT=${DATA_ROOT:-./data/imagenet}
K=${K:-1,20}
BATCH_SIZE=${BATCH_SIZE:-512}
GPU=${GPU:-0}
if [ -n "$GPU" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
source scripts/python_env.sh
CKPT="$SAVE_DIR/$EXP_NAME/ckpt/epoch_${EPOCH}.pth"
[ "$EPOCH" = last ] && CKPT="$SAVE_DIR/$EXP_NAME/ckpt/last.pth"
"$PY" eval_knn.py --checkpoint "$CKPT" --dataset "$DATASET" --data-root "$DATA_ROOT" -k "$K" \
    --batch-size "$BATCH_SIZE" ${EXTRA_ARGS:-}
