#!/usr/bin/env bash
# netlab's GPU checks in one run, on any machine with an NVIDIA GPU and CUDA 12:
#   pip install -e ".[cuda12,torch,dev]"        # cuda13 for CUDA 13
#   NETLAB_DATA=DIR bash benchmarks/gpu.sh      # DIR holds mnist/ (the four IDX files)
# It prints the GPU tests' summary, the bench table beside PyTorch CUDA, and a 2-epoch training
# run, and keeps their logs in $OUT. On a machine without network access, put the wheels it
# needs in .whl/ and the data in .gpu/mnist/: they are installed and used from there.
set -uo pipefail
OUT=${OUT:-/tmp/netlab-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
[ -z "${NETLAB_DATA:-}" ] && [ -d .gpu/mnist ] && export NETLAB_DATA=$PWD/.gpu
: "${NETLAB_DATA:?set NETLAB_DATA to a folder with an mnist/ subfolder}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== tests on cupy (-m gpu)"
timeout 150 python3 -m pytest -q -m gpu tests/ -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -5

echo "== bench: netlab cupy vs torch cuda"
timeout 120 python3 -m netlab.bench backend=cupy "batch_sizes=[128,1024]" repeats=7 steps=20 \
  hydra.run.dir="$OUT/bench" 2>&1 | tee "$OUT/bench.log" | grep -vE "Dropout|Flatten"

echo "== bench: the FFT convolution on the GPU (auto picks im2col there until this says otherwise)"
timeout 90 python3 -m netlab.bench backend=cupy backend.conv=fft "batch_sizes=[128,1024]" repeats=5 steps=20 \
  hydra.run.dir="$OUT/bench_fft" 2>&1 | tee "$OUT/bench_fft.log" | grep -E "^ +[0-9]+ \||Conv2d"

echo "== train: default config on the GPU, 2 epochs"
timeout 120 python3 -m netlab.train backend=cupy train.progress=false hydra.run.dir="$OUT/train" 2>&1 \
  | grep -E "step|done|error" | tee "$OUT/train.log"
