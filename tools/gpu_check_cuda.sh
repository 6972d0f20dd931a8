#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU, in one go (aimed at well under 15 minutes on
# a 16-core host; nothing is downloaded when the Python packages below are installed):
#
#   tools/gpu_check_cuda.sh
#
#  1. nvidia-smi, then the C++ op harness built with -DLFMRT_CUDA=ON for this GPU's architecture
#     and run on cuda:0 (every op against the CPU's scalar kernels on odd sizes and tails), and
#     the same under compute-sanitizer's memcheck where it is installed;
#  2. lfmrt installed with CUDA into a venv over the system's packages (pip --no-build-isolation:
#     needs scikit-build-core, pybind11, numpy, tokenizers, jinja2, gguf), and tests/test_cuda.py
#     with LFMRT_REQUIRE_CUDA=1 (golden models against transformers and the CPU, quantized files,
#     sessions, batching, threads; no CUDA device is a failure);
#  3. the LFM2-350M-shaped random model (bench/make_model.py: transformers, torch) unless
#     bench/models/lfm2-350m-random exists; prefill (512 tokens) and batch-1 decode tok/s on cuda:0
#     for bf16 weights and Q8_0 / Q4_0 files; aggregate output tok/s through the Scheduler at 64
#     and 256 concurrent sequences (128-token prompts, 128 new tokens); transformers' bf16
#     `generate` on the same GPU as the baseline when torch sees it.
#
# Environment: PYTHON (default python3), LFMRT_GPU_CHECK_DIR (default build/gpu-check-cuda),
# CUDA_ARCHS (default native: only this GPU's architecture, to compile quickly), SANITIZE (1).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
work="${LFMRT_GPU_CHECK_DIR:-build/gpu-check-cuda}"
archs="${CUDA_ARCHS:-native}"
jobs="$(nproc 2>/dev/null || echo 4)"
start=$SECONDS
step() { echo; echo "=== [$((SECONDS - start)) s] $*"; }
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDACXX=/usr/local/cuda/bin/nvcc
fi

step "nvidia-smi"
nvidia-smi -L || echo "(nvidia-smi failed)"

step "C++ op harness on cuda:0 (CUDA_ARCHITECTURES=$archs)"
cmake -S . -B "$work/cpp" -DCMAKE_BUILD_TYPE=Release -DLFMRT_BUILD_PYTHON=OFF -DLFMRT_BUILD_TESTS=ON \
      -DLFMRT_OPENCL=OFF -DLFMRT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" >/dev/null
cmake --build "$work/cpp" --target lfmrt_backend_ops_test -j "$jobs" >/dev/null
harness=0
"$work/cpp/lfmrt_backend_ops_test" cuda:0 | grep -v '^PASS' || harness=$?
if [ "${SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    step "the op harness under compute-sanitizer (memcheck)"
    timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 "$work/cpp/lfmrt_backend_ops_test" cuda:0 \
        | grep -v '^PASS' || harness=$?
fi

step "Python package with CUDA"
if [ ! -x "$work/venv/bin/python" ]; then "$python" -m venv --system-site-packages "$work/venv"; fi
venv="$work/venv/bin/python"
CMAKE_ARGS="-DLFMRT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$archs" "$venv" -m pip install --quiet --no-build-isolation \
    --no-deps -Cbuild-dir="$work/wheel" . \
    || { echo "pip could not build lfmrt offline: it needs scikit-build-core and pybind11 installed"; exit 1; }
"$venv" -c "import lfmrt; [print(d['id'], d['name'], '|', d['details']) for d in lfmrt.devices()]"

step "tests/test_cuda.py"
tests=0
LFMRT_REQUIRE_CUDA=1 "$venv" -m pytest -q -p no:cacheprovider tests/test_cuda.py || tests=$?

step "the 350M-shaped model"
model=bench/models/lfm2-350m-random
if [ ! -f "$model/model.safetensors" ]; then "$venv" bench/make_model.py "$model" --corpus-chars 2000000; fi

step "prefill (512) and decode on cuda:0: bf16 weights, then Q8_0 and Q4_0 files"
"$venv" bench/bench_generate.py "$model" --device cuda:0 --runtimes lfmrt --repeats 2 \
    --prompt-tokens 512 --gen-tokens 128 --threads 4 || echo "(bench failed: $?)"
"$venv" bench/bench_generate.py "$model" --device cuda:0 --runtimes lfmrt --repeats 2 \
    --prompt-tokens 512 --gen-tokens 128 --threads 4 --types q8_0,q4_0 || echo "(bench failed: $?)"

step "aggregate output tok/s through the Scheduler, and transformers' bf16 generate"
timeout 420 "$venv" - "$model" <<'PY' || echo "(batch bench failed or ran past 420 s: $?)"
import sys, time
import numpy as np
import lfmrt

path = sys.argv[1]
model = lfmrt.Model.load(path, device="cuda:0")
rng = np.random.default_rng(0)
for concurrent in (64, 256):
    prompts = [rng.integers(14, 8000, 128).tolist() for _ in range(concurrent)]
    scheduler = lfmrt.Scheduler(model, max_batch=concurrent, prefill_chunk=4096)
    t = time.perf_counter()
    requests = [scheduler.submit(p, max_tokens=128, temperature=0.0, ignore_eos=True) for p in prompts]
    scheduler.run()
    elapsed = time.perf_counter() - t
    out = sum(len(r.completion.tokens) for r in requests)
    print(f"lfmrt cuda:0 bf16, {concurrent} sequences: {out} tokens in {elapsed:.2f} s = {out / elapsed:.0f} output tok/s")
try:
    import torch
    from transformers import AutoModelForCausalLM
except ImportError as e:
    sys.exit(f"transformers baseline skipped: {e}")
if not torch.cuda.is_available():
    sys.exit("transformers baseline skipped: torch sees no GPU")
hf = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.bfloat16).cuda().eval()
for concurrent in (1, 64):
    ids = torch.tensor(rng.integers(14, 8000, (concurrent, 128)), device="cuda")
    with torch.no_grad():
        hf.generate(ids, max_new_tokens=8, do_sample=False)  # warm-up
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = hf.generate(ids, max_new_tokens=128, min_new_tokens=128, do_sample=False)
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t
    n = (out.shape[1] - 128) * concurrent
    print(f"transformers bf16 generate, {concurrent} sequences: {n} tokens in {elapsed:.2f} s = {n / elapsed:.0f} output tok/s")
PY

step "done in $((SECONDS - start)) s (op harness rc $harness, tests rc $tests)"
[ "$harness" = 0 ] && [ "$tests" = 0 ]
