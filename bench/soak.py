#!/usr/bin/env python3
"""Soak run: many sessions created, forked, rewound, saved and restored, and dropped, while the
process's resident memory is sampled; it must come back to a flat line (no leak, no creep).

    python bench/soak.py                                   # 100,000 tokens on the demo model
    python bench/soak.py --tokens 20000 --json bench/out/soak.json

Each round runs five phases of about tokens / rounds / 5 generated tokens each, on the demo model
(python/lfmrt/demo), sampling at temperature 0.8 with a new seed per call, ignoring eos so each
call generates exactly what it asks for:

  create-drop   sessions made, each answers a prompt, then all dropped
  fork          one prompted parent, forks that each continue it their own way, all dropped
  rewind        one session that answers, rewinds to a random earlier point and answers again
  save-restore  sessions that answer, are saved to bytes and dropped, restored and continued
  pool          a pool of live sessions under random operations: answer, fork over another,
                rewind, save and restore, drop and replace; all dropped at the end

A thread samples RSS (/proc/self/statm) every --sample-ms; at each phase's end, with every
session dropped and the garbage collected, one more sample is taken. The summary gives RSS at
the start (model loaded, one warm-up answer), the peak, at the end of each phase (first and last
round) and the least-squares slope of the phase-end samples against tokens over the second half
of the run. Not a pass/fail test: it prints what it measured.
"""
from __future__ import annotations

import argparse
import array
import ctypes
import gc
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import lfmrt

