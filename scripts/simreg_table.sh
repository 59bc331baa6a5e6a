#!/usr/bin/env bash
# The SimReg table (scripts/paper_tables.json "simreg_table"), one row after another: for each row
# optionally cache the teacher's features (torchrun), train the SimReg student (torchrun; the
# method's recipe: 130 epochs, batch 256, lr 0.05 cosine, wd 1e-4, 4-layer head, one weak view
# shared by teacher and student), evaluate 1-NN / 20-NN and the linear probe, and print our numbers
# beside the published ones. A row whose summary.json exists is not trained again; an interrupted
# one resumes from its last checkpoint.
# Edit the variables (or set them in the environment); DRY_RUN=1 prints the commands only.
ROWS=${ROWS:-"0 1 2 3 4"}                   # rows of the table: 0 MoCo->MobileNetV2, 1 MoCo->R18,
                                            # 2 SimCLRx4->R50, 3 BYOL->R18, 4 SwAV->R18
DATA_ROOT=${DATA_ROOT:-./data/imagenet}     # ImageFolder with train/ and val/
DATASET=${DATASET:-imagenet}                # imagenet | imagenet100
WEIGHTS_DIR=${WEIGHTS_DIR:-./weights}       # the teachers' published files (names below)
CACHED=${CACHED:-}                          # 0/1 for every row; empty: as the paper (rows 2-4 cached)
N_MLP_LAYERS=${N_MLP_LAYERS:-4}
EPOCHS=${EPOCHS:-130}
BATCH_SIZE=${BATCH_SIZE:-256}               # global batch over the GPUS processes
GPUS=${GPUS:-4}
GPU_IDS=${GPU_IDS:-}                        # e.g. 0,1,2,3
SAVE_DIR=${SAVE_DIR:-./save/simreg}
EXTRA_ARGS=${EXTRA_ARGS:-}                  # e.g. "--amp --workers 16"
LINEAR_ARGS=${LINEAR_ARGS:-}                # e.g. "--use-cache"
DRY_RUN=${DRY_RUN:-0}

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
run() {
    echo "$*"
    if [ "$DRY_RUN" != "1" ]; then "$@"; fi
}
if [ "$DRY_RUN" = "1" ]; then PY=${PY:-python}; else source scripts/python_env.sh; fi
if [ -n "$GPU_IDS" ]; then export CUDA_VISIBLE_DEVICES=$GPU_IDS; fi
LAUNCH=("$PY" -m torch.distributed.run --nproc_per_node "$GPUS")

for ROW in $ROWS; do
    # row -> teacher file, its format, the student, cached as in the paper, run name
    case "$ROW" in
        0) row=(moco_v2_800ep_pretrain.pth.tar moco mobilenet_v2 0 simreg_moco_mobilenet) ;;
        1) row=(moco_v2_800ep_pretrain.pth.tar moco resnet18 0 simreg_moco_resnet18) ;;
        2) row=(simclr_r50x4.pth simclr_x4_flat resnet50 1 simreg_simclr_resnet50) ;;
        3) row=(byol_r50_converted.pth byol resnet18 1 simreg_byol_resnet18) ;;
        4) row=(swav_400ep_bs256_pretrain.pth.tar swav resnet18 1 simreg_swav_resnet18) ;;
        *) echo "simreg_table.sh: no row $ROW (rows are 0-4)" >&2; exit 2 ;;
    esac
    teacher="$WEIGHTS_DIR/${row[0]}" format=${row[1]} student=${row[2]} cached=${CACHED:-${row[3]}}
    run_dir="$SAVE_DIR/${row[4]}"
    source=(--teacher "$teacher" --teacher-format "$format")
    if [ "$cached" = 1 ]; then
        prefix="$SAVE_DIR/teacher_feats/${format}_${DATASET}_train"
        if [ ! -f "$prefix.json" ]; then
            run "${LAUNCH[@]}" cache_features.py --teacher "$teacher" --teacher-format "$format" \
                --dataset "$DATASET" --data-root "$DATA_ROOT" --split train --out "$prefix" $EXTRA_ARGS
        fi
        source=(--teacher-feats "$prefix")
    fi
    if [ ! -f "$run_dir/summary.json" ]; then
        resume=(); [ -f "$run_dir/ckpt/last.pth" ] && resume=(--resume)
        run "${LAUNCH[@]}" train_student.py --method simreg --dataset "$DATASET" --data-root "$DATA_ROOT" \
            "${source[@]}" --student "$student" --mlp-layers "$N_MLP_LAYERS" --epochs "$EPOCHS" \
            --batch-size "$BATCH_SIZE" --save-dir "$SAVE_DIR" --name "${row[4]}" ${resume[@]+"${resume[@]}"} $EXTRA_ARGS
    fi
    run "$PY" eval_knn.py --checkpoint "$run_dir/ckpt/last.pth" --dataset "$DATASET" --data-root "$DATA_ROOT" -k 1,20
    run "$PY" eval_linear.py --checkpoint "$run_dir/ckpt/last.pth" --dataset "$DATASET" --data-root "$DATA_ROOT" \
        --eval-every 40 $LINEAR_ARGS
    run "$PY" scripts/make_table.py --runs "$run_dir" --simreg-row "$ROW"
done
