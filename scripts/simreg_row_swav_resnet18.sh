#!/usr/bin/env bash
# SimReg table row: SwAV ResNet-50 (400 ep, bs 256) -> ResNet-18 (cached teacher).
# Trains the SimReg student on ImageNet (130 epochs, batch 256, lr 0.05 cosine, wd 1e-4, 4-layer
# head, one weak view shared by teacher and student), then 1-NN / 20-NN and linear evaluation.
# Edit the variables (or set them in the environment); DRY_RUN=1 prints the commands only.
ROW=4                                        # row of scripts/paper_tables.json simreg_table
DATA_ROOT=${DATA_ROOT:-./data/imagenet}             # ImageFolder with train/ and val/
DATASET=${DATASET:-imagenet}                        # imagenet | imagenet100
TEACHER_WEIGHTS=${TEACHER_WEIGHTS:-./weights/swav_400ep_bs256_pretrain.pth.tar}
TEACHER_FORMAT=${TEACHER_FORMAT:-swav}
STUDENT=${STUDENT:-resnet18}
CACHED=${CACHED:-1}                         # 1: cache the teacher's features first, as the paper
N_MLP_LAYERS=${N_MLP_LAYERS:-4}
EPOCHS=${EPOCHS:-130}
BATCH_SIZE=${BATCH_SIZE:-256}                       # global batch over the GPUS processes
GPUS=${GPUS:-4}
GPU_IDS=${GPU_IDS:-}                                # e.g. 0,1,2,3
SAVE_DIR=${SAVE_DIR:-./save/simreg}
EXP_NAME=${EXP_NAME:-simreg_swav_resnet18}
EXTRA_ARGS=${EXTRA_ARGS:-}                          # e.g. "--amp --workers 16"
LINEAR_ARGS=${LINEAR_ARGS:-}                        # e.g. "--use-cache"
DRY_RUN=${DRY_RUN:-0}
source "$(dirname "$0")/simreg_row_lib.sh"
