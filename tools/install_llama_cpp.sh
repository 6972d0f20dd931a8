#!/usr/bin/env bash
# The peer the tests cross-check against: llama-cpp-python, pinned, built from source, plus the
# llama.cpp tree its sdist vendors (bench/convert_to_gguf.py runs that tree's
# convert_hf_to_gguf.py). Does only what is missing:
#   - the sdist unpacked under $LLAMA_CPP_SRC (default /opt/llama-src, where
#     bench/convert_to_gguf.py looks): a download of a few MB;
#   - llama_cpp importable at the pinned version in $PYTHON (default python3): a build with
#     llama.cpp's tests, examples, tools and server left out (bench/README.md, "The peer"), about
#     10 CPU-minutes (measured: 26 minutes wall on 2 cores shared with other builds, load ~11).
#
#   tools/install_llama_cpp.sh          PYTHON=/path/to/python LLAMA_CPP_SRC=DIR tools/install_llama_cpp.sh
set -euo pipefail
version=0.3.36
python=${PYTHON:-python3}
src=${LLAMA_CPP_SRC:-/opt/llama-src}
tree="$src/llama_cpp_python-$version"

if [[ ! -d $tree/vendor/llama.cpp ]]; then
    mkdir -p "$src"
    "$python" -m pip download --quiet --no-binary llama-cpp-python --no-deps \
        "llama-cpp-python==$version" -d "$src"
    tar xzf "$src/llama_cpp_python-$version.tar.gz" -C "$src"
fi

if ! "$python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$version')" 2>/dev/null; then
    echo "building llama-cpp-python $version from source (about 10 CPU-minutes)"
    # GGML_NATIVE: this CPU's best kernels, as the benchmarks use them (built where it runs).
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
                -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        "$python" -m pip install --quiet "$tree"
    "$python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
fi
