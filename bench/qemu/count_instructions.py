#!/usr/bin/env python3
"""Instructions per token of the aarch64 kernel sets, counted under QEMU (no Arm hardware here).

    bench/qemu/build_insn_count.sh                       # the counting plugin, once
    cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \\
          -DLFMRT_BUILD_PYTHON=OFF -DLFMRT_BUILD_TESTS=ON && ninja -C build/aarch64 lfmrt_kernel_tests
    python bench/qemu/count_instructions.py --build build/aarch64

For each kernel set, weight type and layout (GGUF's rows: what every aarch64 set read before the
panel kernels; 16-row panels: what they read now), `lfmrt_kernel_tests --count` runs the matrix
work of one LFM2-350M forward step (every layer's projections and the tied head, activation
quantization included: see run_count in cpp/tests/test_kernels.cpp) once and twice under
`qemu-aarch64 -cpu max` with the instruction-counting plugin; the difference of the two counts is
one step, divided by its tokens: decode (1 token, matrix-vector products) and prefill (--prompt
tokens, matrix products, the head on the last token only). Counts are exact and repeatable, but
instructions are not time: SDOT, SMMLA and a load cost different cycles on each core, and nothing
here measures wall-clock speed on Arm.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSROOT = "/usr/aarch64-linux-gnu"
TYPES = {"q4_0": ("Q4_0", "Q6_K"), "q8_0": ("Q8_0", "Q8_0"), "q4_k": ("Q4_K", "Q6_K")}


def count(args: argparse.Namespace, isa: str, types: tuple[str, str], tokens: int, layout: str, passes: int) -> int:
    cmd = ["qemu-aarch64", "-cpu", "max", "-L", SYSROOT, "-plugin", str(args.plugin),
           str(args.build / "lfmrt_kernel_tests"), "--count", types[0], types[1], str(tokens), layout, str(passes)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, LFMRT_ISA=isa), timeout=args.timeout)
    found = re.search(r"insns: (\d+)", r.stderr)
    if r.returncode != 0 or found is None or f"counted {isa}:" not in r.stdout:
        raise RuntimeError(f"{' '.join(cmd)} (LFMRT_ISA={isa}) failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", type=Path, default=Path("build/aarch64"), help="aarch64 build folder")
    ap.add_argument("--plugin", type=Path, default=HERE.parent / "out" / "qemu" / "libinsn_count.so")
    ap.add_argument("--types", default="q4_0,q8_0,q4_k")
    ap.add_argument("--sets", default="neon,neon_dotprod,neon_i8mm")
    ap.add_argument("--prompt", type=int, default=32, help="prefill tokens (default 32)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.plugin.is_file():
        ap.error(f"no plugin at {args.plugin}: run bench/qemu/build_insn_count.sh")

    results = []
    print(f"{'set':14}{'type':7}{'layout':8}{'decode insns/token':>20}{'prefill insns/token':>21}", flush=True)
    for gguf_type in [t.strip() for t in args.types.split(",") if t.strip()]:
        for isa in [s.strip() for s in args.sets.split(",") if s.strip()]:
            # neon_i8mm reads GGUF's rows with the dotprod table's kernels: its rows line is that one.
            for layout in ("rows", "panels") if isa != "neon_i8mm" else ("panels",):
                row = dict(set=isa, type=gguf_type, layout=layout)
                for phase, tokens in (("decode", 1), ("prefill", args.prompt)):
                    once = count(args, isa, TYPES[gguf_type], tokens, layout, 1)
                    twice = count(args, isa, TYPES[gguf_type], tokens, layout, 2)
                    row[phase] = (twice - once) / tokens
                results.append(row)
                print(f"{isa:14}{gguf_type:7}{layout:8}{row['decode'] / 1e6:17.1f} M{row['prefill'] / 1e6:18.1f} M",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(dict(prompt=args.prompt, results=results), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
