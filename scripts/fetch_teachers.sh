#!/usr/bin/env bash
# The published CIFAR-100 teachers, ready for the SSKD table launchers: downloads RepDistiller's
# teachers (cifar_teachers.tar of mdistiller's release 'checkpoints'), unpacks them into
# $DEST/<arch>_vanilla/ckpt_epoch_240.pth, adds SSKD's teacher_<arch>_seed<k>/ckpt/best.pth folders
# when SSKD_DIR is given, and writes teacher.json beside each file (sha256, the accuracy the file
# records, its top-1 measured on the CIFAR-100 test set). Then run a launcher with
# PRETRAINED_TEACHERS=$DEST. Edit the variables (or set them in the environment).
DEST=${DEST:-./save/teachers}
TAR=${TAR:-}                    # an already downloaded cifar_teachers.tar (nothing is downloaded)
URL=${URL:-https://github.com/megvii-research/mdistiller/releases/download/checkpoints/cifar_teachers.tar}
SSKD_DIR=${SSKD_DIR:-}          # SSKD's shared teachers, downloaded by hand (a Google Drive folder)
DATA_ROOT=${DATA_ROOT:-./data}  # holds cifar-100-python/ for measuring the teachers
DOWNLOAD=${DOWNLOAD:-0}         # 1: download CIFAR-100 when missing
MEASURE=${MEASURE:-1}           # 0: record the hashes only
EXTRA_ARGS=${EXTRA_ARGS:-}      # e.g. "--device cuda"

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/python_env.sh
args=(--dest "$DEST" --url "$URL" --data-root "$DATA_ROOT")
if [ -n "$TAR" ]; then args+=(--tar "$TAR"); fi
if [ -n "$SSKD_DIR" ]; then args+=(--sskd "$SSKD_DIR"); fi
if [ "$DOWNLOAD" = "1" ]; then args+=(--download); fi
if [ "$MEASURE" = "0" ]; then args+=(--no-measure); fi
exec "$PY" scripts/fetch_teachers.py "${args[@]}" $EXTRA_ARGS
