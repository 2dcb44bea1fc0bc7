#!/usr/bin/env bash
# One-GPU throughput of MDLM-small under Di4C, at most 8 minutes on one H200 (see bench/gpu_step.py):
#   (a) bf16 training steps/s, tokens/s and model FLOP utilisation at batches 1, 2, 4, ... until OOM;
#   (b) sampling tokens/s of teacher and student (128 steps at batch 32, bf16 autocast and fp32).
# Needs only this repository and a Python environment with it installed (random weights, random
# tokens: no checkpoint, data or network). Results: ${OUT:-runs}/gpu.json, and a markdown table.
#   bash bench/gpu.sh                         # or: OUT=somewhere PYTHON=python bash bench/gpu.sh
#   bash bench/gpu.sh --peak-tflops 989       # extra arguments go to both parts (e.g. another GPU's peak)
# Each part runs under its own timeout; a part that times out keeps the rows it had measured, the
# table is printed anyway, and the script then exits with that part's status.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT_DIR=${OUT:-runs}
JSON="$OUT_DIR/gpu.json"
mkdir -p "$OUT_DIR"
rm -f "$JSON"
timeout 20 nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
status=0
timeout 270 "$PY" bench/gpu_step.py --part train --out "$JSON" "$@" || status=$?
timeout 150 "$PY" bench/gpu_step.py --part sample --out "$JSON" "$@" || status=$?
timeout 20 "$PY" bench/gpu_step.py --part table --out "$JSON"
exit "$status"
