#!/usr/bin/env python3
"""What a JSON-schema constraint costs in decode speed: tok/s with and without it, side by side.

    python bench/bench_structured.py demo bench/models/lfm2-350m-random --threads 2 --repeats 5

For each model, one process loads it once and alternates the two arms (unconstrained,
constrained, unconstrained, ...) --repeats times, so drift of a shared machine hits both alike;
the table shows the median and the best decode tok/s of each arm and the ratios constrained /
unconstrained of each (issue 18's target: the constraint costs at most 10%, i.e. a ratio >= 0.90,
at batch 1). On a machine shared with other jobs the runs are bimodal (a run whose threads are
descheduled is several times slower), so the best of many runs is the steadier figure.

Both arms run ``Model.generate`` on the same prompt, sampling at temperature 1 with the same
seed. The constrained arm answers under ``response_format`` json_schema with SCHEMA below (an
array of at least 64 records, so the answer runs to --gen-tokens rather than closing early); the
other arm has ``ignore_eos=True`` and the same ``max_tokens``. Decode tok/s is
``Timings.decode_steps / decode_seconds``: the time from the first sampled token to the last,
which with a constraint includes computing each mask (on a worker thread, while the forward
step of the previous token runs), applying it in the sampler and advancing the grammar. A
constrained run that ends early (the grammar closed) still counts its own steps and seconds.
"CPU ms/token" is the process's CPU time (all threads; the short prompt's prefill included, the
same in every arm) over the tokens generated: the work a token costs, which other jobs on a
shared machine disturb less than wall time (with --threads 1 it holds no spin-waiting).

--offload auto,always,never adds constrained arms with the mask worker's policy forced
(``lfmrt.generation.state.OFFLOAD_ABOVE_SECONDS``: auto = the default threshold, always = every
mask on the worker thread, overlapping the forward step, where the forward pass leaves a core
free (--threads below the physical cores), never = every mask inline).
--masks-only times the engine alone: ``compute_mask`` and ``advance`` per token along one
constrained answer of --gen-tokens tokens (no model step in between).

With --batch N (N > 1), each arm instead runs N copies of the prompt through ``generate_batch``
and reports total tok/s (generated tokens over the wall time of the batch, prefill included).
Compiling the constraint (and, once per model, building the engine's token table) happens
before timing; the figures are printed to stdout with the load average at start and end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import lfmrt
import lfmrt.generation.state as generation_state

OFFLOAD = {"auto": generation_state.OFFLOAD_ABOVE_SECONDS, "always": 0.0, "never": float("inf")}

SCHEMA = {
    "type": "object",
    "properties": {
        "records": {
            "type": "array",
            "minItems": 64,  # more than --gen-tokens can hold: the answer runs to max_tokens
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                    "role": {"enum": ["admin", "user", "guest"]},
                    "email": {"type": "string", "format": "email"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name", "age", "role", "email", "tags"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["records"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "records", "schema": SCHEMA}}
PROMPT = "List the users of the system as JSON records with name, age, role, email and tags:\n"


def run_arm(model: lfmrt.Model, constraint, args: argparse.Namespace, seed: int) -> tuple[float, float, int]:
    """(tok/s, process CPU seconds per generated token, tokens generated) of one run of one arm."""
    options = dict(max_tokens=args.gen_tokens, temperature=1.0, seed=seed)
    if constraint is None:
        options["ignore_eos"] = True
    else:
        options["constraint"] = constraint
    cpu = time.process_time()
    if args.batch == 1:
        completion = model.generate(PROMPT, **options)
        timings = completion.timings
        tokens = len(completion.tokens)
        speed = timings.decode_steps / timings.decode_seconds
    else:
        start = time.perf_counter()
        completions = model.generate_batch([PROMPT] * args.batch, **options)
        tokens = sum(len(c.tokens) for c in completions)
        speed = tokens / (time.perf_counter() - start)
    return speed, (time.process_time() - cpu) / tokens, tokens


def bench_masks(model: lfmrt.Model, constraint, args: argparse.Namespace) -> None:
    tokens = model.generate(PROMPT, max_tokens=args.gen_tokens, constraint=constraint, temperature=1.0, seed=1).tokens
    masks, advances = [], []
    for _ in range(args.repeats):
        state = constraint.start()
        for token in tokens:
            start = time.perf_counter()
            state.compute_mask()
            middle = time.perf_counter()
            state.advance(token)
            masks.append(middle - start)
            advances.append(time.perf_counter() - middle)
    for what, seconds in (("compute_mask", masks), ("advance", advances)):
        print(f"  {what:14s} per token: median {1e6 * statistics.median(seconds):6.1f} us, mean "
              f"{1e6 * statistics.mean(seconds):6.1f} us, max {1e6 * max(seconds):7.1f} us ({len(seconds)} tokens)")


def bench_model(name: str, args: argparse.Namespace) -> None:
    model = lfmrt.Model.load(name, n_threads=args.threads)
    start = time.perf_counter()
    constraint = model.constraint(response_format=FORMAT)
    print(f"{name} (vocab {model.config.vocab_size}): token table and schema compiled in {time.perf_counter() - start:.2f} s")
    if args.masks_only:
        bench_masks(model, constraint, args)
        return
    arms = [("unconstrained", None, None)] + [(f"json_schema/{policy}", constraint, policy) for policy in args.offload]
    for _, arm_constraint, policy in arms:  # warm up: pages in the weights
        generation_state.OFFLOAD_ABOVE_SECONDS = OFFLOAD[policy or "auto"]
        run_arm(model, arm_constraint, args, seed=0)
    results = {arm: [] for arm, _, _ in arms}
    cpu = {arm: [] for arm, _, _ in arms}
    tokens = {arm: [] for arm, _, _ in arms}
    for repeat in range(args.repeats):
        for arm, arm_constraint, policy in arms:
            generation_state.OFFLOAD_ABOVE_SECONDS = OFFLOAD[policy or "auto"]
            speed, cpu_per_token, n = run_arm(model, arm_constraint, args, seed=repeat + 1)
            results[arm].append(speed)
            cpu[arm].append(cpu_per_token)
            tokens[arm].append(n)
    generation_state.OFFLOAD_ABOVE_SECONDS = OFFLOAD["auto"]
    print(f"  batch {args.batch}, {args.gen_tokens} tokens max, {args.repeats} interleaved repeats")
    free, free_best = statistics.median(results["unconstrained"]), max(results["unconstrained"])
    free_cpu = statistics.median(cpu["unconstrained"])
    for arm in results:
        median, best = statistics.median(results[arm]), max(results[arm])
        arm_cpu = statistics.median(cpu[arm])
        runs = " ".join(f"{speed:.0f}" for speed in results[arm])
        ratio = "" if arm == "unconstrained" else (
            f"  ratio median {median / free:.3f}, best {best / free_best:.3f}; CPU {arm_cpu / free_cpu:.3f}x")
        print(f"  {arm:20s} median {median:8.1f} best {best:8.1f} tok/s, CPU {1e3 * arm_cpu:.3f} ms/token{ratio}")
        print(f"  {'':20s} runs: {runs}   tokens: {' '.join(map(str, tokens[arm]))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help='models to load ("demo", a folder, a GGUF file)')
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gen-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--offload", type=lambda text: text.split(","), default=["auto"],
                        help="mask worker policies to measure, of auto,always,never (default auto)")
    parser.add_argument("--masks-only", action="store_true", help="time the grammar engine alone")
    args = parser.parse_args()
    unknown = set(args.offload) - set(OFFLOAD)
    if unknown:
        parser.error(f"--offload: unknown policy {', '.join(sorted(unknown))}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; lfmrt {lfmrt.__file__}")
    for name in args.models:
        bench_model(name, args)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
