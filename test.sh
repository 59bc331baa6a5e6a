#!/usr/bin/env bash
# Runs the test suite (sets up .venv first if the current Python lacks the requirements).
#   bash test.sh           every test, one pytest-xdist worker per core (what CI runs)
#   bash test.sh --quick   the unit-level tests only (no training, compiling or processes): the inner loop
# Further arguments go to pytest (e.g. tests/test_grid.py, -k crd, --durations=25, -n 0 for one process).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/python_env.sh "pytest, xdist"
# glibc's malloc hands every large freed block (a batch's activations, its gradients) back to the
# kernel and faults it in again, zeroed, at the next step (10-40 % of a one-thread CPU step). Freed
# memory is kept for reuse instead (the arithmetic is unchanged; a process keeps its peak heap).
export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647:glibc.malloc.top_pad=268435456"
args=()
for a in "$@"; do
    if [ "$a" = "--quick" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
"$PY" -m pytest -q -n "${TEST_WORKERS:-auto}" --dist loadgroup --no-loadscope-reorder "${args[@]+"${args[@]}"}"
