#!/usr/bin/env bash
# The main job on the embedded default dataset (scikit-learn's handwritten digits, no download):
# trains a teacher with the reference recipe (shortened), distils a student from it with KD and
# with SSKD, and prints a small table. About 2-3 minutes on a 2-core CPU.
# Edit the variables below (or set them in the environment) to change the job, as in the
# reference launchers; DATASET=cifar100 with the reference epochs runs the real recipe on a GPU.
set -euo pipefail
cd "$(dirname "$0")"

DATASET=${DATASET:-digits}               # digits | cifar100
DATA_ROOT=${DATA_ROOT:-./data}           # holds cifar-100-python/ for cifar100
TEACHER=${TEACHER:-resnet14}             # any name of models.names()
STUDENT=${STUDENT:-resnet8}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-12}     # reference: 240
TEACHER_DECAY=${TEACHER_DECAY:-8,10}     # reference: 150,180,210
STUDENT_EPOCHS=${STUDENT_EPOCHS:-8}      # reference: 240
STUDENT_DECAY=${STUDENT_DECAY:-5,7}      # reference: 150,180,210
HEAD_EPOCHS=${HEAD_EPOCHS:-8}            # SSKD teacher-head phase; reference: 60
HEAD_DECAY=${HEAD_DECAY:-4,6}            # reference: 30,45
GPU=${GPU:-}                             # e.g. 0 (sets CUDA_VISIBLE_DEVICES); empty: CUDA if present, else CPU
SEED=${SEED:-0}
SAVE_DIR=${SAVE_DIR:-./save/run_sh/$(date +%Y%m%d-%H%M%S)}

if [ -n "$GPU" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
source scripts/python_env.sh
COMMON=(--dataset "$DATASET" --data-root "$DATA_ROOT" --seed "$SEED" --save-dir "$SAVE_DIR" --save-every 0 --no-progress)

echo "== teacher: $TEACHER on $DATASET ($TEACHER_EPOCHS epochs)"
"$PY" train_teacher.py "${COMMON[@]}" --arch "$TEACHER" --epochs "$TEACHER_EPOCHS" \
    --lr-decay-epochs "$TEACHER_DECAY" --name teacher
for METHOD in kd sskd; do
    echo "== student: $STUDENT distilled with $METHOD ($STUDENT_EPOCHS epochs)"
    "$PY" train_student.py "${COMMON[@]}" --method "$METHOD" --teacher "$SAVE_DIR/teacher/ckpt/last.pth" \
        --student "$STUDENT" --epochs "$STUDENT_EPOCHS" --lr-decay-epochs "$STUDENT_DECAY" \
        --t-epochs "$HEAD_EPOCHS" --t-milestones "$HEAD_DECAY" --name "student_$METHOD"
done

"$PY" scripts/make_table.py --runs "$SAVE_DIR" --title "$DATASET: teacher $TEACHER, student $STUDENT"
echo "runs written to $(cd "$SAVE_DIR" && pwd)"
