"""Top-1 agreement and logit distance between two devices on the demo model's quantized files.

    python bench/backend_agreement.py opencl:0 cpu [--tokens 1500] [--kv-cache f16]

Writes each scheme's GGUF (Q8_0, Q4_0, Q4_K_M, Q5_K_M, Q6_K) from the bundled demo model, runs
the held-out text through both devices and prints, per scheme, the share of positions whose
argmax agrees and the largest logit difference. `cpu:scalar cpu` gives the spread between the
CPU's own kernel sets, the bound any other backend is measured against.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import lfmrt
from lfmrt.loaders import load_checkpoint
from lfmrt.quantization.gguf_writer import write_gguf

SCHEMES = ("q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("device", help="the device measured (lfmrt.devices())")
    ap.add_argument("reference", help="the device it is compared with")
    ap.add_argument("--tokens", type=int, default=1500, help="positions of held-out text (default 1500)")
    ap.add_argument("--kv-cache", default="f16", help="KV cache type on both (default f16)")
    args = ap.parse_args()

    demo = Path(lfmrt.demo_model_path())
    checkpoint = load_checkpoint(str(demo))
    text = (demo / "heldout.txt").read_text(encoding="utf-8")
    print(f"{args.device} against {args.reference}, {args.kv_cache} KV cache")
    print(f"{'scheme':8} {'positions':>9} {'top-1 agree':>12} {'max |dlogit|':>13}")
    with tempfile.TemporaryDirectory() as folder:
        for scheme in SCHEMES:
            path = str(Path(folder) / f"demo-{scheme}.gguf")
            write_gguf(checkpoint, path, scheme)
            ref = lfmrt.Model.load(path, device=args.reference, kv_cache=args.kv_cache)
            tokens = ref.tokenize(text)[: args.tokens]
            want = ref.logits(tokens)
            got = lfmrt.Model.load(path, device=args.device, kv_cache=args.kv_cache).logits(tokens)
            agree = float((got.argmax(-1) == want.argmax(-1)).mean())
            print(f"{scheme:8} {len(tokens):>9} {agree:>12.4f} {float(np.abs(got - want).max()):>13.3f}")


if __name__ == "__main__":
    main()
