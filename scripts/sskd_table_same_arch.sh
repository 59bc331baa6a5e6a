#!/usr/bin/env bash
# SSKD paper, Table "same architecture" (CIFAR-100 top-1): wrn_40_2->wrn_16_2, wrn_40_2->wrn_40_1,
# resnet56->resnet20, resnet32x4->resnet8x4, vgg13->vgg8 x {student, KD, FitNet, AT, SP, VID, RKD,
# PKT, AB, FT, CRD, SSKD}. Edit the variables (or set them in the environment); DRY_RUN=1 prints
# the commands without running them.
TABLE=same_architecture
DATA_ROOT=${DATA_ROOT:-./data}            # holds cifar-100-python/ (DOWNLOAD=1 fetches it)
DOWNLOAD=${DOWNLOAD:-0}
GPU=${GPU:-0}
SAVE_DIR=${SAVE_DIR:-./save/tables}
SEEDS=${SEEDS:-"0"}                       # e.g. "0 1 2" for three runs per cell
TEACHER_SEED=${TEACHER_SEED:-0}
EPOCHS=${EPOCHS:-240}
TEACHER_CKPT=${TEACHER_CKPT:-best}        # SSKD used the best-test-epoch teacher; RepDistiller the last
PRETRAINED_TEACHERS=${PRETRAINED_TEACHERS:-}  # folder of RepDistiller's <arch>_vanilla/ckpt_epoch_240.pth
PAIRS=${PAIRS:-"wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20 resnet32x4:resnet8x4 vgg13:vgg8"}
ROWS=${ROWS:-"student KD FitNet AT SP VID RKD PKT AB FT CRD SSKD"}
BASELINES=${BASELINES:-plus_kd}           # plus_kd: method + KD as the SSKD table; alone: RepDistiller's
KD_WEIGHT=${KD_WEIGHT:-1}                 # alpha of the "+KD" baselines (RepDistiller's CRD+KD recipe)
METRIC=${METRIC:-best}                    # SSKD reports the best epoch; RepDistiller the last
EXTRA_ARGS=${EXTRA_ARGS:-}                # appended to every command, e.g. "--amp"
STUDENT_ARGS=${STUDENT_ARGS:-}            # appended to student commands only, e.g. "--t-epochs 30"
DRY_RUN=${DRY_RUN:-0}
source "$(dirname "$0")/sskd_table_lib.sh"
