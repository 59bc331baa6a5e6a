# Shared by the SimReg table-row launchers (sourced after they set their variables): optionally
# caches the teacher's features (torchrun), trains the SimReg student (torchrun), evaluates 1-NN /
# 20-NN and the linear probe, and prints our numbers beside the published ones. DRY_RUN=1 prints
# the commands only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

run() {
    echo "$*"
    if [ "${DRY_RUN:-0}" != "1" ]; then "$@"; fi
}
if [ "${DRY_RUN:-0}" = "1" ]; then PY=${PY:-python}; else source scripts/python_env.sh; fi
if [ -n "${GPU_IDS:-}" ]; then export CUDA_VISIBLE_DEVICES=$GPU_IDS; fi
LAUNCH=("$PY" -m torch.distributed.run --nproc_per_node "$GPUS")
RUN_DIR="$SAVE_DIR/$EXP_NAME"
TEACHER_SOURCE=(--teacher "$TEACHER_WEIGHTS" --teacher-format "$TEACHER_FORMAT")
if [ "$CACHED" = 1 ]; then
    CACHE_PREFIX="$SAVE_DIR/teacher_feats/${TEACHER_FORMAT}_${DATASET}_train"
    if [ ! -f "$CACHE_PREFIX.json" ]; then
        run "${LAUNCH[@]}" cache_features.py --teacher "$TEACHER_WEIGHTS" --teacher-format "$TEACHER_FORMAT" \
            --dataset "$DATASET" --data-root "$DATA_ROOT" --split train --out "$CACHE_PREFIX" $EXTRA_ARGS
    fi
    TEACHER_SOURCE=(--teacher-feats "$CACHE_PREFIX")
fi
if [ ! -f "$RUN_DIR/summary.json" ]; then
    resume=(); [ -f "$RUN_DIR/ckpt/last.pth" ] && resume=(--resume)
    run "${LAUNCH[@]}" train_student.py --method simreg --dataset "$DATASET" --data-root "$DATA_ROOT" \
        "${TEACHER_SOURCE[@]}" --student "$STUDENT" --mlp-layers "$N_MLP_LAYERS" --epochs "$EPOCHS" \
        --batch-size "$BATCH_SIZE" --lr 0.05 --weight-decay 1e-4 --aug weak_weak --single-aug \
        --save-every 10 --save-dir "$SAVE_DIR" --name "$EXP_NAME" ${resume[@]+"${resume[@]}"} $EXTRA_ARGS
fi
run "$PY" eval_knn.py --checkpoint "$RUN_DIR/ckpt/last.pth" --dataset "$DATASET" --data-root "$DATA_ROOT" -k 1,20
run "$PY" eval_linear.py --checkpoint "$RUN_DIR/ckpt/last.pth" --dataset "$DATASET" --data-root "$DATA_ROOT" \
    --eval-every 40 $LINEAR_ARGS
run "$PY" scripts/make_table.py --runs "$RUN_DIR" --simreg-row "$ROW"
