#!/usr/bin/env bash
# Every GPU measurement in one run, for a machine lent for a few minutes: the GPU tests, then
# training throughput of a Llama-3.2-3B-shaped model on the study's mixed length spread against
# HF Trainer + PEFT (its default, length-grouped and padding-free batches). Results land as files
# under the folder given (default artifacts/bench/gpu/<time>); figures go into BENCHMARKS.md.
#   bash bench/gpu.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-artifacts/bench/gpu/$(date +%Y%m%d-%H%M%S)}"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
{ nvidia-smi; "$PY" -c "import torch, transformers, peft, lightning; print(torch.__version__, transformers.__version__, peft.__version__, lightning.__version__)"; git rev-parse HEAD; } > "$OUT/machine.txt" 2>&1
"$PY" -m pytest -m gpu -q tests/test_gpu.py tests/test_eval_vllm.py > "$OUT/pytest_gpu.txt" 2>&1
echo "pytest -m gpu: exit $?" | tee -a "$OUT/status.txt"
# the paper's LoRA (r=64, alpha=32, seven projections), bf16, whole inputs up to 2048 tokens
"$PY" bench/train_throughput.py --device cuda --model llama3_2_3b_shape --task paper --n 256 \
  --batch-size 8 --max-length 2048 --lora-r 64 --lora-alpha 32 --warmup 2 --steps 8 --repeats 1 \
  --trainer-group-by-length --trainer-padding-free > "$OUT/train_throughput.json" 2> "$OUT/train_throughput.log"
echo "train_throughput: exit $?" | tee -a "$OUT/status.txt"
