#!/usr/bin/env bash
# SSKD paper, Table "cross architecture" (CIFAR-100 top-1): vgg13->MobileNetV2, ResNet50->MobileNetV2,
# ResNet50->vgg8, resnet32x4->ShuffleV1, resnet32x4->ShuffleV2, wrn_40_2->ShuffleV1 x {student, KD,
# FitNet, AT, SP, VID, RKD, PKT, AB, FT, CRD, SSKD}. Students MobileNetV2/ShuffleV1/ShuffleV2 use
# lr 0.01 as in the reference. Runs through scripts/run_table.py: run it again to continue
# an interrupted table. Edit the variables (or set them in the environment); an empty one
# leaves the runner's default (`python scripts/run_table.py sskd --help` shows it).
TABLE=cross_architecture
DATA_ROOT=${DATA_ROOT:-}
DOWNLOAD=${DOWNLOAD:-0}
GPUS=${GPUS:-0}                           # local executor: comma list of GPU ids ("" = CPU processes)
PER_GPU=${PER_GPU:-1}                     # cells sharing one GPU (a CIFAR student uses a fraction of one)
WORKERS=${WORKERS:-1}                     # concurrent cells when GPUS is empty
EXECUTOR=${EXECUTOR:-local}               # local | slurm (one SLURM job per cell, via submitit)
SLURM_PARTITION=${SLURM_PARTITION:-}
SLURM_TIME_MIN=${SLURM_TIME_MIN:-1440}    # per cell; a cell that hits it checkpoints and is requeued
SLURM_GPUS_PER_CELL=${SLURM_GPUS_PER_CELL:-1}
SLURM_CPUS_PER_CELL=${SLURM_CPUS_PER_CELL:-8}
SLURM_ACCOUNT=${SLURM_ACCOUNT:-}
SLURM_QOS=${SLURM_QOS:-}
SLURM_MAX_RUNNING=${SLURM_MAX_RUNNING:-}  # at most this many cells at once
SAVE_DIR=${SAVE_DIR:-./save/tables}
SEEDS=${SEEDS:-}
TEACHER_SEED=${TEACHER_SEED:-}
EPOCHS=${EPOCHS:-}                        # empty: each method's recipe (240)
TEACHER_CKPT=${TEACHER_CKPT:-}
PRETRAINED_TEACHERS=${PRETRAINED_TEACHERS:-}
PAIRS=${PAIRS:-}                          # empty: the table's pairs (grid/tables.py SSKD_PAIRS), e.g.
                                          # "resnet56:resnet20 vgg13:vgg8"
ROWS=${ROWS:-}                            # empty: the paper's (student KD FitNet AT SP VID RKD PKT AB FT
                                          # CRD SSKD); later rows: DKD ReviewKD DIST KD+LS DKD+LS
BASELINES=${BASELINES:-}
KD_WEIGHT=${KD_WEIGHT:-}
METRIC=${METRIC:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
STUDENT_ARGS=${STUDENT_ARGS:-}
DRY_RUN=${DRY_RUN:-0}                     # 1: print the commands only
STATUS=${STATUS:-0}                       # 1: print every cell's state (done / running / queued / failed)
source "$(dirname "$0")/sskd_table_lib.sh"
