#!/usr/bin/env python3
"""Prefill speed, decode speed and peak memory of lfmrt, side by side with llama.cpp.

    python bench/bench_generate.py bench/models/lfm2-350m-random \\
        --gguf bench/models/lfm2-350m-random-f16.gguf --threads 2 --repeats 3

Each measurement runs in a fresh subprocess (this script re-invoked with --child), so the
peak resident set size (`ru_maxrss` at the end of the child) belongs to one runtime alone and
no runtime profits from another's warm state. Repeats are interleaved (lfmrt, llama.cpp,
lfmrt, llama.cpp, ...) so slow drift of the machine (other jobs, thermals) hits both alike;
the table shows the median of the repeats and the ratios lfmrt / llama.cpp. Figures are
noisy on a shared machine: compare ratios taken within one run, not numbers across runs.

Both runtimes get the same token ids: a prompt of --prompt-tokens ids (bos, then text from
Python's pydoc topics encoded with MODEL's tokenizer.json), then --gen-tokens greedy decode
steps. Each child first warms up (a short prompt and a few decode steps, so weights are paged
in), starts a fresh sequence, and then times:

  prefill   one call that runs the whole prompt (lfmrt `Session.append(prompt)`,
            llama.cpp `Llama.eval(prompt)` with n_batch 512)
  decode    --gen-tokens steps of: argmax of the last logits, then run that one token

With --lfmrt-api generate, the lfmrt child instead reports the timings of
`Model.generate(prompt, max_tokens=N, temperature=0, ignore_eos=True)`.

--device runs lfmrt on another device than the CPU (`opencl`, `opencl:1`, ...; `lfmrt.devices()`
lists them); llama.cpp still runs on the CPU, so measure lfmrt alone there (--runtimes lfmrt) unless
the comparison across devices is the point. "device MiB" is the memory the lfmrt backend holds
itself: all weights on a device (only the CPU's repacked panels on the CPU, which reads other
weights in place from the mapped file) plus the session's KV pages and conv states. On a CPU
OpenCL runtime (PoCL, Intel's) the speeds are a smoke test of the OpenCL path, not GPU figures.

llama.cpp is measured when `llama_cpp` (llama-cpp-python) imports and a GGUF of the same model
is available: --gguf FILE, else MODEL-f16.gguf next to MODEL (made with convert_to_gguf.py
when missing). Use --runtimes to measure only one side.

With --baseline DIR, a third runtime "baseline" is another lfmrt build (DIR is a folder holding
an `lfmrt` package, e.g. `pip install --no-deps --target DIR .` of an earlier commit), measured
in the same interleaved run: `--runtimes lfmrt,baseline --baseline DIR` gives before/after
ratios of a change (the table's ratio column is always the first runtime over the second).

With --types f16,q8_0,q4_0 both runtimes load the *same* GGUF file, one type after another:
MODEL-lfmrt-TYPE.gguf, written by `lfmrt quantize` when missing (--maker llama.cpp instead makes
MODEL-llamacpp-TYPE.gguf with llama.cpp's converter and `llama_model_quantize`). Each type gets its
table, then a summary adds decode as a fraction of the memory-bandwidth roof: the bytes of
weights one decode step reads (every tensor, the embedding table counted once when it is also
the LM head, else only the head) times decode tok/s, divided by the read bandwidth measured in
the same run (--threads threads reading a 1 GiB buffer with read_bandwidth.c, best of 5). KV-cache reads are left out
(small at these lengths), so the fraction slightly understates the traffic.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNTIMES = ("lfmrt", "llama.cpp", "baseline")
WARMUP_PROMPT, WARMUP_DECODE = 32, 4


# --------------------------------------------------------------------------------------------
# Children: one runtime, one measurement, one JSON line on stdout.
# --------------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def timed_decode(first_logits, step, n: int) -> tuple[list[int], float]:
    """Greedy decode: n times, pick argmax of the last logits and run that token."""
    import numpy as np

    tokens: list[int] = []
    logits = first_logits
    t0 = time.perf_counter()
    for _ in range(n):
        tok = int(np.argmax(logits))
        tokens.append(tok)
        logits = step(tok)
    return tokens, time.perf_counter() - t0


def child_lfmrt(args: argparse.Namespace, prompt: list[int]) -> dict:
    import lfmrt

    t0 = time.perf_counter()
    # A baseline build older than the backend interface has no device= (the CPU was its only one).
    where = {} if args.device == "cpu" else {"device": args.device}
    model = lfmrt.Model.load(args.gguf if args.lfmrt_gguf else args.model, n_threads=args.threads, **where)
    load_s = time.perf_counter() - t0

    def device_mb(session) -> float:
        if not hasattr(model, "weight_bytes"):  # a baseline build from before the breakdown
            return float("nan")
        return (model.weight_bytes + session.memory_bytes) / 2**20

    if args.lfmrt_api == "generate":
        model.generate(prompt[:WARMUP_PROMPT], max_tokens=WARMUP_DECODE, temperature=0, ignore_eos=True)
        session = model.session()
        c = model.generate(prompt, max_tokens=args.gen_tokens, temperature=0, ignore_eos=True, session=session)
        t = c.timings
        assert t.prompt_tokens == len(prompt), (t.prompt_tokens, len(prompt))
        return dict(load_s=load_s, prefill_tok_s=t.prefill_tokens_per_s, decode_tok_s=t.decode_tokens_per_s,
                    tokens=list(c.tokens), device=getattr(model, "device", "cpu"), device_mb=device_mb(session))

    session = model.session()
    logits = session.append(prompt[:WARMUP_PROMPT])
    timed_decode(logits, session.decode, WARMUP_DECODE)
    session.reset()  # a fresh sequence; the warm-up's state is forgotten

    t0 = time.perf_counter()
    logits = session.append(prompt)
    prefill_s = time.perf_counter() - t0
    tokens, decode_s = timed_decode(logits, session.decode, args.gen_tokens)
    return dict(load_s=load_s, prefill_tok_s=len(prompt) / prefill_s, decode_tok_s=len(tokens) / decode_s,
                tokens=tokens, device=getattr(model, "device", "cpu"), device_mb=device_mb(session))


def child_llama_cpp(args: argparse.Namespace, prompt: list[int]) -> dict:
    import numpy as np
    import llama_cpp

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(args.gguf), n_ctx=4096, n_threads=args.threads,
                          n_threads_batch=args.threads, n_batch=512, verbose=False, logits_all=False)
    load_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    def step(tok: int):
        llm.eval([tok])
        return last_logits()

    llm.eval(prompt[:WARMUP_PROMPT])
    timed_decode(last_logits(), step, WARMUP_DECODE)
    llm.reset()  # clears the KV cache and the conv (recurrent) state too

    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - t0
    tokens, decode_s = timed_decode(last_logits(), step, args.gen_tokens)
    return dict(load_s=load_s, prefill_tok_s=len(prompt) / prefill_s, decode_tok_s=len(tokens) / decode_s,
                tokens=tokens)


def run_child(args: argparse.Namespace) -> int:
    prompt = json.loads(Path(args.prompt_file).read_text())
    fn = child_llama_cpp if args.child == "llama.cpp" else child_lfmrt  # baseline: another lfmrt
    result = fn(args, prompt)
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# Parent: prompt, availability, interleaved repeats, table.
# --------------------------------------------------------------------------------------------

def make_prompt(model_dir: Path, n: int) -> list[int]:
    """bos + text tokens from the model's tokenizer (deterministic), exactly n ids."""
    bos, vocab = 1, None
    tok_file = model_dir / "tokenizer.json" if model_dir.is_dir() else None
    ids: list[int] = []
    if tok_file is not None and tok_file.is_file():
        from tokenizers import Tokenizer
        import pydoc_data.topics as topics

        tok = Tokenizer.from_file(str(tok_file))
        vocab = tok.get_vocab_size()
        bos = tok.token_to_id("<|startoftext|>") or bos
        for key in sorted(topics.topics):
            ids += tok.encode(topics.topics[key], add_special_tokens=False).ids
            if len(ids) >= n:
                break
    if len(ids) < n - 1:  # no tokenizer: a fixed pseudo-random sequence of ordinary ids
        import random

        rng = random.Random(0)
        ids = [rng.randrange(100, vocab or 32000) for _ in range(n)]
    return [bos] + ids[: n - 1]


