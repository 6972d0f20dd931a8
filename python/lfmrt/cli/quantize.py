"""``lfmrt quantize SRC OUT.gguf --type TYPE``: write a GGUF file that lfmrt and llama.cpp load."""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from typing import Any, TextIO

from ..errors import LoadError
from ..quantization import DTYPES, SCHEMES

NAME = "quantize"


class ProgressBar:
    """A one-line progress bar on a terminal (one line per tenth of the work elsewhere)."""

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.interactive = stream.isatty()
        self.start = time.perf_counter()
        self.last_tenth = -1

    def __call__(self, done: int, total: int, name: str, dtype: str) -> None:
        """Shows that ``done`` of ``total`` tensors are written, the last being ``name``."""
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
            f"{time.perf_counter() - self.start:5.1f}s  {name} {dtype}"
        )
        if self.interactive:
            self.stream.write("\r" + line[:120].ljust(120) + ("\n" if done == total else ""))
        elif int(fraction * 10) != self.last_tenth or done == total:
            self.last_tenth = int(fraction * 10)
            self.stream.write(line + "\n")
        self.stream.flush()


def register(subparsers: Any) -> None:
    """Adds ``quantize`` to the ``lfmrt`` parser."""
    parser = subparsers.add_parser(
        NAME,
        help="write a (quantized) GGUF file from a Hugging Face directory or a GGUF file",
        description=(
            "Write SRC (a Hugging Face LFM2 directory or an LFM2 GGUF file) as a GGUF file with "
            "TYPE's tensor types; lfmrt and llama.cpp both load the result, tokenizer and chat "
            "template included. Norms, biases and conv taps stay F32; the LM head / tied embedding "
            "is Q6_K in the block types except Q8_0; q4_k_m and q5_k_m give Q6_K to attn_v and "
            "ffn_down in llama.cpp's chosen layers."
        ),
    )
    parser.add_argument("src", help="a Hugging Face model directory, a .gguf file, a Hub repo id or 'demo'")
    parser.add_argument("out", help="the .gguf file to write")
    parser.add_argument("--type", dest="scheme", required=True, choices=list(SCHEMES), help="tensor types")
    parser.add_argument(
        "--head-type",
        choices=list(DTYPES),
        default=None,
        help="element type of the LM head (the tied embedding if tied), overriding the policy",
    )
    parser.add_argument("--name", default=None, help="general.name to write (default: SRC's name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Writes the file; returns 0, or 1 with a message on stderr for a bad source."""
    from ..hub import resolve_model
    from ..loaders import load_checkpoint
    from ..quantization.gguf_writer import write_gguf

    started = time.perf_counter()
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        print(f"lfmrt quantize: error: cannot write {args.out}: the folder {folder} does not exist", file=sys.stderr)
        return 1
    try:
        checkpoint = load_checkpoint(resolve_model(args.src))
        written = write_gguf(
            checkpoint,
            args.out,
            args.scheme,
            head_type=args.head_type,
            name=args.name,
            progress=None if args.quiet else ProgressBar(),
        )
    except (LoadError, ValueError) as exc:
        print(f"lfmrt quantize: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the folder vanished, is read-only, the disk is full, ...
        print(f"lfmrt quantize: error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    by_type = collections.Counter()
    for tensor in written:
        by_type[tensor.dtype] += tensor.nbytes
    mix = ", ".join(f"{dtype} {size / 2**20:.1f} MiB" for dtype, size in by_type.most_common())
    size = os.path.getsize(args.out)
    print(
        f"wrote {args.out}: {size / 2**20:.1f} MiB, {len(written)} tensors ({mix}) "
        f"in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    return 0
