#!/bin/bash
# In-process A/B of the AVX2 panel GEMM at git revision REV ("old") against the working tree
# ("new"); see ab_panels.cpp. Needs the kernel bench's build (build/bench, as bench/README says).
#   bench/kernel_ab/run.sh REV N ROUNDS [q4_0|q8_0|q4_k|q6_k]
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
[ $# -ge 3 ] || { echo "usage: $0 REV N ROUNDS [q4_0|q8_0|q4_k|q6_k]" >&2; exit 2; }
rev=$1; shift
kernel=cpp/src/backends/cpu/kernels/avx2/panel_kernels.cpp
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
[ -f build/bench/liblfmrt_runtime.a ] || { echo "build the kernel bench first (bench/README: lfmrt_kernel_tests)" >&2; exit 1; }
ninja -C build/bench lfmrt_runtime > /dev/null
git show "$rev:$kernel" > "$out/old.cpp"
flags=(-O2 -std=c++20 -Icpp/src -Icpp/include)
# The old version's #includes resolve against the working tree: its panel layout must be the one
# pack_panels (the library's) writes.
g++ "${flags[@]}" -mavx2 -mfma -mf16c -Dlfmrt=lfmrtold -iquote "$(dirname "$kernel")" -c "$out/old.cpp" -o "$out/old.o"
g++ "${flags[@]}" -mavx2 -mfma -mf16c -c "$kernel" -o "$out/new.o"
g++ "${flags[@]}" -c bench/kernel_ab/ab_panels.cpp -o "$out/driver.o"
g++ -o "$out/ab" "$out/driver.o" "$out/old.o" "$out/new.o" build/bench/liblfmrt_runtime.a -lpthread
"$out/ab" "$@"
