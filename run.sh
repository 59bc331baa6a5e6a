#!/usr/bin/env bash
# The main job on the embedded default dataset (scikit-learn's handwritten digits, no download):
# trains a teacher with the reference recipe (shortened), distils a student from it with KD and
# with SSKD, trains a SimReg student on the teacher's features and evaluates its backbone by 1-NN
# and a linear probe, and prints a small table. About 3 minutes on a 2-core CPU.
# Edit the variables below (or set them in the environment) to change the job, as in the
# reference launchers; DATASET=cifar100 with the reference epochs runs the real recipe on a GPU.
# DATASET=imagenet (or imagenet100) runs SimReg's ImageNet recipe instead, as the SimReg
# repository's run.sh: the variables of that block are below.
set -euo pipefail
cd "$(dirname "$0")"

DATASET=${DATASET:-digits}               # digits | cifar100 | imagenet | imagenet100
DATA_ROOT=${DATA_ROOT:-./data}           # holds cifar-100-python/ for cifar100
TEACHER=${TEACHER:-resnet14}             # any name of models.names()
STUDENT=${STUDENT:-resnet8}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-12}     # reference: 240
TEACHER_DECAY=${TEACHER_DECAY:-8,10}     # reference: 150,180,210
STUDENT_EPOCHS=${STUDENT_EPOCHS:-8}      # reference: 240
STUDENT_DECAY=${STUDENT_DECAY:-5,7}      # reference: 150,180,210
HEAD_EPOCHS=${HEAD_EPOCHS:-8}            # SSKD teacher-head phase; reference: 60
HEAD_DECAY=${HEAD_DECAY:-4,6}            # reference: 30,45
SIMREG_EPOCHS=${SIMREG_EPOCHS:-8}        # reference (ImageNet): 130, cosine schedule
LINEAR_EPOCHS=${LINEAR_EPOCHS:-40}       # linear probe on cached features, lr x0.1 after 15 and 30
GPU=${GPU:-}                             # e.g. 0 (sets CUDA_VISIBLE_DEVICES); empty: CUDA if present, else CPU
SEED=${SEED:-0}
SAVE_DIR=${SAVE_DIR:-./save/run_sh/$(date +%Y%m%d-%H%M%S)}

# --- SimReg on ImageNet (DATASET=imagenet|imagenet100), the reference run.sh's variables
EXP_NAME=${EXP_NAME:-simreg_moco_r50_to_r18}
ARCH_TEACHER_FORMAT=${ARCH_TEACHER_FORMAT:-moco}     # moco swav byol byol_ssl_transfer simclr_x4 simclr_x4_flat supervised
ARCH_STUDENT=${ARCH_STUDENT:-resnet18}               # resnet18 | resnet50 | mobilenet_v2
TEACHER_WEIGHTS=${TEACHER_WEIGHTS:-./weights/moco_v2_800ep_pretrain.pth.tar}
N_MLP_LAYERS=${N_MLP_LAYERS:-}                       # empty: the method's own (4-layer head)
SIMREG_IMAGENET_EPOCHS=${SIMREG_IMAGENET_EPOCHS:-}   # empty: the method's recipe (130 epochs, batch 256)
GPUS=${GPUS:-4}                                      # processes under torchrun (one per GPU)

if [ -n "$GPU" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
source scripts/python_env.sh

if [ "$DATASET" = imagenet ] || [ "$DATASET" = imagenet100 ]; then
    set_flags=()
    if [ -n "$N_MLP_LAYERS" ]; then set_flags+=(--mlp-layers "$N_MLP_LAYERS"); fi
    if [ -n "$SIMREG_IMAGENET_EPOCHS" ]; then set_flags+=(--epochs "$SIMREG_IMAGENET_EPOCHS"); fi
    "$PY" -m torch.distributed.run --nproc_per_node "$GPUS" train_student.py --method simreg \
        --dataset "$DATASET" --data-root "$DATA_ROOT" --teacher "$TEACHER_WEIGHTS" \
        --teacher-format "$ARCH_TEACHER_FORMAT" --student "$ARCH_STUDENT" "${set_flags[@]+"${set_flags[@]}"}" \
        --aug weak_weak --single-aug \
        --save-dir ./save/simreg --name "$EXP_NAME" --seed "$SEED"
    echo "then: EXP_NAME=$EXP_NAME bash knn_eval.sh; EXP_NAME=$EXP_NAME bash lin_eval.sh"
    exit 0
fi

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

echo "== student: $STUDENT trained with SimReg on the teacher's features ($SIMREG_EPOCHS epochs)"
"$PY" train_student.py "${COMMON[@]}" --method simreg --teacher "$SAVE_DIR/teacher/ckpt/last.pth" \
    --student "$STUDENT" --epochs "$SIMREG_EPOCHS" --batch-size 64 --name student_simreg
"$PY" eval_knn.py --checkpoint "$SAVE_DIR/student_simreg/ckpt/last.pth" --dataset "$DATASET" \
    --data-root "$DATA_ROOT" -k 1,20
"$PY" eval_linear.py --checkpoint "$SAVE_DIR/student_simreg/ckpt/last.pth" --dataset "$DATASET" \
    --data-root "$DATA_ROOT" --use-cache --epochs "$LINEAR_EPOCHS" --no-progress --eval-every 10

echo
"$PY" scripts/make_table.py --runs "$SAVE_DIR" --title "$DATASET: teacher $TEACHER, student $STUDENT"
echo "runs written to $(cd "$SAVE_DIR" && pwd)"
