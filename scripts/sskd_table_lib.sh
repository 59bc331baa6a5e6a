# Shared by the SSKD table launchers (sourced; the launcher sets TABLE, PAIRS and the variables
# below first): one scripts/run_table.py command, which expands the table into cells (teachers
# before their students), runs them on the local GPUs / CPU processes or on SLURM, continues where
# it stopped when run again, and writes the report (markdown, CSV, PNG) under $SAVE_DIR/$TABLE.
args=(sskd --table "$TABLE" --seeds "$SEEDS" --data-root "$DATA_ROOT" --teacher-seed "$TEACHER_SEED" --teacher-ckpt "$TEACHER_CKPT" --baselines "$BASELINES"
      --kd-weight "$KD_WEIGHT" --metric "$METRIC" --extra-args "$EXTRA_ARGS" --student-args "$STUDENT_ARGS"
      --out "$SAVE_DIR/$TABLE")
# empty PAIRS / ROWS / EPOCHS: the runner's defaults, which are the table's and the methods' own
if [ -n "$PAIRS" ]; then args+=(--pairs "$PAIRS"); fi
if [ -n "$ROWS" ]; then args+=(--rows "$ROWS"); fi
if [ -n "$EPOCHS" ]; then args+=(--epochs "$EPOCHS"); fi
if [ "$DOWNLOAD" = "1" ]; then args+=(--download); fi
if [ -n "$PRETRAINED_TEACHERS" ]; then args+=(--pretrained-teachers "$PRETRAINED_TEACHERS"); fi
source "$(dirname "${BASH_SOURCE[0]}")/table_launcher_lib.sh"
