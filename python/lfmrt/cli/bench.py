"""``lfmrt bench MODEL``: prefill and decode speed, and peak memory.

Each run prefills ``--prompt-tokens`` tokens into a fresh session and decodes ``--gen-tokens``
more (greedy, end-of-sequence ignored); the best of ``--repeat`` runs is reported, as
llama-bench does. Peak memory is this process's peak resident set (weights are memory-mapped,
so it counts the pages actually touched), followed by where it goes: Python and its libraries
(before the model), the checkpoint's file pages and the tokenizer, weights repacked at load,
the session's state (KV cache, conv states, checkpoints), the activation buffers, and what is
left (allocator slack, the sampler, Python objects). The split needs Linux's /proc.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any, Dict, List

import numpy as np

from ..errors import LoadError
from ..generation.completion import Timings
from . import common

NAME = "bench"
# Token ids below this are LFM2's special tokens; prompts use ordinary text tokens only.
FIRST_TEXT_TOKEN = 14


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Adds ``lfmrt bench``."""
    parser = subparsers.add_parser(NAME, help="measure prefill and decode speed and peak memory",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_model_arguments(parser)
    parser.add_argument("--prompt-tokens", "-p", type=int, default=512, metavar="N", help="prompt length (default 512)")
    parser.add_argument("--gen-tokens", "-n", type=int, default=128, metavar="N", help="tokens to decode (default 128)")
    parser.add_argument("--repeat", "-r", type=int, default=3, metavar="N", help="runs; the best is reported (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def memory_now() -> Dict[str, int]:
    """This process's resident set now, and its file-backed part (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {}
    kib = lambda name: int(fields[name].split()[0]) * 1024 if name in fields else 0  # noqa: E731
    return {"rss": kib("VmRSS"), "file": kib("RssFile")}


def memory_breakdown(before: Dict[str, int], loaded: Dict[str, int], model: Any, session_bytes: int) -> Dict[str, int]:
    """Where the peak resident set goes, from the resident sets before and after loading."""
    peak = peak_rss_bytes()
    if not before or not loaded:
        return {"peak": peak}
    parts = {
        "python_and_libraries": before["rss"],
        "repacked_weights": model.weight_bytes,
        "session_state": session_bytes,
        "activations": model.workspace_bytes,
    }
    # Loading adds the mapped checkpoint's touched pages, the tokenizer, the chat template and
    # the repacked weights; the last are known exactly, the rest is what loading added besides.
    parts["checkpoint_pages_and_tokenizer"] = max(0, loaded["rss"] - before["rss"] - model.weight_bytes)
    parts["other"] = max(0, peak - sum(parts.values()))
    parts["peak"] = peak
    return parts


def peak_rss_bytes() -> int:
    """This process's peak resident set size."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns the exit status."""
    if args.prompt_tokens < 1 or args.gen_tokens < 1 or args.repeat < 1:
        return common.fail(f"lfmrt {NAME}", ValueError("--prompt-tokens, --gen-tokens and --repeat must be at least 1"))
    try:
        before = memory_now()
        start = time.perf_counter()
        model = common.load_model(args)
        loaded = memory_now()
        load_seconds = time.perf_counter() - start
        rng = np.random.default_rng(0)
        high = max(FIRST_TEXT_TOKEN + 1, model.config.vocab_size - 2)
        prompt = [int(t) for t in rng.integers(FIRST_TEXT_TOKEN, high, size=args.prompt_tokens)]
        runs: List[Timings] = []
        session_bytes = 0
        for _ in range(args.repeat):
            session = model.session()
            completion = model.generate(prompt, max_tokens=args.gen_tokens, ignore_eos=True, temperature=0.0, session=session)
            runs.append(completion.timings)
            session_bytes = session.memory_bytes
    except (LoadError, ValueError) as error:
        return common.fail(f"lfmrt {NAME}", error)
    results: Dict[str, Any] = {
        "model": args.model,
        "threads": model.n_threads,
        "device": model.device,
        "kernels": model.kernel_set,
        "load_seconds": round(load_seconds, 3),
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "prefill_tokens_per_s": round(max(t.prefill_tokens_per_s for t in runs), 2),
        "decode_tokens_per_s": round(max(t.decode_tokens_per_s for t in runs), 2),
        "session_state_bytes": session_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "memory_bytes": memory_breakdown(before, loaded, model, session_bytes),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"model            {results['model']}  (on {results['device']}: {results['kernels']}; {model.n_threads} threads)")
    print(f"load             {load_seconds:.2f} s")
    print(f"prefill          {results['prefill_tokens_per_s']:.1f} tok/s  ({args.prompt_tokens} tokens, best of {args.repeat})")
    print(f"decode           {results['decode_tokens_per_s']:.1f} tok/s  ({args.gen_tokens} tokens, best of {args.repeat})")
    print(f"session state    {session_bytes / 2**20:.1f} MiB")
    print(f"peak memory      {results['peak_rss_bytes'] / 2**20:.1f} MiB (resident)")
    labels = {
        "python_and_libraries": "Python and libraries",
        "checkpoint_pages_and_tokenizer": "checkpoint pages, tokenizer",
        "repacked_weights": "weights repacked at load",
        "session_state": "session state (KV, conv)",
        "activations": "activation buffers",
        "other": "other",
    }
    for key, label in labels.items():
        if key in results["memory_bytes"]:
            print(f"  {label:30} {results['memory_bytes'][key] / 2**20:8.1f} MiB")
    return 0