def probe_llama_cpp() -> str | None:
    """llama_cpp's version if it imports (checked in a subprocess), else None."""
    r = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_gguf(args: argparse.Namespace) -> Path | None:
    if args.gguf is not None:
        if not args.gguf.is_file():
            sys.exit(f"error: --gguf {args.gguf} does not exist")
        return args.gguf
    model = args.model.resolve()
    default = model.with_name(model.name + "-f16.gguf")
    if default.is_file():
        return default
    print(f"[bench] no GGUF given; converting {model} -> {default}", flush=True)
    r = subprocess.run([sys.executable, str(HERE / "convert_to_gguf.py"), str(model), str(default), "--type", "f16"])
    if r.returncode != 0 or not default.is_file():
        print("[bench] conversion failed; measuring lfmrt alone", flush=True)
        return None
    return default


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs other processes keep busy: sampled from /proc/stat while this script
    sleeps between children (0 on a quiet machine; nan where /proc/stat is missing)."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    total = total1 - total0
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / total) if total > 0 else float("nan")


def spawn(runtime: str, args: argparse.Namespace, prompt_file: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), str(args.model), "--child", runtime,
           "--prompt-file", str(prompt_file), "--threads", str(args.threads),
           "--gen-tokens", str(args.gen_tokens), "--lfmrt-api", args.lfmrt_api, "--device", args.device]
    if args.gguf is not None:
        cmd += ["--gguf", str(args.gguf)]
    if args.lfmrt_gguf:
        cmd.append("--lfmrt-gguf")
    env = dict(os.environ)
    if runtime == "baseline":  # the other build's package first on the path
        env["PYTHONPATH"] = os.pathsep.join([str(args.baseline), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    busy_before = busy_cpus()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    wall = time.perf_counter() - t0
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            res["wall_s"] = wall
            res["busy_cpus_before"] = busy_before
            return res
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"{runtime} child failed (exit {r.returncode}):\n{tail}")


def median(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def print_table(results: dict[str, list[dict]], args: argparse.Namespace) -> None:
    rows = [
        ("prefill tok/s", "prefill_tok_s", "{:.1f}", "higher is better"),
        ("decode tok/s", "decode_tok_s", "{:.2f}", "higher is better"),
        ("peak RSS MiB", "peak_rss_mb", "{:.0f}", "lower is better"),
        ("load s", "load_s", "{:.2f}", ""),
    ]
    names = [rt for rt in results if results.get(rt)]
    if results.get("lfmrt") and "device_mb" in results["lfmrt"][0]:
        rows.insert(3, ("device MiB", "device_mb", "{:.0f}", ""))
    both = len(names) >= 2
    ratio_label = f"{names[0]}/{names[1]}" if both else ""
    header = f"{'':16}" + "".join(f"{n:>14}" for n in names) + (f"{ratio_label:>18}" if both else "")
    print()
    print(f"model {args.model}" + (f"  |  gguf {args.gguf}" if "llama.cpp" in names or args.lfmrt_gguf else ""))
    print(f"prompt {args.prompt_tokens} tokens, decode {args.gen_tokens} tokens, {args.threads} threads, "
          f"median of {args.repeats} interleaved repeat(s)")
    if results.get("lfmrt"):
        print(f"lfmrt on {results['lfmrt'][0].get('device', 'cpu')}"
              + ("" if args.device.startswith("cpu") else "; llama.cpp, if measured, on the CPU"))
    print(header)
    print("-" * len(header))
    for label, key, fmt, note in rows:
        vals = [median(results[n], key) if key in results[n][0] else float("nan") for n in names]
        line = f"{label:16}" + "".join(f"{fmt.format(v):>14}" for v in vals)
        if both and vals[1] > 0:
            line += f"{vals[0] / vals[1]:>17.2f}x  {note}"
        print(line)
    for n in names:
        spread = ", ".join(f"{r['prefill_tok_s']:.1f}/{r['decode_tok_s']:.2f}" for r in results[n])
        print(f"  {n} per repeat (prefill/decode tok/s): {spread}")
    if both and len(results[names[0]]) == len(results[names[1]]) > 1:
        # Each repeat runs the two back to back, so its ratio cancels the machine's slow drift in
        # memory bandwidth that moves both medians; the spread shows how far one run can be trusted.
        for label, key in (("prefill", "prefill_tok_s"), ("decode", "decode_tok_s")):
            ratios = sorted(a[key] / b[key] for a, b in zip(results[names[0]], results[names[1]]) if b[key] > 0)
            if ratios:
                print(f"  {label} ratio per repeat: median {statistics.median(ratios):.2f}x, "
                      f"range {ratios[0]:.2f}-{ratios[-1]:.2f}x")
    busiest = max(r["busy_cpus_before"] for n in names for r in results[n])
    if busiest > 0.25:
        print(f"  WARNING: other processes kept up to {busiest:.1f} CPUs busy during this run; with "
              f"{args.threads} threads on {os.cpu_count()} CPUs the figures (and the ratios: spinning "
              f"thread pools degrade differently) measure contention, not kernels")
    if both:
        d = first_divergence(results[names[0]][0]["tokens"], results[names[1]][0]["tokens"])
        agree = "all greedy tokens agree" if d is None else f"greedy tokens agree up to step {d}"
        if "llama.cpp" not in names[:2]:
            same = "two lfmrt builds"
        else:
            same = "same file, different kernels" if args.lfmrt_gguf else "bf16 vs f16 weights, different kernels"
        print(f"  {agree} (informational: {same})")


# --------------------------------------------------------------------------------------------
# --types: both runtimes on the same GGUF file per type, and the memory-bandwidth roof.
# --------------------------------------------------------------------------------------------

LLAMA_FTYPES = {"f16": 1, "q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}


def typed_gguf(args: argparse.Namespace, gguf_type: str) -> Path:
    """MODEL-<maker>-TYPE.gguf next to MODEL, made by lfmrt's writer or llama.cpp's tools when missing."""
    model = args.model.resolve()
    maker = args.maker.replace(".", "")
    path = model.with_name(f"{model.name}-{maker}-{gguf_type}.gguf")
    if path.is_file():
        return path
    print(f"[bench] making {path.name} with {args.maker}", flush=True)
    if args.maker == "lfmrt":
        r = subprocess.run([sys.executable, "-m", "lfmrt.cli.main", "quantize", str(model), str(path),
                            "--type", gguf_type, "--quiet"])
    else:
        f16 = model.with_name(model.name + "-f16.gguf")
        if not f16.is_file():
            subprocess.run([sys.executable, str(HERE / "convert_to_gguf.py"), str(model), str(f16), "--type", "f16"],
                           check=True)
        code = (f"import llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); "
                f"p.ftype = {LLAMA_FTYPES[gguf_type]}; "
                f"raise SystemExit(llama_cpp.llama_model_quantize({str(f16).encode()!r}, {str(path).encode()!r}, p))")
        r = subprocess.run([sys.executable, "-c", code])
    if r.returncode != 0 or not path.is_file():
        sys.exit(f"error: could not make {path}")
    return path


def weight_bytes_per_token(path: Path) -> int:
    """Bytes of weights one decode step reads from the GGUF at path (see the module docstring)."""
    import gguf

    sizes = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(path).tensors}
    total = sum(sizes.values())
    if "output.weight" in sizes:  # untied: the embedding table is only looked up, one row a token
        total -= sizes.get("token_embd.weight", 0)
    return total


def read_bandwidth(threads: int, mib: int = 1024, repeats: int = 5) -> float:
    """Bytes per second that `threads` threads read from a 1 GiB buffer: the best of `repeats`
    passes of read_bandwidth.c (a loop of loads only), compiled here for this machine once."""
    source = HERE / "read_bandwidth.c"
    binary = HERE / "out" / "read_bandwidth"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        binary.parent.mkdir(exist_ok=True)
        compiler = os.environ.get("CC", "cc")
        subprocess.run([compiler, "-O2", "-march=native", "-pthread", str(source), "-o", str(binary)], check=True)
    done = subprocess.run([str(binary), str(threads), str(mib), str(repeats)], check=True, capture_output=True,
                          text=True)
    return float(done.stdout)


def print_summary(per_type: dict, bandwidth: float, args: argparse.Namespace) -> None:
    """One line per type and runtime: speeds, RSS, ratios and the bandwidth-roof fraction."""
    print()
    print(f"same GGUF file per type ({args.maker}-made), {args.threads} threads, median of {args.repeats}; "
          f"read bandwidth {bandwidth / 1e9:.2f} GB/s")
    header = (f"{'type':8}{'runtime':11}{'prefill tok/s':>15}{'decode tok/s':>14}{'peak RSS MiB':>14}"
              f"{'MB/token':>10}{'roof':>8}")
    print(header)
    print("-" * len(header))
    for gguf_type, entry in per_type.items():
        per_token = entry["bytes_per_token"]
        for rt, runs in entry["results"].items():
            if not runs:
                continue
            decode = median(runs, "decode_tok_s")
            print(f"{gguf_type:8}{rt:11}{median(runs, 'prefill_tok_s'):15.1f}{decode:14.2f}"
                  f"{median(runs, 'peak_rss_mb'):14.0f}{per_token / 1e6:10.0f}{decode * per_token / bandwidth:8.0%}")
        measured = [rt for rt, runs in entry["results"].items() if runs]
        if len(measured) >= 2:
            ours, theirs = entry["results"][measured[0]], entry["results"][measured[1]]
            print(f"{'':8}{'ratio':11}{median(ours, 'prefill_tok_s') / median(theirs, 'prefill_tok_s'):14.2f}x"
                  f"{median(ours, 'decode_tok_s') / median(theirs, 'decode_tok_s'):13.2f}x"
                  f"{median(ours, 'peak_rss_mb') / median(theirs, 'peak_rss_mb'):13.2f}x   "
                  f"({measured[0]} / {measured[1]})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="lfmrt model (Hugging Face directory)")
    ap.add_argument("--gguf", type=Path, default=None, help="the same model as GGUF, for llama.cpp")
    ap.add_argument("--threads", type=int, default=2, help="compute threads for both runtimes (default 2)")
    ap.add_argument("--device", default="cpu",
                    help="where lfmrt runs: cpu (default), cpu:avx2, opencl, opencl:N, ... (lfmrt.devices())")
    ap.add_argument("--prompt-tokens", type=int, default=512, help="prompt length for prefill (default 512)")
    ap.add_argument("--gen-tokens", type=int, default=128, help="greedy decode steps (default 128)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats per runtime (default 3)")
    ap.add_argument("--runtimes", default="lfmrt,llama.cpp",
                    help="comma-separated subset of: lfmrt, llama.cpp, baseline (default lfmrt,llama.cpp)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="folder holding another lfmrt build (the 'baseline' runtime), for before/after runs")
    ap.add_argument("--lfmrt-api", choices=("session", "generate"), default="session",
                    help="time lfmrt through Session.append (default) or Model.generate's timings")
    ap.add_argument("--json", type=Path, default=None, help="also write all results to this JSON file")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per child run (default 900)")
    ap.add_argument("--types", default=None,
                    help="comma-separated GGUF types (f16, q8_0, q4_0, q4_k_m, ...): both runtimes on the same file")
    ap.add_argument("--maker", choices=("lfmrt", "llama.cpp"), default="lfmrt",
                    help="who writes the --types files (default lfmrt)")
    ap.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    ap.add_argument("--lfmrt-gguf", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        return run_child(args)

    wanted = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    bad = set(wanted) - set(RUNTIMES)
    if bad:
        ap.error(f"unknown runtime(s): {', '.join(sorted(bad))}")
    if args.prompt_tokens < WARMUP_PROMPT or args.gen_tokens < 1 or args.repeats < 1:
        ap.error(f"need --prompt-tokens >= {WARMUP_PROMPT}, --gen-tokens >= 1, --repeats >= 1")

    runtimes = []
    if "lfmrt" in wanted:
        r = subprocess.run([sys.executable, "-c", "import lfmrt"], capture_output=True, text=True)
        if r.returncode == 0:
            runtimes.append("lfmrt")
        else:
            why = (r.stderr.strip().splitlines() or ["?"])[-1]
            print(f"[bench] lfmrt does not import ({why}); skipping it")
    llama_version = None
    if "llama.cpp" in wanted:
        llama_version = probe_llama_cpp()
        if llama_version is None:
            print("[bench] llama_cpp (llama-cpp-python) does not import; skipping llama.cpp")
        elif args.types:
            runtimes.append("llama.cpp")
        else:
            args.gguf = ensure_gguf(args)
            if args.gguf is not None:
                runtimes.append("llama.cpp")
    if "baseline" in wanted:
        if args.baseline is None or not (args.baseline / "lfmrt").is_dir():
            ap.error("the baseline runtime needs --baseline DIR, a folder holding an lfmrt package")
        runtimes.append("baseline")
    if not runtimes:
        print("error: no runtime to measure", file=sys.stderr)
        return 1

    prompt = make_prompt(args.model, args.prompt_tokens)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    prompt_file = out_dir / f"prompt-{os.getpid()}.json"
    prompt_file.write_text(json.dumps(prompt))

    def measure() -> dict[str, list[dict]]:
        results: dict[str, list[dict]] = {rt: [] for rt in runtimes}
        for rep in range(args.repeats):
            for rt in runtimes:
                res = spawn(rt, args, prompt_file)
                results[rt].append(res)
                print(f"[bench] repeat {rep + 1}/{args.repeats} {rt:9}: prefill {res['prefill_tok_s']:.1f} tok/s, "
                      f"decode {res['decode_tok_s']:.2f} tok/s, peak RSS {res['peak_rss_mb']:.0f} MiB "
                      f"(other load before: {res['busy_cpus_before']:.1f} CPUs busy)", flush=True)
        return results

    meta = dict(model=str(args.model), gguf=str(args.gguf) if args.gguf else None, threads=args.threads,
                device=args.device,
                prompt_tokens=args.prompt_tokens, gen_tokens=args.gen_tokens, repeats=args.repeats,
                lfmrt_api=args.lfmrt_api, llama_cpp_version=llama_version, machine=platform.machine(),
                processor=_cpu_name(), cpus=os.cpu_count())
    try:
        if args.types:
            args.lfmrt_gguf = True
            per_type: dict[str, dict] = {}
            for gguf_type in [t.strip() for t in args.types.split(",") if t.strip()]:
                args.gguf = typed_gguf(args, gguf_type)
                print(f"[bench] {gguf_type}: {args.gguf}", flush=True)
                results = measure()
                print_table(results, args)
                per_type[gguf_type] = dict(gguf=str(args.gguf), bytes_per_token=weight_bytes_per_token(args.gguf),
                                           results=results)
            bandwidth = read_bandwidth(args.threads)
            print_summary(per_type, bandwidth, args)
            output = dict(meta=dict(meta, maker=args.maker, read_bandwidth_bytes_s=bandwidth), per_type=per_type)
        else:
            results = measure()
            print_table(results, args)
            output = dict(meta=meta, results=results)
    finally:
        prompt_file.unlink(missing_ok=True)

    if args.json:
        args.json.write_text(json.dumps(output, indent=1) + "\n")
        print(f"[bench] wrote {args.json}")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
