#!/usr/bin/env bash
# The main job on the embedded default dataset (scikit-learn's handwritten digits, no download):
# trains a teacher with the reference recipe (shortened), then reports where the run was written.
# Edit the variables below (or set them in the environment) to change the job, as in the
# reference launchers. With DATASET=cifar100 the full reference recipe runs (240 epochs).
set -euo pipefail
cd "$(dirname "$0")"

DATASET=${DATASET:-digits}              # digits | cifar100
DATA_ROOT=${DATA_ROOT:-./data}          # holds cifar-100-python/ for cifar100
TEACHER=${TEACHER:-resnet20}            # any name of models.names()
TEACHER_EPOCHS=${TEACHER_EPOCHS:-15}    # 240 for the reference recipe
TEACHER_DECAY=${TEACHER_DECAY:-10,13}   # 150,180,210 for the reference recipe
GPU=${GPU:-}                            # e.g. 0 (sets CUDA_VISIBLE_DEVICES); empty: CUDA if present, else CPU
SEED=${SEED:-0}
SAVE_DIR=${SAVE_DIR:-./save/run_sh/$(date +%Y%m%d-%H%M%S)}

if [ -n "$GPU" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
source scripts/python_env.sh

echo "== teacher: $TEACHER on $DATASET ($TEACHER_EPOCHS epochs)"
"$PY" train_teacher.py --dataset "$DATASET" --data-root "$DATA_ROOT" --arch "$TEACHER" \
    --epochs "$TEACHER_EPOCHS" --lr-decay-epochs "$TEACHER_DECAY" --seed "$SEED" \
    --save-dir "$SAVE_DIR" --name "teacher_$TEACHER" --save-every 0 --no-progress

"$PY" - "$SAVE_DIR" <<'PYEOF'
import json, sys, os
folder = os.path.join(sys.argv[1], [n for n in os.listdir(sys.argv[1]) if n.startswith("teacher_")][0])
s = json.load(open(os.path.join(folder, "summary.json")))
print(f"\nteacher {s['arch']} on {s['dataset']}: test top-1 {s['last']['top1']:.2f} "
      f"(best {s['best']['top1']:.2f} at epoch {s['best']['epoch']})")
print(f"run written to {os.path.abspath(folder)}")
PYEOF
