#!/usr/bin/env bash
# Coverage-guided fuzzing of what lfmrt reads from outside (fuzz/README.md).
#
#   fuzz/run.sh [--seconds N | --runs N] [HARNESS ...]
#       HARNESS: safetensors gguf snapshot chat_template tool_calls (default: all, --seconds 30)
#
# The extension module is built with Clang under ASan + UBSan and libFuzzer's coverage
# instrumentation (build/fuzz), so that the fuzzer steers by the C++ code's branches and
# comparisons as well as the Python code's (atheris instruments lfmrt's modules), and a memory
# error or undefined behaviour in the C++ code is a finding. ASan is preloaded merged with
# libFuzzer (what atheris's installer calls asan_with_fuzzer.so; its wheel does not ship one):
# the instrumented module needs libFuzzer's symbols global before it loads.
#
# Each harness runs over a scratch corpus under build/fuzz/corpus, seeded from fuzz/corpus/HARNESS
# (which stays as committed). A finding (crash-*, timeout-*, oom-* in build/fuzz/artifacts) stops
# that harness and fails the run; the rest still run. The last lines give, per harness, the
# executions, seconds, and libFuzzer's coverage (cov: instrumented edges reached, ft: features).
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=30)
harnesses=()
while (($#)); do
    case $1 in
        --seconds) limit=(-max_total_time="$2"); shift 2 ;;
        --runs) limit=(-runs="$2"); shift 2 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) harnesses+=("$1"); shift ;;
    esac
done
((${#harnesses[@]})) || harnesses=(safetensors gguf snapshot chat_template tool_calls)

build=build/fuzz
# The first Clang (plain clang++, then the newest clang++-N) whose runtime folder holds ASan and
# libFuzzer: Debian's clang-14 installs without them (they are in libclang-rt-14-dev).
cxx=
for candidate in $(command -v clang++ || true) $(ls /usr/bin/clang++-[0-9]* 2>/dev/null | sort -rV); do
    rt=$("$candidate" -print-runtime-dir 2>/dev/null || true)
    if [[ -f $rt/libclang_rt.asan-x86_64.a && -f $rt/libclang_rt.fuzzer_no_main-x86_64.a ]]; then
        cxx=$candidate
        break
    fi
done
[[ -n $cxx ]] || { echo "fuzz/run.sh needs clang++ with its ASan and libFuzzer runtimes (Debian package clang)" >&2; exit 2; }
python3 -c "import atheris" 2>/dev/null || python3 -m pip install --quiet "atheris==3.0.0"
python3 -c "import pybind11" 2>/dev/null || python3 -m pip install --quiet "pybind11>=2.12"

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
      -DLFMRT_SANITIZE=address,undefined -DLFMRT_FUZZ=ON -DLFMRT_BUILD_TESTS=OFF \
      -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build "$build" --target _core -j "$(nproc)" >/dev/null
site=$(tools/stage_module.sh "$build")

# libFuzzer and the ASan runtime (C and C++ parts) in one shared object, less ASan's preinit
# object (a preloaded library may not carry .preinit_array).
runtime="$build/asan_with_fuzzer.so"
if [[ ! -f $runtime ]]; then
    rt=$("$cxx" -print-runtime-dir)
    tmp=$(mktemp -d)
    cp "$rt/libclang_rt.asan-x86_64.a" "$tmp/asan.a"
    ar d "$tmp/asan.a" asan_preinit.cpp.o asan_preinit.cc.o 2>/dev/null || true
    "$cxx" -shared -o "$runtime" -Wl,--whole-archive "$rt/libclang_rt.fuzzer_no_main-x86_64.a" "$tmp/asan.a" \
           "$rt/libclang_rt.asan_cxx-x86_64.a" -Wl,--no-whole-archive -lpthread -ldl -lrt
    rm -rf "$tmp"
fi

# Leaks are not checked: CPython keeps objects alive until exit on purpose (tools/sanitize.sh
# says more). No allocation stacks are recorded (malloc_context_size=0): unwinding the stack on
# every one of the interpreter's mallocs made each input 4-6x slower (tool_calls: 72 against
# 319 executions/s). A report still gives the faulting access's stack; for where the block was
# allocated and freed, rerun its artifact with ASAN_OPTIONS=malloc_context_size=30. The timeout
# makes a hang a finding; the malloc limit, an allocation sized by a count the input claims.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:malloc_context_size=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
symbolizer=$(command -v llvm-symbolizer || true)
[[ -z $symbolizer ]] || export ASAN_SYMBOLIZER_PATH=$symbolizer
mkdir -p "$build/artifacts"
summary=()
failed=0
for name in "${harnesses[@]}"; do
    corpus="$build/corpus/$name"
    mkdir -p "$corpus"
    log="$build/$name.log"
    echo "== fuzz $name (${limit[*]})"
    status=0
    env LD_PRELOAD="$PWD/$runtime" PYTHONPATH="$site" python3 "fuzz/fuzz_$name.py" "$corpus" "fuzz/corpus/$name" \
        "${limit[@]}" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=1024 -print_final_stats=1 \
        -artifact_prefix="$build/artifacts/$name-" > "$log" 2>&1 || status=$?
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    seconds=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<< "$done_line" || true)
    if ((status)); then
        failed=1
        grep -E "ERROR|Error|Traceback|assert" "$log" | head -n 20 || true
        tail -n 40 "$log"
        summary+=("$name: FINDING (exit $status) after ${runs:-?} runs; see $log and $build/artifacts/")
    else
        summary+=("$name: ${runs:-?} runs in ${seconds:-?} s, ${cov:-no coverage line}, corpus $(ls "$corpus" | wc -l) files")
    fi
done
printf '%s\n' "${summary[@]}"
exit "$failed"