PAGE = os.sysconf("SC_PAGE_SIZE")
PHASES = ("create-drop", "fork", "rewind", "save-restore", "pool")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_in_use() -> int:
    """Bytes malloc has handed out and not had back (glibc's mallinfo2: heap in use plus mmapped
    blocks), or -1 where there is no mallinfo2. Flat while RSS creeps means fragmentation or
    cached free memory, not a leak."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return -1
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


class Soak:
    def __init__(self, model: lfmrt.Model, prompts: List[List[int]], answer_tokens: int, rng: random.Random) -> None:
        self.model, self.prompts, self.answer_tokens, self.rng = model, prompts, answer_tokens, rng
        self.generated = 0
        self.calls = 0

    def prompt(self) -> List[int]:
        return self.rng.choice(self.prompts)

    def answer(self, session: lfmrt.Session, prompt: Optional[List[int]] = None) -> None:
        """Continues what ``session`` holds (plus ``prompt``) by answer_tokens sampled tokens."""
        tokens = session.tokens + (prompt or [])
        room = self.model.max_context - len(tokens) - 1
        if room < self.answer_tokens:  # a long-lived session: start it over rather than overflow
            session.reset()
            tokens = self.prompt()
        self.calls += 1
        completion = self.model.generate(
            tokens, session=session, max_tokens=self.answer_tokens, ignore_eos=True, temperature=0.8, seed=self.calls
        )
        self.generated += len(completion.tokens)

    def create_drop(self, budget: int) -> None:
        sessions = []
        while self.generated < budget:
            session = self.model.session()
            self.answer(session, self.prompt())
            sessions.append(session)
        del sessions

    def fork(self, budget: int) -> None:
        parent = self.model.session()
        parent.prefill(self.prompt())
        forks = []
        while self.generated < budget:
            child = parent.fork()
            self.answer(child)
            forks.append(child)

    def rewind(self, budget: int) -> None:
        session = self.model.session()
        self.answer(session, self.prompt())
        while self.generated < budget:
            session.rewind(self.rng.randrange(1, session.n_tokens))
            self.answer(session)

    def save_restore(self, budget: int) -> None:
        while self.generated < budget:
            session = self.model.session()
            self.answer(session, self.prompt())
            snapshot = session.save()
            del session
            restored = self.model.load_session(snapshot)
            self.answer(restored)

    def pool(self, budget: int, size: int = 16) -> None:
        pool = [self.model.session() for _ in range(size)]
        while self.generated < budget:
            i, j = self.rng.randrange(size), self.rng.randrange(size)
            op = self.rng.random()
            if op < 0.4 or pool[i].n_tokens < 2:
                self.answer(pool[i], self.prompt() if pool[i].n_tokens == 0 else None)
            elif op < 0.55:
                pool[j] = pool[i].fork()
            elif op < 0.7:
                pool[i].rewind(self.rng.randrange(1, pool[i].n_tokens))
            elif op < 0.85:
                pool[i] = self.model.load_session(pool[i].save())
            else:
                pool[i] = self.model.session()


def slope_per_10k(points: List[Dict[str, float]]) -> float:
    """Least-squares slope of rss against tokens, in MB per 10,000 tokens."""
    xs = [p["tokens"] for p in points]
    ys = [p["rss"] / 2**20 for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return 1e4 * sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--tokens", type=int, default=100_000, help="generated tokens in all")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--answer-tokens", type=int, default=250, help="tokens per generate call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample-ms", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    args = parser.parse_args()

    model = lfmrt.Model.load(args.model, n_threads=args.threads)
    text = lfmrt.demo.heldout_text() if args.model == "demo" else "The quick brown fox jumps over the lazy dog. " * 200
    ids = model.tokenize(text)
    rng = random.Random(args.seed)
    prompts = [ids[s : s + rng.randrange(20, 200)] for s in (rng.randrange(0, len(ids) - 200) for _ in range(64))]
    soak = Soak(model, prompts, args.answer_tokens, rng)
    soak.answer(model.session(), prompts[0])  # warm-up: first-call allocations are not a trend
    gc.collect()

    # (seconds, tokens, rss) triples in one flat array of doubles: 24 bytes a sample, where a dict
    # per sample would add ~5 Python objects each and show up as a slope of its own.
    samples = array.array("d")
    marks: List[Dict[str, float]] = []
    start_time = time.perf_counter()

    def sample() -> Dict[str, float]:
        point = {"t": time.perf_counter() - start_time, "tokens": soak.generated, "rss": rss_bytes()}
        samples.extend((point["t"], point["tokens"], point["rss"]))
        return point

    start = sample()
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(args.sample_ms / 1000):
            sample()

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    per_phase = args.tokens // (args.rounds * len(PHASES))
    for round_index in range(args.rounds):
        for phase in PHASES:
            getattr(soak, phase.replace("-", "_"))(soak.generated + per_phase)
            gc.collect()
            marks.append({"round": round_index, "phase": phase, "malloc": malloc_in_use(),
                          "python_blocks": sys.getallocatedblocks(), **sample()})
    stop.set()
    thread.join()
    elapsed = time.perf_counter() - start_time

    mb = lambda b: b / 2**20  # noqa: E731
    samples = [{"t": t, "tokens": n, "rss": r} for t, n, r in zip(samples[0::3], samples[1::3], samples[2::3])]
    peak = max(samples, key=lambda p: p["rss"])
    second_half = [m for m in marks if m["tokens"] >= soak.generated / 2]
    summary = {
        "model": args.model,
        "tokens": soak.generated,
        "generate_calls": soak.calls,
        "seconds": elapsed,
        "rss_start_mb": mb(start["rss"]),
        "rss_peak_mb": mb(peak["rss"]),
        "rss_peak_at_tokens": peak["tokens"],
        "rss_end_mb": mb(marks[-1]["rss"]),
        "slope_mb_per_10k_tokens_second_half": slope_per_10k(second_half),
        "slope_mb_per_10k_tokens_all_samples_second_half": slope_per_10k(
            [s for s in samples if s["tokens"] >= soak.generated / 2]
        ),
        "malloc_in_use_mb_first_last_phase_end": [mb(marks[0]["malloc"]), mb(marks[-1]["malloc"])],
        "malloc_slope_mb_per_10k_tokens_second_half": slope_per_10k(
            [{"tokens": m["tokens"], "rss": m["malloc"]} for m in second_half]
        ),
        "python_blocks_first_last_phase_end": [marks[0]["python_blocks"], marks[-1]["python_blocks"]],
    }
    print(f"{soak.generated} tokens in {soak.calls} generate calls, {elapsed:.0f} s ({soak.generated / elapsed:.0f} tok/s)")
    print(f"RSS start {summary['rss_start_mb']:.1f} MB, peak {summary['rss_peak_mb']:.1f} MB "
          f"(at {peak['tokens']} tokens), end {summary['rss_end_mb']:.1f} MB")
    print("RSS at the end of each phase, MB (all sessions dropped):")
    print(f"  {'round':>5}  " + "  ".join(f"{p:>12}" for p in PHASES))
    for round_index in range(args.rounds):
        row = [m for m in marks if m["round"] == round_index]
        print(f"  {round_index:>5}  " + "  ".join(f"{mb(m['rss']):>12.2f}" for m in row))
    print(f"slope over the second half: {summary['slope_mb_per_10k_tokens_second_half']:+.3f} MB per 10k tokens "
          f"(phase ends), {summary['slope_mb_per_10k_tokens_all_samples_second_half']:+.3f} (all samples)")
    first, last = summary["malloc_in_use_mb_first_last_phase_end"]
    print(f"malloc in use at phase ends: {first:.2f} -> {last:.2f} MB, slope over the second half "
          f"{summary['malloc_slope_mb_per_10k_tokens_second_half']:+.3f} MB per 10k tokens; Python blocks "
          f"{marks[0]['python_blocks']} -> {marks[-1]['python_blocks']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "marks": marks, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
