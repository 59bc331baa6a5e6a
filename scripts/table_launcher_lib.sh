# Sourced last by the table launchers, which have put their table's flags in the array `args`:
# adds the executor's flags from the launcher's variables and runs scripts/run_table.py.
# DRY_RUN=1 prints the commands, STATUS=1 prints every cell's state.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${DRY_RUN:-0}" = "1" ] || [ "${STATUS:-0}" = "1" ]; then PY=${PY:-python}; else source scripts/python_env.sh; fi
args+=(--executor "$EXECUTOR" --per-gpu "$PER_GPU" --workers "$WORKERS")
if [ -n "$GPUS" ]; then args+=(--gpus "$GPUS"); fi
if [ "$EXECUTOR" = "slurm" ]; then
    args+=(--time-min "$SLURM_TIME_MIN" --gpus-per-cell "$SLURM_GPUS_PER_CELL" --cpus-per-cell "$SLURM_CPUS_PER_CELL")
    if [ -n "$SLURM_PARTITION" ]; then args+=(--partition "$SLURM_PARTITION"); fi
    if [ -n "$SLURM_ACCOUNT" ]; then args+=(--account "$SLURM_ACCOUNT"); fi
    if [ -n "$SLURM_QOS" ]; then args+=(--qos "$SLURM_QOS"); fi
    if [ -n "$SLURM_MAX_RUNNING" ]; then args+=(--max-running "$SLURM_MAX_RUNNING"); fi
fi
if [ "${DRY_RUN:-0}" = "1" ]; then args+=(--dry-run); fi
if [ "${STATUS:-0}" = "1" ]; then args+=(--status); fi
exec "$PY" scripts/run_table.py "${args[@]}"
