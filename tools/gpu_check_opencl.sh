#!/usr/bin/env bash
# The OpenCL backend on a machine with a GPU, in one go (a few minutes; nothing is downloaded
# when the Python packages below are already installed):
#
#   tools/gpu_check_opencl.sh            # every OpenCL device the ICD loader finds
#
#  1. builds the C++ op harness and runs it on every OpenCL device (each op against the CPU's
#     scalar kernels on odd sizes and tails), also on the image1d_buffer_t path;
#  2. installs lfmrt into a venv over the system's packages (pip --no-build-isolation, so it
#     needs scikit-build-core and pybind11 installed, plus numpy, tokenizers, jinja2, gguf) and runs
#     tests/test_opencl.py on every OpenCL device (LFMRT_REQUIRE_OPENCL=1: none is a failure);
#  3. makes the LFM2-350M-shaped random model with bench/make_model.py (transformers, torch) unless
#     bench/models/lfm2-350m-random exists, and prints prefill and decode tok/s on `opencl` (the
#     first GPU) for its bf16 weights and Q8_0 / Q4_0 files (bench/bench_generate.py, lfmrt only).
#
# Environment: PYTHON (default python3), LFMRT_GPU_CHECK_DIR (default build/gpu-check),
# DEVICE (default opencl).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
work="${LFMRT_GPU_CHECK_DIR:-build/gpu-check}"
device="${DEVICE:-opencl}"
jobs="$(nproc 2>/dev/null || echo 4)"
start=$SECONDS
step() { echo; echo "=== [$((SECONDS - start)) s] $*"; }

step "clinfo"
if command -v clinfo >/dev/null; then clinfo -l; else echo "(clinfo not installed)"; fi

step "C++ op harness"
cmake -S . -B "$work/cpp" -DCMAKE_BUILD_TYPE=Release -DLFMRT_BUILD_PYTHON=OFF -DLFMRT_BUILD_TESTS=ON >/dev/null
cmake --build "$work/cpp" --target lfmrt_backend_ops_test -j "$jobs" >/dev/null
"$work/cpp/lfmrt_backend_ops_test" --devices | grep -v '^PASS'
LFMRT_OPENCL_IMAGES=1 "$work/cpp/lfmrt_backend_ops_test" --devices | grep -v '^PASS'

step "Python package"
if [ ! -x "$work/venv/bin/python" ]; then "$python" -m venv --system-site-packages "$work/venv"; fi
venv="$work/venv/bin/python"
"$venv" -m pip install --quiet --no-build-isolation --no-deps . \
    || { echo "pip could not build lfmrt offline: it needs scikit-build-core and pybind11 installed"; exit 1; }
"$venv" -c "import lfmrt; [print(d['id'], d['name'], '|', d['details']) for d in lfmrt.devices()]"

step "tests/test_opencl.py"
LFMRT_REQUIRE_OPENCL=1 "$venv" -m pytest -q -p no:cacheprovider tests/test_opencl.py

step "the 350M-shaped model"
model=bench/models/lfm2-350m-random
if [ ! -f "$model/model.safetensors" ]; then "$venv" bench/make_model.py "$model"; fi

step "prefill and decode on $device: bf16 weights"
"$venv" bench/bench_generate.py "$model" --device "$device" --runtimes lfmrt --repeats 2 \
    --prompt-tokens 512 --gen-tokens 64 --threads "$jobs"
step "prefill and decode on $device: Q8_0 and Q4_0 files"
"$venv" bench/bench_generate.py "$model" --device "$device" --runtimes lfmrt --repeats 2 \
    --prompt-tokens 512 --gen-tokens 64 --threads "$jobs" --types q8_0,q4_0

step "done in $((SECONDS - start)) s"
