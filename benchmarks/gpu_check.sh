#!/usr/bin/env bash
# GPU check (issue #17), to run on a machine with an NVIDIA GPU and a CUDA build of torch:
#   1. full-mode training of each chapter's models on CUDA, timed: float32, then float16 mixed precision
#      (autocast + GradScaler; Colab's T4 has float16 but no bfloat16)    -> benchmarks/gpu_check.py
#   2. every solution notebook executed on CUDA in full mode (MEM_TUTORIAL_FAST=0), timed; the executed copies
#      go to the output folder, the repository is not modified.
# Fails at once, with a clear message and status 2, when no CUDA device is visible.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]            # default OUT_DIR: gpu_check_out/
#   PYTHON=.venv/bin/python JUPYTER=.venv/bin/jupyter NOTEBOOK_TIMEOUT=3600 bash benchmarks/gpu_check.sh
#   SKIP_NOTEBOOKS=1 / SKIP_AMP=1 skip parts; SCALE=0.1 shortens the training sections.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check_out}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
JUPYTER="${JUPYTER:-$(dirname "$PY")/jupyter}"
SCALE="${SCALE:-1}"
NOTEBOOK_TIMEOUT="${NOTEBOOK_TIMEOUT:-3600}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: no CUDA device is available to $PY (torch.cuda.is_available() is False)." >&2
    echo "  Nothing was run. Needs an NVIDIA GPU and a CUDA build of torch (pip install torch from the CUDA index)." >&2
    exit 2
fi
mkdir -p "$OUT/notebooks"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"

echo "== 1a. training sections, float32"
"$PY" benchmarks/gpu_check.py --scale "$SCALE" --json "$OUT/train_fp32.json" || status=1
if [ -z "${SKIP_AMP:-}" ]; then
    echo "== 1b. training sections, float16 autocast"
    "$PY" benchmarks/gpu_check.py --amp --scale "$SCALE" --json "$OUT/train_amp_fp16.json" || status=1
fi

if [ -z "${SKIP_NOTEBOOKS:-}" ]; then
    echo "== 2. solution notebooks on CUDA, full mode (timeout ${NOTEBOOK_TIMEOUT}s per cell)"
    : > "$OUT/notebook_times.tsv"
    for nb in solutions/*/*.ipynb; do
        name="$(basename "$nb" .ipynb)"
        start=$(date +%s)
        if MEM_TUTORIAL_FAST=0 MEM_TUTORIAL_PROGRESS=0 "$JUPYTER" nbconvert --to notebook --execute \
                --ExecutePreprocessor.timeout="$NOTEBOOK_TIMEOUT" --ExecutePreprocessor.record_timing=False \
                --output-dir "$OUT/notebooks" --output "$name" "$nb" > "$OUT/notebooks/$name.log" 2>&1; then
            result=ok
        else
            result=FAILED; status=1
        fi
        # a notebook that picks a device (mem_tutorial.get_device prints its choice) must have chosen CUDA
        if [ "$result" = ok ] && grep -q 'using device' "$nb" && ! grep -q 'using device cuda' "$OUT/notebooks/$name.ipynb"; then
            result="ok-but-not-on-cuda"; status=1
        fi
        printf '%s\t%s\t%ss\n' "$nb" "$result" "$(( $(date +%s) - start ))" | tee -a "$OUT/notebook_times.tsv"
    done
fi
echo "gpu_check.sh: results in $OUT/ (status $status)"
exit $status
