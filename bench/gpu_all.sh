#!/usr/bin/env bash
# The one prepared GPU run of a session (device time is scarce: ~4 minutes of commands).
# Runs on the lent H100/H200 whose Python has torch/transformers/timm but no PyAV or Qt.
# Usage there:  bash bench/gpu_all.sh            (writes JSON and logs under $OUT)
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/card.txt"
$PY -c "import torch, transformers, timm; print(torch.__version__, transformers.__version__, timm.__version__)" | tee -a "$OUT/card.txt"
# 1. correctness bf16 vs fp32 (forward + backward of IMD-base), train/eval clips/s, peak memory
timeout 80 $PY bench/gpu_check.py --size base --batch-size 8 --steps 10 --out "$OUT/gpu_check.json" 2>&1 | tee "$OUT/gpu_check.log"
# 2. end-to-end inference (random weights): IMD small/base/large and HF TimeSformer/VideoMAE/AST eager
#    at batches 1/32/64/128, then IMD-base's whole forward compiled (fullgraph): reduce-overhead
#    (CUDA graphs) at batch 1 and default at its best batch (~3 min; rows are written as they come)
timeout 200 $PY bench/bench_inference.py gpu --quick --json "$OUT/inference_gpu.json" 2>&1 | tee "$OUT/inference_gpu.log"
# 3. training throughput of IMD-base (bf16, AdamW), TFLOP/s against the 782 ceiling: eager, then
#    torch.compile of the whole forward + loss (fullgraph, as compile=true trains); the first
#    compiled step includes compilation (reported as first_step_s)
timeout 300 $PY bench/bench_train.py --quick --json "$OUT/train_gpu.json" 2>&1 | tee "$OUT/train_gpu.log"
echo done
