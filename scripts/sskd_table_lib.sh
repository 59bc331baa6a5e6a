# Shared by the SSKD table launchers (sourced; the launcher sets TABLE, PAIRS and the variables
# below first): one scripts/run_table.py command, which expands the table into cells (teachers
# before their students), runs them on the local GPUs / CPU processes or on SLURM, continues where
# it stopped when run again, and writes the report (markdown, CSV, PNG) under $SAVE_DIR/$TABLE.
source "$(dirname "${BASH_SOURCE[0]}")/launcher_flags.sh"
args=(sskd --table "$TABLE" --out "$SAVE_DIR/$TABLE")
# empty variables: the runner's defaults, which are the table's (pairs, rows) and the grid's fields
flag --pairs "$PAIRS"; flag --rows "$ROWS"; flag --seeds "$SEEDS"; flag --epochs "$EPOCHS"
flag --data-root "$DATA_ROOT"; flag --teacher-seed "$TEACHER_SEED"; flag --teacher-ckpt "$TEACHER_CKPT"
flag --pretrained-teachers "$PRETRAINED_TEACHERS"; flag --baselines "$BASELINES"; flag --kd-weight "$KD_WEIGHT"
flag --metric "$METRIC"; flag --extra-args "$EXTRA_ARGS"; flag --student-args "$STUDENT_ARGS"
if [ "$DOWNLOAD" = "1" ]; then args+=(--download); fi
source "$(dirname "${BASH_SOURCE[0]}")/table_launcher_lib.sh"
