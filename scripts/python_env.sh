# Sourced by run.sh and test.sh: sets PY to a Python that has what the project needs.
# Uses the current Python when torch (>= 2.1) and torchvision import there together with the other
# requirements; otherwise creates .venv and installs requirements.txt (a pinned torch/torchvision
# pair: a CPU-only torch of another version cannot import the registry's torchvision).
_probe='import sys, torch, torchvision, numpy, sklearn, tqdm, matplotlib, submitit
sys.exit(0 if tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 1) else 1)'
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_extra="${1:-}"   # e.g. "pytest" for the test suite
if ${PYTHON:-python3} -c "$_probe${_extra:+; import $_extra}" >/dev/null 2>&1; then
    PY="${PYTHON:-python3}"
elif [ -x "$_root/.venv/bin/python" ] && "$_root/.venv/bin/python" -c "$_probe${_extra:+; import $_extra}" >/dev/null 2>&1; then
    PY="$_root/.venv/bin/python"
else
    echo "[setup] creating $_root/.venv and installing requirements.txt (first run only; downloads torch)" >&2
    ${PYTHON:-python3} -m venv "$_root/.venv"
    "$_root/.venv/bin/python" -m pip install --quiet --upgrade pip >&2 || true
    "$_root/.venv/bin/python" -m pip install --quiet -r "$_root/requirements.txt" >&2
    PY="$_root/.venv/bin/python"
fi
export PY
