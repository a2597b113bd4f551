#!/usr/bin/env bash
# The CuPy backend on a lent GPU machine, in one run (see ../shared/device/README.md).
# Prepare here, from the repo root:
#   bash ../shared/device/fetch-wheels.sh threadpoolctl==3.6.0
#   mkdir -p .gpu && cp -r ../shared/data/mnist .gpu/ && grep -qx /.gpu/ .git/info/exclude || echo /.gpu/ >> .git/info/exclude
# then call the device tool with: command "bash benchmarks/gpu.sh", carry [".whl", ".gpu"], timeout_s 420.
# It prints the GPU tests' summary, the bench table beside PyTorch CUDA, and a 2-epoch training run.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 NETLAB_DATA=$PWD/.gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== tests on cupy (-m gpu)"
timeout 150 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -5

echo "== bench: netlab cupy vs torch cuda"
timeout 120 python3 -m netlab.bench backend=cupy "batch_sizes=[128,1024]" repeats=7 steps=20 \
  hydra.run.dir="$OUT/bench" 2>&1 | tee "$OUT/bench.log" | grep -vE "Dropout|Flatten"

echo "== train: default config on the GPU, 2 epochs"
timeout 120 python3 -m netlab.train backend=cupy train.progress=false hydra.run.dir="$OUT/train" 2>&1 \
  | grep -E "step|done|error" | tee "$OUT/train.log"
