#!/usr/bin/env bash
# GPU check of issue 12: ExtrapSGD's foreach path and one worker's ResNet-20 training loop on
# CUDA, with Python and torch alone (benchmarks/gpu_check.py says what it measures).
#
#   bash benchmarks/gpu_check.sh                       # CUDA when there is one; 1-2 minutes
#   bash benchmarks/gpu_check.sh --device cpu --quick  # smoke run on a CPU
#
# The JSON goes to $OUT/gpu_check.json when OUT is set (the device machines' output folder),
# else to stdout. PYTHON picks the interpreter (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    "$python" "$here/gpu_check.py" "$@" >"$OUT/gpu_check.json"
    echo "wrote $OUT/gpu_check.json" >&2
else
    exec "$python" "$here/gpu_check.py" "$@"
fi
