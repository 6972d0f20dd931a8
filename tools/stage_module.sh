#!/usr/bin/env bash
# Lays out the Python package as a wheel would, around an extension module built by CMake in
# BUILD_DIR (a sanitized or instrumented build that pip does not make): BUILD_DIR/site/lfmrt is
# python/lfmrt plus BUILD_DIR's _core. Prints the site folder, for PYTHONPATH.
#
#   site=$(tools/stage_module.sh BUILD_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$1
site="$PWD/$build/site"
rm -rf "$site" && mkdir -p "$site"
cp -r python/lfmrt "$site/"
rm -f "$site"/lfmrt/_core*.so
cp "$build"/_core*.so "$site/lfmrt/"
echo "$site"
