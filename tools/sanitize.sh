#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer over the C++ tests and a Python test subset.
#
#   tools/sanitize.sh [BUILD_DIR]        (default build/asan; about 10 minutes on 2 cores)
#
# One CMake build with -DLFMRT_SANITIZE=address,undefined makes the C++ test programs and the
# extension module. The C++ tests run as they are (leak checking on). The module is staged with
# the Python package under BUILD_DIR/site and imported from there by a pytest run over the tests
# that feed the runtime the most varied input (loaders, malformed files, sessions, snapshots,
# sampling, generation), with the ASan runtime preloaded into Python (a sanitized module cannot
# load into an unsanitized interpreter otherwise). Any report fails the run: ASan aborts at its
# first error, and UBSan does too (-fno-sanitize-recover, set by CMake, plus halt_on_error).
# ThreadSanitizer runs separately (.ci/run), since it cannot share a build with ASan.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/asan}
jobs=$(nproc)

python3 -c "import pybind11" 2>/dev/null || python3 -m pip install --quiet "pybind11>=2.12"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLFMRT_SANITIZE=address,undefined \
      -DLFMRT_BUILD_PYTHON=ON -DLFMRT_BUILD_TESTS=ON -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" \
      -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build "$build" --target _core lfmrt_kernel_tests lfmrt_backend_ops_test lfmrt_forward_test \
    lfmrt_session_thread_test -j "$jobs" >/dev/null

# The sanitizer reports go to stderr and end the process with a non-zero status; a C++ test that
# passes ends its output with "0 failed".
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
# lfmrt_backend_ops_test also runs every OpenCL device the ICD loader lists (under .ci/run, PoCL
# and Intel's CPU runtime, from tools/opencl_env.sh): their host code is lfmrt's and is checked;
# the drivers are not instrumented, and one of them leaks (the suppressions file says which).
export LSAN_OPTIONS=suppressions=$PWD/tools/lsan_opencl_drivers.supp:print_suppressions=0
run_cpp() {
    echo "== $*"
    "$@" > "$build/last.log" 2>&1 || { tail -n 60 "$build/last.log"; echo "FAILED: $*"; exit 1; }
    grep '^device ' "$build/last.log" || true
    tail -n 1 "$build/last.log"
    tail -n 1 "$build/last.log" | grep -qE "(^| )0 failed$" || { tail -n 60 "$build/last.log"; exit 1; }
}
run_cpp "$build/lfmrt_kernel_tests"
run_cpp "$build/lfmrt_backend_ops_test"
run_cpp "$build/lfmrt_session_thread_test"

site=$(tools/stage_module.sh "$build")

# Inside Python: CPython and the libraries it imports keep objects alive until exit on purpose
# (interned strings, static types, module caches, numpy's and tokenizers' allocator caches), and
# none of them is built for LeakSanitizer, so at exit it would list thousands of those "leaks"
# and none of lfmrt's. Leak checking is off for the interpreter only (the C++ test programs above
# and below run with it on). PYTHONMALLOC=malloc sends Python's own small objects through malloc
# so that ASan sees them too (byte strings handed to the runtime, for one). libstdc++ is preloaded
# with ASan because the interpreter does not link it: ASan looks up the real __cxa_throw when it
# starts, and without libstdc++ loaded by then, the first C++ exception (every LoadError) trips
# ASan's "real___cxa_throw != 0" check.
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
py_env=(env LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)" PYTHONMALLOC=malloc
        ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0")
"${py_env[@]}" python3 -c "import lfmrt._core, sys; assert lfmrt._core.__file__.startswith('$site'), lfmrt._core.__file__"

# The golden forward pass through the C++ API alone, on the inputs tests/test_aarch64.py writes
# for it, with every kernel set this CPU runs.
cases="$build/forward-cases"
"${py_env[@]}" python3 - "$cases" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_aarch64 import FORWARD_MODELS, write_forward_case
for name in FORWARD_MODELS:
    write_forward_case(name, Path(sys.argv[1]) / name)
EOF
for isa in $("${py_env[@]}" python3 -c "import lfmrt; print(' '.join(lfmrt.cpu_info()['kernel_sets']))"); do
    for case in "$cases"/*/; do run_cpp "$build/lfmrt_forward_test" "$case" "$isa"; done
done

# --capture=sys: a report is written by C++ straight to the process's stderr, which pytest's
# default capture would hide (and lose when the report aborts the process).
echo "== pytest under ASan + UBSan"
"${py_env[@]}" python3 -m pytest -q -p no:cacheprovider --capture=sys \
    tests/test_loaders.py tests/test_gguf_errors.py tests/test_model_errors.py tests/test_sessions.py \
    tests/test_kv_cache.py tests/test_sampling.py tests/test_generation.py tests/test_fuzz_findings.py
