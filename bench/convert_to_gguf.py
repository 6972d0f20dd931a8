#!/usr/bin/env python3
"""Convert an LFM2 Hugging Face directory to GGUF with llama.cpp's own converter.

    python bench/convert_to_gguf.py bench/models/lfm2-350m-random \\
        bench/models/lfm2-350m-random-f16.gguf --type f16

This runs `convert_hf_to_gguf.py` from a llama.cpp source tree that is *not* part of this
repository: pass it with --llama-cpp DIR or the LLAMA_CPP_DIR environment variable, or let the
script find the tree vendored in an unpacked llama-cpp-python sdist under /opt/llama-src
(`pip download --no-binary llama-cpp-python --no-deps llama-cpp-python`, then untar).
The converter's own `gguf-py` from that tree is used, not the installed `gguf` package, so the
two always agree on the LFM2 architecture keys.

llama.cpp identifies a BPE tokenizer's pre-tokenizer by hashing how it encodes a fixed
string (`TextModel.get_vocab_base_pre`) and refuses tokenizers whose hash it does not know,
such as the one `make_model.py` trains. The pre-tokenizer *is* LFM2's (Llama-3 split regex,
byte level), so this wrapper overrides `get_vocab_base_pre` on the converter's LFM2 model
class only, to answer "lfm2" (--pre to change it); everything else is the unmodified converter.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

DEFAULT_SEARCH = "/opt/llama-src/llama_cpp_python-*/vendor/llama.cpp"
OUT_TYPES = ("f32", "f16", "bf16", "q8_0", "auto")


def find_llama_cpp(explicit: str | None) -> Path:
    """The llama.cpp source tree holding convert_hf_to_gguf.py: --llama-cpp, $LLAMA_CPP_DIR,
    or the newest match of DEFAULT_SEARCH."""
    candidates = [explicit] if explicit else []
    if not candidates and os.environ.get("LLAMA_CPP_DIR"):
        candidates = [os.environ["LLAMA_CPP_DIR"]]
    if not candidates:
        candidates = sorted(glob.glob(DEFAULT_SEARCH), reverse=True)
    for c in candidates:
        path = Path(c).expanduser().resolve()
        if (path / "convert_hf_to_gguf.py").is_file():
            return path
    raise SystemExit(
        "error: cannot find llama.cpp's convert_hf_to_gguf.py; pass --llama-cpp DIR or set "
        f"LLAMA_CPP_DIR (searched: {candidates or DEFAULT_SEARCH})"
    )


def run_converter(llama_cpp: Path, hf_dir: Path, out: Path, out_type: str, pre: str, verbose: bool) -> None:
    # The converter's gguf-py and its `conversion` package must win over any installed copy;
    # nothing here has imported `gguf` yet.
    sys.path.insert(0, str(llama_cpp / "gguf-py"))
    sys.path.insert(0, str(llama_cpp))
    os.environ.pop("NO_LOCAL_GGUF", None)

    import convert_hf_to_gguf  # noqa: E402  (the converter's entry-point module)
    from conversion import lfm2  # noqa: E402

    def get_vocab_base_pre(self, tokenizer) -> str:  # noqa: ARG001
        # LFM2's tokenizer always pre-tokenizes the same way; its vocabulary need not be the
        # released one for the hash check to be meaningless here.
        return pre

    patched = []
    for cls in vars(lfm2).values():
        if isinstance(cls, type) and issubclass(cls, lfm2.TextModel) and cls.__module__ == lfm2.__name__:
            cls.get_vocab_base_pre = get_vocab_base_pre
            patched.append(cls.__name__)
    print(f"[convert_to_gguf] llama.cpp converter: {llama_cpp / 'convert_hf_to_gguf.py'}", flush=True)
    print(f"[convert_to_gguf] pre-tokenizer forced to {pre!r} for {', '.join(patched)}", flush=True)

    argv = [str(hf_dir), "--outfile", str(out), "--outtype", out_type]
    if verbose:
        argv.append("--verbose")
    sys.argv = ["convert_hf_to_gguf.py", *argv]
    convert_hf_to_gguf.main()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir", type=Path, help="Hugging Face model directory (config.json, safetensors, tokenizer)")
    ap.add_argument("out", type=Path, help="output .gguf file")
    ap.add_argument("--type", dest="out_type", choices=OUT_TYPES, default="f16",
                    help="tensor type in the GGUF (default f16)")
    ap.add_argument("--llama-cpp", default=None,
                    help=f"llama.cpp source tree (default: $LLAMA_CPP_DIR, else {DEFAULT_SEARCH})")
    ap.add_argument("--pre", default="lfm2", help="tokenizer.ggml.pre to write (default lfm2)")
    ap.add_argument("--verbose", action="store_true", help="pass --verbose to the converter")
    args = ap.parse_args(argv)

    if not (args.hf_dir / "config.json").is_file():
        print(f"error: {args.hf_dir} has no config.json", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run_converter(find_llama_cpp(args.llama_cpp), args.hf_dir, args.out, args.out_type, args.pre, args.verbose)
    print(f"[convert_to_gguf] wrote {args.out} ({args.out.stat().st_size / 1e6:.0f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
