#!/usr/bin/env python3
"""`lfmrt serve` against llama-cpp-python's server (`python -m llama_cpp.server`), on the same
GGUF file, through HTTP exactly as an app would use them. Not a pass/fail test.

    lfmrt quantize demo bench/models/demo-q4_0.gguf --type q4_0
    python bench/bench_server.py load --gguf bench/models/demo-q4_0.gguf
    python bench/bench_server.py chat --gguf bench/models/lfm2-350m-random-lfmrt-q4_0.gguf
    python bench/bench_server.py inprocess --gguf bench/models/lfm2-350m-random-lfmrt-q4_0.gguf

``load``: --clients concurrent streaming clients send --requests chat requests in all (each
its own question, --max-tokens answer tokens, end-of-turn banned by logit_bias so every answer
has exactly --max-tokens tokens). Reported per runtime: requests/s and output tok/s over the
whole run, p50/p99 time to first token (TTFT: from sending the request to its first content
chunk), p50/p99 time per output token (TPOT: a request's (last - first content time) / (tokens
- 1)), p50/p99 of the gaps between content chunks, and how many requests failed (anything but
HTTP 200 with a finish_reason and [DONE]).

``inprocess``: the ``chat`` conversation through the libraries in-process, each runtime in a
subprocess of its own: lfmrt's ``Model.chat_stream(messages)`` without ``session=`` (the model's
session pool) against llama-cpp-python's ``Llama.create_chat_completion(messages, stream=True)``;
reported: each turn's TTFT (call to first text piece).

``chat``: a --turns-turn conversation, the same turns for every runtime: each turn's prompt is
the history so far (user turns of --user-tokens tokens of pydoc text, scripted assistant answers
of --answer-tokens tokens) plus the new user turn; each request streams --answer-max-tokens
tokens. Reported: each turn's TTFT and, for lfmrt, the prompt tokens its pooled session
already held (usage.prompt_tokens_details.cached_tokens). llama-cpp-python runs as it ships
(``llama.cpp``) and with its state cache on (``llama.cpp+cache``: ``--cache True``, a RAM
cache of llama.cpp states keyed by prompt prefix).

Each runtime is a server process of its own with --threads threads, started fresh for each
measurement; runtimes run one after another (never at once), alternating order across
--repeats. llama-cpp-python's server runs one request at a time (its own lock), with
``--interrupt_requests False`` so a new request waits instead of cutting the running one short.
Figures are noisy on a shared machine: compare ratios within one run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_sessions import corpus_texts  # noqa: E402  (the pydoc text bench_sessions uses)


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------

class Server:
    """One server process; ``url`` is its base URL (``http://127.0.0.1:PORT``)."""

    def __init__(self, runtime: str, gguf: Path, threads: int, n_ctx: int, max_sequences: int) -> None:
        self.runtime = runtime
        env = {**os.environ, "LFMRT_API_KEY": ""}
        if runtime == "lfmrt":
            command = [sys.executable, "-m", "lfmrt.cli.main", "serve", str(gguf), "--port", "0",
                       "--threads", str(threads), "--max-sequences", str(max_sequences),
                       "--max-context", str(n_ctx), "--log-level", "warning", "--model-name", "bench"]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            line = self.process.stdout.readline()
            match = re.search(r"on (http://[^ ]+)/v1", line)
            if not match:
                raise RuntimeError(f"lfmrt serve did not start: {line}{self.process.stdout.read()}")
            self.url = match.group(1)
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                       "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads),
                       "--n_threads_batch", str(threads), "--interrupt_requests", "False", "--verbose", "False",
                       "--model_alias", "bench"]
            if runtime == "llama.cpp+cache":
                command += ["--cache", "True", "--cache_size", str(4 << 30)]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            self.url = f"http://127.0.0.1:{port}"
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.runtime} server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.runtime} server did not come up")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def stream_chat(client, url: str, body: dict) -> dict:
    """One streamed chat request: send time, content chunk times, token count, success."""
    sent = time.perf_counter()
    times: List[float] = []
    usage = None
    finish = None
    done = False
    async with client.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}) as response:
        status = response.status_code
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    times.append(time.perf_counter())
                finish = choice.get("finish_reason") or finish
    tokens = usage["completion_tokens"] if usage else len(times)
    return dict(ok=status == 200 and done and finish is not None, sent=sent, times=times, tokens=tokens,
                usage=usage, finish=finish)


def percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def eos_bias(gguf: Path) -> Dict[str, float]:
    from lfmrt.loaders import load_checkpoint

    return {str(t): -100 for t in load_checkpoint(gguf).generation.eos_token_id}


