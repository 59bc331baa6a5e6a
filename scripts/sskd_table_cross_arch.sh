#!/usr/bin/env bash
# SSKD paper, Table "cross architecture" (CIFAR-100 top-1): vgg13->MobileNetV2, ResNet50->MobileNetV2,
# ResNet50->vgg8, resnet32x4->ShuffleV1, resnet32x4->ShuffleV2, wrn_40_2->ShuffleV1 x {student, KD,
# FitNet, AT, SP, VID, RKD, PKT, AB, FT, CRD, SSKD}. Students MobileNetV2/ShuffleV1/ShuffleV2 use
# lr 0.01 as in the reference. Edit the variables (or set them in the environment); DRY_RUN=1
# prints the commands without running them.
TABLE=cross_architecture
DATA_ROOT=${DATA_ROOT:-./data}
DOWNLOAD=${DOWNLOAD:-0}
GPU=${GPU:-0}
SAVE_DIR=${SAVE_DIR:-./save/tables}
SEEDS=${SEEDS:-"0"}
TEACHER_SEED=${TEACHER_SEED:-0}
EPOCHS=${EPOCHS:-240}
TEACHER_CKPT=${TEACHER_CKPT:-best}
PRETRAINED_TEACHERS=${PRETRAINED_TEACHERS:-}
PAIRS=${PAIRS:-"vgg13:MobileNetV2 ResNet50:MobileNetV2 ResNet50:vgg8 resnet32x4:ShuffleV1 resnet32x4:ShuffleV2 wrn_40_2:ShuffleV1"}
ROWS=${ROWS:-"student KD FitNet AT SP VID RKD PKT AB FT CRD SSKD"}
BASELINES=${BASELINES:-plus_kd}
KD_WEIGHT=${KD_WEIGHT:-1}
METRIC=${METRIC:-best}
EXTRA_ARGS=${EXTRA_ARGS:-}
STUDENT_ARGS=${STUDENT_ARGS:-}
DRY_RUN=${DRY_RUN:-0}
source "$(dirname "$0")/sskd_table_lib.sh"
