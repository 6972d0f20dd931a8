#!/usr/bin/env python3
"""Prefill and decode speed at long contexts: lfmrt against llama.cpp's llama-bench at the same depths.

    python bench/bench_depth.py bench/models/lfm2-350m-random-lfmrt-q4_0.gguf \\
        --llama-bench /opt/llama-native/bin/llama-bench --depths 0,4096,8192,16384,32768

For each depth d (tokens already in the context) it times a 512-token prefill chunk appended
after d tokens, and --gen-tokens greedy decode steps after that, as `llama-bench -d d -p 512 -n N`
does. llama.cpp is measured with flash attention off and on (`-fa 0,1`); both runtimes read the
same GGUF file with --threads threads and an f16 KV cache.

lfmrt runs in one child process that walks the depths in order: it fills the context to d with
untimed chunks, times the chunk and the decode steps, then rewinds to d (a conv checkpoint sits
there) before filling on to the next depth, so the 32k row costs one fill of 32k tokens. Peak
RSS and the session's state bytes at each depth are reported too. llama-bench refills the
context for every depth and setting, so its part of the run takes longer.

Figures are noisy on a shared machine; the ratio column (lfmrt / llama.cpp's better setting) is
the one to read, taken within one run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CHUNK = 512


def child(args: argparse.Namespace) -> None:
    import numpy as np

    import lfmrt

    options = {} if args.device == "cpu" else {"device": args.device}  # builds before device= ran on the CPU only
    model = lfmrt.Model.load(args.model, n_threads=args.threads, kv_cache="f16", **options)
    vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    filler = [int(t) for t in rng.integers(3, vocab, size=max(args.depths) + CHUNK)]
    chunk = [int(t) for t in rng.integers(3, vocab, size=CHUNK)]
    session = model.session(chunk_size=CHUNK)
    session.append(chunk[:32])  # warm-up: pages the weights in
    session.reset()
    for depth in args.depths:
        if session.n_tokens < depth:
            session.append(filler[session.n_tokens:depth])
        start = time.perf_counter()
        logits = session.append(chunk)
        prefill_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.gen_tokens):
            logits = session.decode(int(np.argmax(logits)))
        decode_s = time.perf_counter() - start
        row = dict(depth=depth, prefill_tok_s=CHUNK / prefill_s, decode_tok_s=args.gen_tokens / decode_s,
                   state_mib=session.memory_bytes / 2**20,
                   peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print("RESULT " + json.dumps(row), flush=True)
        session.rewind(depth)


def run_lfmrt(args: argparse.Namespace) -> dict[int, dict]:
    cmd = [sys.executable, __file__, str(args.model), "--child", "--threads", str(args.threads),
           "--depths", ",".join(map(str, args.depths)), "--gen-tokens", str(args.gen_tokens), "--device", args.device]
    rows = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            if line.startswith("RESULT "):
                row = json.loads(line[len("RESULT "):])
                rows[row["depth"]] = row
                print(f"[bench] lfmrt depth {row['depth']}: prefill {row['prefill_tok_s']:.1f} tok/s, "
                      f"decode {row['decode_tok_s']:.2f} tok/s", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the lfmrt child failed (exit {proc.returncode})")
    return rows


def run_llama(args: argparse.Namespace, flash: int) -> dict[int, dict]:
    cmd = [str(args.llama_bench), "-m", str(args.model), "-p", str(CHUNK), "-n", str(args.gen_tokens),
           "-d", ",".join(map(str, args.depths)), "-fa", "on" if flash else "off", "-t", str(args.threads), "-r", "1",
           "-ctk", "f16", "-ctv", "f16", "-o", "jsonl"]
    rows: dict[int, dict] = {}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        row = rows.setdefault(int(r["n_depth"]), {"depth": int(r["n_depth"])})
        key = "prefill_tok_s" if r["n_prompt"] > 0 else "decode_tok_s"
        row[key] = float(r["avg_ts"])
    for depth, row in sorted(rows.items()):
        print(f"[bench] llama.cpp -fa {flash} depth {depth}: prefill {row.get('prefill_tok_s', 0):.1f} tok/s, "
              f"decode {row.get('decode_tok_s', 0):.2f} tok/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="a GGUF file both runtimes read")
    ap.add_argument("--llama-bench", type=Path, default=None, help="llama.cpp's llama-bench (omit: lfmrt only)")
    ap.add_argument("--depths", default="0,4096,8192,16384,32768", help="comma-separated context depths")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-tokens", type=int, default=32, help="decode steps timed at each depth (default 32)")
    ap.add_argument("--device", default="cpu", help="lfmrt's device (default cpu)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.depths = [int(d) for d in args.depths.split(",")]
    if args.child:
        child(args)
        return 0

    ours = run_lfmrt(args)
    theirs = {flash: run_llama(args, flash) for flash in (0, 1)} if args.llama_bench else {}
    print(f"\n{args.model}, {args.threads} threads, {CHUNK}-token chunk, {args.gen_tokens} decode steps, f16 KV")
    header = (f"{'depth':>7}{'lfmrt pp':>10}{'llama fa0':>11}{'llama fa1':>11}{'ratio':>8}"
              f"{'lfmrt tg':>10}{'llama fa0':>11}{'llama fa1':>11}{'ratio':>8}{'state MiB':>11}{'RSS MiB':>9}")
    print(header)
    print("-" * len(header))
    for depth in args.depths:
        row = ours[depth]
        line = f"{depth:>7}{row['prefill_tok_s']:>10.1f}"
        for key in ("prefill_tok_s", "decode_tok_s"):
            if key == "decode_tok_s":
                line += f"{row['decode_tok_s']:>10.2f}"
            best = 0.0
            for flash in (0, 1):
                value = theirs.get(flash, {}).get(depth, {}).get(key, 0.0)
                best = max(best, value)
                line += f"{value:>11.1f}" if key == "prefill_tok_s" else f"{value:>11.2f}"
            line += f"{row[key] / best:>7.2f}x" if best > 0 else f"{'':>8}"
        line += f"{row['state_mib']:>11.1f}{row['peak_rss_mib']:>9.0f}"
        print(line)
    print("ratio: lfmrt / llama.cpp's better setting (fa 0 or 1) at that depth")
    if args.json:
        args.json.write_text(json.dumps(dict(lfmrt=ours, llama_cpp=theirs), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
