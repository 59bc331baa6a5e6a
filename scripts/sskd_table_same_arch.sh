#!/usr/bin/env bash
# SSKD paper, Table "same architecture" (CIFAR-100 top-1): wrn_40_2->wrn_16_2, wrn_40_2->wrn_40_1,
# resnet56->resnet20, resnet32x4->resnet8x4, vgg13->vgg8 x {student, KD, FitNet, AT, SP, VID, RKD,
# PKT, AB, FT, CRD, SSKD}. Runs through scripts/run_table.py: run it again to continue an
# interrupted table. Edit the variables (or set them in the environment); an empty one
# leaves the runner's default (`python scripts/run_table.py sskd --help` shows it).
TABLE=same_architecture
DATA_ROOT=${DATA_ROOT:-}                  # holds cifar-100-python/ (DOWNLOAD=1 fetches it)
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
SEEDS=${SEEDS:-}                          # e.g. "0 1 2" for three runs per cell
TEACHER_SEED=${TEACHER_SEED:-}
EPOCHS=${EPOCHS:-}                        # empty: each method's recipe (240)
TEACHER_CKPT=${TEACHER_CKPT:-}            # SSKD used the best-test-epoch teacher; RepDistiller the last
PRETRAINED_TEACHERS=${PRETRAINED_TEACHERS:-}  # folder of RepDistiller's <arch>_vanilla/ckpt_epoch_240.pth
PAIRS=${PAIRS:-}                          # empty: the table's pairs (grid/tables.py SSKD_PAIRS), e.g.
                                          # "resnet56:resnet20 vgg13:vgg8"
ROWS=${ROWS:-}                            # empty: the paper's (student KD FitNet AT SP VID RKD PKT AB FT
                                          # CRD SSKD); later rows: DKD ReviewKD DIST KD+LS DKD+LS
BASELINES=${BASELINES:-}                  # plus_kd: method + KD as the SSKD table; alone: RepDistiller's
KD_WEIGHT=${KD_WEIGHT:-}                  # alpha of the "+KD" baselines (RepDistiller's CRD+KD recipe)
METRIC=${METRIC:-}                        # SSKD reports the best epoch; RepDistiller the last
EXTRA_ARGS=${EXTRA_ARGS:-}                # appended to every command, e.g. "--amp"
STUDENT_ARGS=${STUDENT_ARGS:-}            # appended to student commands only, e.g. "--t-epochs 30"
DRY_RUN=${DRY_RUN:-0}                     # 1: print the commands only
STATUS=${STATUS:-0}                       # 1: print every cell's state (done / running / queued / failed)
source "$(dirname "$0")/sskd_table_lib.sh"
