#!/usr/bin/env bash
# Linear evaluation of a SimReg student's backbone, as the reference's lin_eval.sh (40 epochs,
# lr 0.01, x0.1 after 15 and 30). USE_CACHE=1 trains on cached centre-crop features (faster).
# Edit the variables (or set them in the environment).
set -euo pipefail
cd "$(dirname "$0")"
EXP_NAME=${EXP_NAME:-simreg_moco_r50_to_r18}
SAVE_DIR=${SAVE_DIR:-./save/simreg}
EPOCH=${EPOCH:-130}                          # which ckpt/epoch_<EPOCH>.pth; EPOCH=last for ckpt/last.pth
DATASET=${DATASET:-imagenet}
DATA_ROOT=${DATA_ROOT:-./data/imagenet}
USE_CACHE=${USE_CACHE:-0}
EVAL_EVERY=${EVAL_EVERY:-40}                 # the reference evaluates after the first and the last epoch
GPU=${GPU:-0}
if [ -n "$GPU" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
source scripts/python_env.sh
CKPT="$SAVE_DIR/$EXP_NAME/ckpt/epoch_${EPOCH}.pth"
[ "$EPOCH" = last ] && CKPT="$SAVE_DIR/$EXP_NAME/ckpt/last.pth"
CACHE=(); [ "$USE_CACHE" = 1 ] && CACHE=(--use-cache)
"$PY" eval_linear.py --checkpoint "$CKPT" --dataset "$DATASET" --data-root "$DATA_ROOT" \
    --eval-every "$EVAL_EVERY" ${CACHE[@]+"${CACHE[@]}"} ${EXTRA_ARGS:-}