# --------------------------------------------------------------------------------------------
# load: many concurrent streaming clients
# --------------------------------------------------------------------------------------------

async def load_run(url: str, args: argparse.Namespace, bias: Dict[str, float], runtime: str) -> dict:
    import httpx

    questions = [f"Question {i}: what does the {name} statement do in Python?" for i, name in
                 enumerate(["if", "for", "while", "with", "try", "def", "class", "return", "import", "raise",
                            "yield", "del", "pass", "break", "continue", "global"] * (args.requests // 16 + 1))]
    results: List[dict] = []
    next_index = 0
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(None), limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < args.requests:
                i = next_index
                next_index += 1
                body = {"model": "bench", "messages": [{"role": "user", "content": questions[i]}],
                        "max_tokens": args.max_tokens, "temperature": 0.7, "seed": i, "logit_bias": bias}
                if runtime == "lfmrt":
                    body["stream_options"] = {"include_usage": True}
                try:
                    results.append(await stream_chat(client, url, body))
                except Exception as error:  # counted as a failure, reported
                    results.append(dict(ok=False, error=repr(error), times=[], tokens=0, sent=0.0))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.clients)))
        wall = time.perf_counter() - start
    good = [r for r in results if r["ok"]]
    ttft = [r["times"][0] - r["sent"] for r in good if r["times"]]
    tpot = [(r["times"][-1] - r["times"][0]) / (r["tokens"] - 1) for r in good if len(r["times"]) > 1 and r["tokens"] > 1]
    gaps = [b - a for r in good for a, b in zip(r["times"], r["times"][1:])]
    tokens = sum(r["tokens"] for r in good)
    return dict(requests=len(results), failed=len(results) - len(good), wall_s=wall,
                requests_per_s=len(good) / wall, output_tok_per_s=tokens / wall, output_tokens=tokens,
                ttft_p50_s=percentile(ttft, 50), ttft_p99_s=percentile(ttft, 99),
                tpot_p50_s=percentile(tpot, 50), tpot_p99_s=percentile(tpot, 99),
                gap_p50_s=percentile(gaps, 50), gap_p99_s=percentile(gaps, 99),
                errors=[r.get("error") for r in results if not r["ok"]][:3])


def run_load(args: argparse.Namespace) -> dict:
    bias = eos_bias(args.gguf)
    out: Dict[str, list] = {}
    for repeat in range(args.repeats):
        order = args.runtimes if repeat % 2 == 0 else list(reversed(args.runtimes))
        for runtime in order:
            server = Server(runtime, args.gguf, args.threads, args.n_ctx, args.clients)
            try:
                asyncio.run(load_run(server.url, argparse.Namespace(**{**vars(args), "requests": 4, "clients": 2}),
                                     bias, runtime))  # warm up
                result = asyncio.run(load_run(server.url, args, bias, runtime))
            finally:
                server.close()
            out.setdefault(runtime, []).append(result)
            print(f"[load] {runtime} repeat {repeat}: {json.dumps(result)}", file=sys.stderr, flush=True)
    summary = {runtime: {key: statistics.median(r[key] for r in results)
                         for key in results[0] if isinstance(results[0][key], (int, float))}
               for runtime, results in out.items()}
    print(f"\nload: {args.clients} concurrent streaming clients, {args.requests} requests of {args.max_tokens} "
          f"tokens, {args.gguf.name}, {args.threads} threads (medians of {args.repeats})")
    print(f"{'runtime':<18}{'req/s':>8}{'out tok/s':>11}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT p50':>10}"
          f"{'TPOT p99':>10}{'gap p50':>9}{'gap p99':>9}{'failed':>8}")
    for runtime, s in summary.items():
        print(f"{runtime:<18}{s['requests_per_s']:>8.2f}{s['output_tok_per_s']:>11.1f}{s['ttft_p50_s']:>9.3f}s"
              f"{s['ttft_p99_s']:>9.3f}s{s['tpot_p50_s'] * 1e3:>8.1f}ms{s['tpot_p99_s'] * 1e3:>8.1f}ms"
              f"{s['gap_p50_s'] * 1e3:>7.1f}ms{s['gap_p99_s'] * 1e3:>7.1f}ms{int(s['failed']):>8}")
    if "lfmrt" in summary:
        for runtime, s in summary.items():
            if runtime != "lfmrt":
                print(f"lfmrt / {runtime}: output tok/s x{summary['lfmrt']['output_tok_per_s'] / s['output_tok_per_s']:.2f}, "
                      f"TTFT p50 x{s['ttft_p50_s'] / summary['lfmrt']['ttft_p50_s']:.2f} faster")
    return dict(runs=out, summary=summary)


