#!/usr/bin/env python3
"""lfmrt's kernel sets against llama.cpp builds for the same instruction sets, in one run.

    python bench/bench_kernel_sets.py bench/models/lfm2-350m-random --types q4_0,q8_0,f16,q4_k_m \\
        --sets avx2:/opt/llama-avx2/bin,avx512:/opt/llama-native/bin --threads 2 --repeats 3

Each --sets entry pairs an lfmrt kernel set (forced with LFMRT_ISA) with a folder holding
llama.cpp's `llama-bench` and `llama-batched-bench` built for the same instructions: an
AVX2-only build (-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
-DGGML_AVX512=OFF) measures what an AVX2-only CPU gets from either runtime, even on a CPU with
AVX-512. Both runtimes read the same GGUF file per type (bench_generate.py's MODEL-lfmrt-TYPE.gguf,
made by `lfmrt quantize` when missing; f16 is convert_to_gguf.py's MODEL-f16.gguf).

Per type, kernel set and repeat, interleaved (lfmrt, llama.cpp, lfmrt, ...), each in a fresh
process:
  prefill   a --prompt-tokens prompt in one call: lfmrt `Session.append` (bench_generate.py's
            child), llama-bench pp at depth 0
  decode    --gen-tokens greedy steps after that prompt: lfmrt `Session.decode`, llama-bench tg
            at depth --prompt-tokens (llama-bench runs its tests with a warm-up each)
  batch     aggregate decode tok/s of --batch sequences of --batch-prompt tokens generating
            --batch-gen tokens each: lfmrt.Scheduler (bench_sessions.py's child, first step
            left out), llama-batched-bench -npp/-ntg/-npl (its S_TG)
Decode is also given as a fraction of the read-bandwidth roof: weight bytes per token (every
tensor once, the tied embedding once) x tok/s over the bandwidth that --threads threads read,
measured before every repeat in the same run (bench_generate.read_bandwidth). Tables show the
median of the repeats with their range, and the median and range of the per-repeat ratios
lfmrt / llama.cpp (a repeat runs both back to back, so its ratio cancels slow drift).

On a shared machine, ggml's spinning thread pool degrades far more than lfmrt's under other load
(see bench/README.md): each child records how many CPUs other processes kept busy just before it,
and the summary warns when that exceeded 0.25 CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_generate  # noqa: E402  (the sibling bench modules: prompt, files, bandwidth, children)
import bench_sessions  # noqa: E402

MEASURES = ("prefill", "decode", "batch")


# --------------------------------------------------------------------------------------------
# lfmrt children (this script re-invoked with --child), reusing the other benches' children.
# --------------------------------------------------------------------------------------------

def run_child(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.data_file).read_text())
    if args.child == "single":
        ns = argparse.Namespace(model=args.model, gguf=Path(args.gguf), lfmrt_gguf=True, threads=args.threads,
                                lfmrt_api="session", gen_tokens=args.gen_tokens, device="cpu")  # set: LFMRT_ISA
        result = bench_generate.child_lfmrt(ns, data["prompt"])
        result = dict(prefill=result["prefill_tok_s"], decode=result["decode_tok_s"])
    else:
        ns = argparse.Namespace(batch_model=args.gguf, threads=args.threads, data_file=args.data_file,
                                batch_prompt=args.batch_prompt, batch_sizes=[args.batch], batch_gen=args.batch_gen)
        result = dict(batch=bench_sessions.batch_lfmrt(ns)["sizes"][str(args.batch)]["decode_tok_s"])
    result["kernels"] = os.environ.get("LFMRT_ISA", "")
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def spawn_lfmrt(args: argparse.Namespace, part: str, isa: str, gguf: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), str(args.model), "--child", part, "--gguf", str(gguf),
           "--data-file", str(args.data_file), "--threads", str(args.threads), "--gen-tokens", str(args.gen_tokens),
           "--batch", str(args.batch), "--batch-prompt", str(args.batch_prompt), "--batch-gen", str(args.batch_gen)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=dict(os.environ, LFMRT_ISA=isa))
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
    raise RuntimeError(f"lfmrt ({isa}) {part} child failed (exit {r.returncode}):\n{tail}")


# --------------------------------------------------------------------------------------------
# llama.cpp's own benchmark tools.
# --------------------------------------------------------------------------------------------

def run_tool(cmd: list[str], args: argparse.Namespace) -> str:
    env = dict(os.environ)
    if args.llama_passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        cmd = cmd + ["--poll", "0"]
    r = subprocess.run(cmd + args.llama_args.split(), capture_output=True, text=True, timeout=args.timeout, env=env)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{cmd[0]} failed (exit {r.returncode}):\n{tail}")
    return r.stdout


def spawn_llama_single(args: argparse.Namespace, tools: Path, gguf: Path) -> dict:
    p = args.prompt_tokens
    out = run_tool([str(tools / "llama-bench"), "-m", str(gguf), "-t", str(args.threads), "-p", str(p),
                    "-n", str(args.gen_tokens), "-d", f"0,{p}", "-r", "1", "-o", "json"], args)
    tests = json.loads(out)
    prefill = next(t["avg_ts"] for t in tests if t["n_prompt"] == p and t["n_gen"] == 0 and t["n_depth"] == 0)
    decode = next(t["avg_ts"] for t in tests if t["n_gen"] == args.gen_tokens and t["n_depth"] == p)
    return dict(prefill=prefill, decode=decode)


def spawn_llama_batch(args: argparse.Namespace, tools: Path, gguf: Path) -> dict:
    ctx = args.batch * (args.batch_prompt + args.batch_gen) + 64
    out = run_tool([str(tools / "llama-batched-bench"), "-m", str(gguf), "-t", str(args.threads), "-c", str(ctx),
                    "-b", "512", "-ub", "512", "-npp", str(args.batch_prompt), "-ntg", str(args.batch_gen),
                    "-npl", str(args.batch), "--output-format", "jsonl"], args)
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return dict(batch=rows[-1]["speed_tg"])


# --------------------------------------------------------------------------------------------
# Parent.
# --------------------------------------------------------------------------------------------

def gguf_for(args: argparse.Namespace, gguf_type: str) -> Path:
    if gguf_type == "f16":
        path = args.model.resolve().with_name(args.model.resolve().name + "-f16.gguf")
        if not path.is_file():
            subprocess.run([sys.executable, str(HERE / "convert_to_gguf.py"), str(args.model), str(path), "--type", "f16"],
                           check=True)
        return path
    return bench_generate.typed_gguf(argparse.Namespace(model=args.model, maker="lfmrt"), gguf_type)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ({min(values):.1f}-{max(values):.1f})"


def summarize(results: dict, bandwidths: list[float], args: argparse.Namespace) -> None:
    bandwidth = statistics.median(bandwidths)
    print()
    print(f"{args.threads} threads, {args.repeats} interleaved repeats: median (range); read bandwidth "
          f"{bandwidth / 1e9:.2f} GB/s median ({min(bandwidths) / 1e9:.2f}-{max(bandwidths) / 1e9:.2f})")
    print(f"prefill: {args.prompt_tokens}-token prompt; decode: {args.gen_tokens} tokens after it; batch: "
          f"{args.batch} x {args.batch_prompt}-token prompts, {args.batch_gen} tokens each (aggregate decode)")
    header = f"{'set':8}{'type':8}{'measure':9}{'lfmrt tok/s':>26}{'llama.cpp tok/s':>26}{'ratio (per repeat)':>24}{'roof':>14}"
    print(header)
    print("-" * len(header))
    busiest = 0.0
    for (isa, gguf_type), entry in results.items():
        per_token = entry["bytes_per_token"]
        for measure in MEASURES:
            ours = [r[measure] for r in entry["lfmrt"] if measure in r]
            theirs = [r[measure] for r in entry["llama.cpp"] if measure in r]
            if not ours or not theirs:
                continue
            ratios = [a / b for a, b in zip(ours, theirs)]
            roof = ""
            if measure == "decode":
                roof = (f"{statistics.median(ours) * per_token / bandwidth:5.0%} /"
                        f"{statistics.median(theirs) * per_token / bandwidth:4.0%}")
            print(f"{isa:8}{gguf_type:8}{measure:9}{spread(ours):>26}{spread(theirs):>26}"
                  f"{statistics.median(ratios):9.2f}x ({min(ratios):.2f}-{max(ratios):.2f}){roof:>14}")
        busiest = max([busiest] + entry["busy"])
    print("roof: decode tok/s x weight bytes per token / read bandwidth, lfmrt / llama.cpp")
    if args.llama_passive:
        print("llama.cpp ran with passive threads (--llama-passive: OMP_WAIT_POLICY=PASSIVE, --poll 0)")
    if busiest > 0.25:
        print(f"WARNING: other processes kept up to {busiest:.1f} CPUs busy before some children: with "
              f"{args.threads} threads on {os.cpu_count()} CPUs the figures measure contention as much as kernels")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="lfmrt model (Hugging Face directory): tokenizer, GGUF files beside it")
    ap.add_argument("--types", default="q4_0,q8_0,f16,q4_k_m", help="GGUF types (default q4_0,q8_0,f16,q4_k_m)")
    ap.add_argument("--sets", default="avx2:/opt/llama-avx2/bin,avx512:/opt/llama-native/bin",
                    help="comma-separated KERNEL_SET:LLAMA_TOOLS_DIR pairs")
    ap.add_argument("--parts", default="single,batch", help="single (prefill + decode), batch, or both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16, help="parallel sequences of the batch part (default 16)")
    ap.add_argument("--batch-prompt", type=int, default=32)
    ap.add_argument("--batch-gen", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--llama-args", default="", help="extra arguments for both llama.cpp tools")
    ap.add_argument("--llama-passive", action="store_true",
                    help="run llama.cpp's threads passive (OMP_WAIT_POLICY=PASSIVE, --poll 0): they sleep at "
                         "barriers instead of spinning, which on a machine shared with other load is worth up to "
                         "7x to llama.cpp (measured here: tg32 5.7 -> 40 tok/s) and on a quiet one costs it a little")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement to this JSON file")
    ap.add_argument("--child", choices=("single", "batch"), help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    ap.add_argument("--data-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return run_child(args)

    sets = []
    for item in args.sets.split(","):
        isa, _, tools = item.partition(":")
        tools_dir = Path(tools)
        for tool in ("llama-bench", "llama-batched-bench"):
            if not (tools_dir / tool).is_file():
                ap.error(f"--sets {item}: no {tool} in {tools_dir}")
        sets.append((isa.strip(), tools_dir))
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    types = [t.strip() for t in args.types.split(",") if t.strip()]

    prompt = bench_generate.make_prompt(args.model, args.prompt_tokens)
    batch_ids = bench_generate.make_prompt(args.model, 1 + args.batch * args.batch_prompt)
    out_dir = HERE / "out"
    out_dir.mkdir(exist_ok=True)
    args.data_file = out_dir / f"kernel-sets-{os.getpid()}.json"
    args.data_file.write_text(json.dumps(dict(prompt=prompt, batch_ids=batch_ids)))

    files = {t: gguf_for(args, t) for t in types}
    results = {(isa, t): dict(gguf=str(files[t]), bytes_per_token=bench_generate.weight_bytes_per_token(files[t]),
                              lfmrt=[{} for _ in range(args.repeats)], busy=[],
                              **{"llama.cpp": [{} for _ in range(args.repeats)]})
               for isa, _ in sets for t in types}
    bandwidths = []
    try:
        for rep in range(args.repeats):
            bandwidths.append(bench_generate.read_bandwidth(args.threads))
            for gguf_type in types:
                for isa, tools in sets:
                    entry = results[(isa, gguf_type)]
                    for part in parts:
                        for runtime in ("lfmrt", "llama.cpp"):
                            entry["busy"].append(bench_generate.busy_cpus())
                            t0 = time.perf_counter()
                            if runtime == "lfmrt":
                                got = spawn_lfmrt(args, part, isa, files[gguf_type])
                            elif part == "single":
                                got = spawn_llama_single(args, tools, files[gguf_type])
                            else:
                                got = spawn_llama_batch(args, tools, files[gguf_type])
                            got.pop("kernels", None)
                            entry[runtime][rep].update(got)
                            shown = ", ".join(f"{k} {v:.1f}" for k, v in got.items())
                            print(f"[bench] {rep + 1}/{args.repeats} {isa} {gguf_type} {runtime:9} {shown} tok/s "
                                  f"({time.perf_counter() - t0:.0f} s; {entry['busy'][-1]:.1f} CPUs busy before)",
                                  flush=True)
    finally:
        args.data_file.unlink(missing_ok=True)
    summarize(results, bandwidths, args)
    if args.json:
        args.json.write_text(json.dumps(dict(meta=dict(vars(args), model=str(args.model), json=None, data_file=None,
                                                       bandwidths=bandwidths),
                                             results={f"{k[0]}/{k[1]}": v for k, v in results.items()}), indent=1,
                                        default=str) + "\n")
        print(f"[bench] wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
