#!/usr/bin/env bash
# The SimReg table (core/paper_tables.json "simreg_table"): per row, the teacher's features
# cached (rows 2-4, as the paper; torchrun), the SimReg student trained (torchrun; the method's
# recipe: 130 epochs, batch 256, lr 0.05 cosine, wd 1e-4, 4-layer head, one weak view shared by
# teacher and student), then 1-NN / 20-NN and the linear probe; the report puts our numbers beside
# the published ones. Runs through scripts/run_table.py: rows run side by side when there are GPUs
# for them, and running it again continues an interrupted table. Edit the variables (or set them
# in the environment); an empty one leaves the runner's default (`python scripts/run_table.py
# simreg --help` shows it).
ROWS=${ROWS:-}                              # rows of the table: 0 MoCo->MobileNetV2, 1 MoCo->R18,
                                            # 2 SimCLRx4->R50, 3 BYOL->R18, 4 SwAV->R18
SEEDS=${SEEDS:-}                            # e.g. "0 1 2"
DATA_ROOT=${DATA_ROOT:-}                    # ImageFolder with train/ and val/
DATASET=${DATASET:-}                        # imagenet | imagenet100
WEIGHTS_DIR=${WEIGHTS_DIR:-}                # the teachers' published files (names in grid/tables.py)
CACHED=${CACHED:-}                          # 0/1 for every row; empty: as the paper (rows 2-4 cached)
N_MLP_LAYERS=${N_MLP_LAYERS:-}             # empty: the method's own (4); also EPOCHS (130) and
EPOCHS=${EPOCHS:-}                          # BATCH_SIZE (256, the global batch over the NPROC
BATCH_SIZE=${BATCH_SIZE:-}                  # processes of a cell): see train_student.py --help
NPROC=${NPROC:-}                            # processes (GPUs) per node of a training / caching cell
NODES=${NODES:-}                            # nodes per training / caching cell (EXECUTOR=slurm)
GPUS=${GPUS:-0,1,2,3}                       # local executor: the GPUs the cells share out
PER_GPU=${PER_GPU:-1}
WORKERS=${WORKERS:-1}                       # concurrent cells when GPUS is empty (CPU processes)
EXECUTOR=${EXECUTOR:-local}                 # local | slurm (one SLURM job per cell, via submitit)
SLURM_PARTITION=${SLURM_PARTITION:-}
SLURM_TIME_MIN=${SLURM_TIME_MIN:-4320}      # per cell; a cell that hits it checkpoints and is requeued
SLURM_GPUS_PER_CELL=${SLURM_GPUS_PER_CELL:-1}   # per process: a cell of NPROC processes gets NPROC x this
SLURM_CPUS_PER_CELL=${SLURM_CPUS_PER_CELL:-32}
SLURM_ACCOUNT=${SLURM_ACCOUNT:-}
SLURM_QOS=${SLURM_QOS:-}
SLURM_MAX_RUNNING=${SLURM_MAX_RUNNING:-}
SAVE_DIR=${SAVE_DIR:-./save/simreg}
EXTRA_ARGS=${EXTRA_ARGS:-}                  # caching and training, e.g. "--amp bf16 --workers 16"
KNN_ARGS=${KNN_ARGS:-}
LINEAR_ARGS=${LINEAR_ARGS:-}                # e.g. "--use-cache"
DRY_RUN=${DRY_RUN:-0}                       # 1: print the commands only
STATUS=${STATUS:-0}                         # 1: print every cell's state

source "$(dirname "$0")/launcher_flags.sh"
args=(simreg --out "$SAVE_DIR")
# empty variables: the runner's defaults, which are SimRegTable's fields (and the method's own)
flag --rows "$ROWS"; flag --seeds "$SEEDS"; flag --dataset "$DATASET"; flag --data-root "$DATA_ROOT"
flag --weights-dir "$WEIGHTS_DIR"; flag --cached "$CACHED"; flag --mlp-layers "$N_MLP_LAYERS"
flag --epochs "$EPOCHS"; flag --batch-size "$BATCH_SIZE"; flag --nproc-per-node "$NPROC"; flag --nodes "$NODES"
flag --extra-args "$EXTRA_ARGS"; flag --knn-args "$KNN_ARGS"; flag --linear-args "$LINEAR_ARGS"
source "$(dirname "$0")/table_launcher_lib.sh"
