"""Batch inference on Ray Data against in-process ``generate_batch``, side by side.

Three ways run the same prompts (greedy, ``ignore_eos`` so every row makes ``--max-tokens``
tokens), interleaved over ``--rounds`` rounds:

- ``inprocess``: ``Model.load`` + ``generate_batch`` in this process, one thread;
- ``ray x1``: one lfmrt actor with one thread (``build_processor``, ``concurrency=1``);
- ``ray x2``: two actors with one thread each.

Each is timed end to end from nothing to the last row (model load and Ray actor start-up
included: what a user pays). Printed: rows/s and output tok/s (median over rounds), the scaling efficiency
``x2 / (2 * x1)``, and the per-actor overhead ``1 - x1 / inprocess``.

    python bench/bench_ray.py bench/models/lfm2-350m-random --rows 64 --max-tokens 32 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Dict, List, Tuple

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback

import lfmrt  # noqa: E402
import ray  # noqa: E402
from lfmrt.ray import LfmrtProcessorConfig, build_processor  # noqa: E402


def prompts(n: int) -> List[str]:
    words = ["invoice", "contract", "summary", "ledger", "memo", "report", "letter", "order"]
    return [f"Classify this {words[i % 8]} number {i}: total due in {i % 30} days." for i in range(n)]


def run_inprocess(model_path: str, texts: List[str], args: argparse.Namespace) -> Tuple[float, int]:
    start = time.perf_counter()
    model = lfmrt.Model.load(model_path, n_threads=1)
    completions = model.generate_batch(texts, max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True,
                                       max_batch=args.max_batch)
    return time.perf_counter() - start, sum(len(c.tokens) for c in completions)


def run_ray(model_path: str, texts: List[str], actors: int, args: argparse.Namespace) -> Tuple[float, int]:
    # Two batches in flight per actor fill its scheduler (max_batch rows) while one finishes.
    config = LfmrtProcessorConfig(model_source=model_path, concurrency=actors, threads_per_actor=1,
                                  batch_size=args.batch_size, max_batch=args.max_batch,
                                  max_concurrent_batches=max(1, -(-args.max_batch // args.batch_size)),
                                  sampling_params={"temperature": 0.0, "max_tokens": args.max_tokens, "ignore_eos": True})
    blocks = -(-len(texts) // args.batch_size)
    start = time.perf_counter()
    dataset = build_processor(config)(ray.data.from_items([{"prompt": t} for t in texts], override_num_blocks=blocks))
    rows = dataset.take_all()
    wall = time.perf_counter() - start
    assert len(rows) == len(texts)
    return wall, sum(row["num_generated_tokens"] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="checkpoint directory (e.g. bench/models/lfm2-350m-random)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="rows per Ray batch")
    parser.add_argument("--max-batch", type=int, default=16, help="sequences each model copy steps together")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = prompts(args.rows)

    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    # Dispatch once every actor has loaded its model: the first one ready would otherwise take
    # max_concurrent_batches batches before the second is up (all of a small dataset).
    context.wait_for_min_actors_s = 600
    walls: Dict[str, List[float]] = {"inprocess": [], "ray x1": [], "ray x2": []}
    tokens: Dict[str, int] = {}
    for round_ in range(args.rounds):
        for name in walls:  # interleaved: each round runs all three
            if name == "inprocess":
                wall, tokens[name] = run_inprocess(args.model, texts, args)
            else:
                wall, tokens[name] = run_ray(args.model, texts, int(name[-1]), args)
            walls[name].append(wall)
            print(f"round {round_ + 1} {name:9s}: {wall:6.1f} s", flush=True)
    ray.shutdown()

    print(f"\n{args.rows} rows x {args.max_tokens} tokens, max_batch {args.max_batch}, Ray batch {args.batch_size}; "
          f"medians over {args.rounds} rounds; load {os.getloadavg()[0]:.1f}")
    print(f"{'':10s} {'wall s':>7s} {'rows/s':>7s} {'tok/s':>7s}")
    rate: Dict[str, float] = {}
    for name, values in walls.items():
        wall = statistics.median(values)
        rate[name] = tokens[name] / wall
        print(f"{name:10s} {wall:7.1f} {args.rows / wall:7.2f} {rate[name]:7.1f}")
    print(f"scaling efficiency x2 / (2 * x1): {rate['ray x2'] / (2 * rate['ray x1']):.2f}")
    print(f"per-actor overhead 1 - x1 / inprocess: {1 - rate['ray x1'] / rate['inprocess']:+.2f}")


if __name__ == "__main__":
    main()
