#!/bin/sh
# Builds insn_count.c into OUT_DIR/libinsn_count.so (default bench/out/qemu) for the installed
# qemu-aarch64: Debian's qemu-user ships no TCG plugins, so the plugin API header comes from the
# source of the same QEMU version (Debian's orig tarball of it, ~23 MB, downloaded once into
# OUT_DIR). Usage: bench/qemu/build_insn_count.sh [OUT_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../out/qemu"}
mkdir -p "$out"
version=$(qemu-aarch64 --version | sed -n 's/^qemu-aarch64 version \([0-9.]*\).*/\1/p')
major_minor=$(echo "$version" | cut -d. -f1-2)
header="$out/qemu-$major_minor/include/qemu/qemu-plugin.h"
if [ ! -f "$header" ]; then
    tarball="$out/qemu_$major_minor+dfsg.orig.tar.xz"
    [ -f "$tarball" ] || curl -fsSL -o "$tarball" "http://deb.debian.org/debian/pool/main/q/qemu/qemu_$major_minor+dfsg.orig.tar.xz"
    mkdir -p "$out/qemu-$major_minor"
    tar -xJf "$tarball" -C "$out/qemu-$major_minor" --strip-components=1 "qemu-$major_minor.0/include/qemu/qemu-plugin.h"
fi
cc -shared -fPIC -O2 -I "$(dirname "$header")" -o "$out/libinsn_count.so" "$here/insn_count.c"
echo "$out/libinsn_count.so (QEMU $version plugin API)"