# --------------------------------------------------------------------------------------------
# chat: a long conversation, the same turns for each runtime
# --------------------------------------------------------------------------------------------

def conversation_turns(gguf: Path, turns: int, user_tokens: int, answer_tokens: int):
    from lfmrt.loaders import load_checkpoint

    tokenizer = load_checkpoint(gguf).tokenizer
    users = corpus_texts(tokenizer, turns, user_tokens)
    answers = corpus_texts(tokenizer, turns, answer_tokens, skip=turns * user_tokens // answer_tokens + 1)
    return users, answers


async def chat_run(url: str, args: argparse.Namespace, users: List[str], answers: List[str], runtime: str) -> list:
    import httpx

    rows = []
    messages: List[dict] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(None)) as client:
        for k in range(args.turns):
            messages.append({"role": "user", "content": users[k]})
            body = {"model": "bench", "messages": messages, "max_tokens": args.answer_max_tokens, "temperature": 0}
            if runtime == "lfmrt":
                body["stream_options"] = {"include_usage": True}
            result = await stream_chat(client, url, body)
            if not result["ok"] or not result["times"]:
                raise RuntimeError(f"{runtime} turn {k + 1} failed: {result}")
            usage = result.get("usage") or {}
            rows.append(dict(turn=k + 1, ttft_s=result["times"][0] - result["sent"],
                             prompt_tokens=usage.get("prompt_tokens"),
                             cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens")))
            messages.append({"role": "assistant", "content": answers[k]})
    return rows


def run_chat(args: argparse.Namespace) -> dict:
    users, answers = conversation_turns(args.gguf, args.turns, args.user_tokens, args.answer_tokens)
    out: Dict[str, list] = {}
    for repeat in range(args.repeats):
        order = args.runtimes if repeat % 2 == 0 else list(reversed(args.runtimes))
        for runtime in order:
            server = Server(runtime, args.gguf, args.threads, args.n_ctx, 4)
            try:
                asyncio.run(chat_run(server.url, argparse.Namespace(**{**vars(args), "turns": 1}),
                                     ["Hello"], ["Hi"], runtime))  # warm up (its own conversation)
                rows = asyncio.run(chat_run(server.url, args, users, answers, runtime))
            finally:
                server.close()
            out.setdefault(runtime, []).append(rows)
            print(f"[chat] {runtime} repeat {repeat}: turn-{args.turns} TTFT {rows[-1]['ttft_s']:.3f}s",
                  file=sys.stderr, flush=True)
    ttft = {rt: [statistics.median(rows[k]["ttft_s"] for rows in runs) for k in range(args.turns)]
            for rt, runs in out.items()}
    print(f"\nchat: {args.turns} turns (user {args.user_tokens} + answer {args.answer_tokens} tokens a turn), "
          f"{args.gguf.name}, {args.threads} threads, TTFT in seconds (medians of {args.repeats})")
    runtimes = list(out)
    print(f"{'turn':>4}{'prompt tok':>11}{'lfmrt cached':>13}" + "".join(f"{rt:>17}" for rt in runtimes))
    first_lfmrt = out.get("lfmrt", [[{}] * args.turns])[0]
    for k in range(args.turns):
        row = first_lfmrt[k] if "lfmrt" in out else {}
        print(f"{k + 1:>4}{row.get('prompt_tokens') or '':>11}{row.get('cached_tokens') or '':>13}"
              + "".join(f"{ttft[rt][k]:>17.3f}" for rt in runtimes))
    if "lfmrt" in ttft:
        for rt in runtimes:
            if rt != "lfmrt":
                print(f"turn-{args.turns} TTFT: lfmrt {ttft['lfmrt'][-1]:.3f}s, {rt} {ttft[rt][-1]:.3f}s "
                      f"(lfmrt x{ttft[rt][-1] / ttft['lfmrt'][-1]:.1f} faster)")
    return dict(runs=out, median_ttft_s=ttft)


# --------------------------------------------------------------------------------------------
# inprocess: the same conversation through the libraries, no HTTP
# --------------------------------------------------------------------------------------------

def inprocess_child(args: argparse.Namespace) -> None:
    """One runtime, all turns, in this process: lfmrt's ``Model.chat_stream(messages)`` without
    ``session=`` (its session pool) or llama-cpp-python's ``Llama.create_chat_completion(messages,
    stream=True)``; prints one JSON line of per-turn TTFTs."""
    users, answers = conversation_turns(args.gguf, args.turns, args.user_tokens, args.answer_tokens)
    if args.child == "lfmrt":
        import lfmrt

        model = lfmrt.Model.load(str(args.gguf), n_threads=args.threads, max_context=args.n_ctx)

        def first_piece(messages: List[dict]) -> None:
            stream = model.chat_stream(messages, max_tokens=args.answer_max_tokens, temperature=0)
            next(piece for piece in stream if piece)
            for _ in stream:
                pass
    else:
        from llama_cpp import Llama

        llm = Llama(model_path=str(args.gguf), n_ctx=args.n_ctx, n_threads=args.threads,
                    n_threads_batch=args.threads, verbose=False)

        def first_piece(messages: List[dict]) -> None:
            stream = llm.create_chat_completion(messages, max_tokens=args.answer_max_tokens, temperature=0, stream=True)
            next(c for c in stream if c["choices"] and c["choices"][0]["delta"].get("content"))
            for _ in stream:
                pass

    first_piece([{"role": "user", "content": "Hello"}])  # warm up (its own conversation)
    messages: List[dict] = []
    ttft = []
    for k in range(args.turns):
        messages.append({"role": "user", "content": users[k]})
        start = time.perf_counter()
        first_piece(messages)
        ttft.append(time.perf_counter() - start)
        messages.append({"role": "assistant", "content": answers[k]})
    print("RESULT " + json.dumps(ttft), flush=True)


def run_inprocess(args: argparse.Namespace) -> dict:
    out: Dict[str, list] = {}
    runtimes = [rt for rt in args.runtimes if rt in ("lfmrt", "llama.cpp")]
    for repeat in range(args.repeats):
        for runtime in runtimes if repeat % 2 == 0 else list(reversed(runtimes)):
            command = [sys.executable, __file__, "inprocess", "--gguf", str(args.gguf), "--child", runtime,
                       "--threads", str(args.threads), "--n-ctx", str(args.n_ctx), "--turns", str(args.turns),
                       "--user-tokens", str(args.user_tokens), "--answer-tokens", str(args.answer_tokens),
                       "--answer-max-tokens", str(args.answer_max_tokens)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            ttft = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
            out.setdefault(runtime, []).append(ttft)
            print(f"[inprocess] {runtime} repeat {repeat}: turn-{args.turns} TTFT {ttft[-1]:.3f}s",
                  file=sys.stderr, flush=True)
    median = {rt: [statistics.median(run[k] for run in runs) for k in range(args.turns)] for rt, runs in out.items()}
    print(f"\ninprocess: {args.turns} turns through chat_stream (no session=) / create_chat_completion, "
          f"{args.gguf.name}, {args.threads} threads, TTFT in seconds (medians of {args.repeats})")
    print(f"{'turn':>4}" + "".join(f"{rt:>12}" for rt in median))
    for k in range(args.turns):
        print(f"{k + 1:>4}" + "".join(f"{median[rt][k]:>12.3f}" for rt in median))
    if len(median) == 2:
        print(f"turn-{args.turns} TTFT: lfmrt {median['lfmrt'][-1]:.3f}s, llama.cpp {median['llama.cpp'][-1]:.3f}s "
              f"(lfmrt x{median['llama.cpp'][-1] / median['lfmrt'][-1]:.1f} faster)")
    return dict(runs=out, median_ttft_s=median)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("load", "chat", "inprocess"))
    parser.add_argument("--gguf", type=Path, required=True, help="the GGUF file both servers load")
    parser.add_argument("--runtimes", type=lambda s: s.split(","), default=None,
                        help="comma-separated: lfmrt, llama.cpp, llama.cpp+cache (default: all for chat, "
                        "lfmrt and llama.cpp for load)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=None, help="context (default: 4096 load, 8192 chat)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--user-tokens", type=int, default=150)
    parser.add_argument("--answer-tokens", type=int, default=100)
    parser.add_argument("--answer-max-tokens", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runtimes is None:
        args.runtimes = ["lfmrt", "llama.cpp"] if args.part == "load" else ["lfmrt", "llama.cpp", "llama.cpp+cache"]
    if args.n_ctx is None:
        args.n_ctx = 4096 if args.part == "load" else 8192
    if args.child:
        inprocess_child(args)
        return 0
    result = {"load": run_load, "chat": run_chat, "inprocess": run_inprocess}[args.part](args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
