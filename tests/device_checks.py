"""Checks every non-CPU backend passes against the CPU backend, shared by test_opencl.py and
test_cuda.py (each calls them once per device it finds): whole golden models, sessions (rewind,
fork, snapshots between the CPU and the device, sessions from several threads), generate_batch
and the Scheduler, and the CLI. ``models`` is the factory :func:`model_cache` makes (a module
fixture in both files), so each model loads once per module.
"""
from __future__ import annotations

import json
from typing import Callable

import numpy as np

import lfmrt
from lfmrt.cli.main import main as cli_main

from conftest import MODELS_DIR, load_golden, run_in_threads

BF16_MODEL = MODELS_DIR / "lfm2_350m_pattern_bf16"  # 6 conv + 2 attention layers, GQA 2
GREEDY_TOKENS = 40
TOLERANCE = 2e-4  # between runs on one device (test_sessions.py's)
CPU_TOLERANCE = 1e-3  # between the CPU and a device on bf16 weights (the golden tolerance)

Models = Callable[..., lfmrt.Model]


def model_cache() -> Models:
    """load(path, device, **options) -> Model, each loaded once."""
    cache: dict = {}

    def load(path, device: str, **options) -> lfmrt.Model:
        key = (str(path), device, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = lfmrt.Model.load(str(path), device=device, n_threads=2, **options)
        return cache[key]

    return load


def tokens_of(n: int, seed: int = 0, vocab: int = 700) -> list:
    return np.random.default_rng(seed).integers(14, vocab, n).tolist()


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def check_golden_model(name: str, device: str, models: Models, check_logits) -> None:
    """Logits within the CPU's tolerances against transformers, and greedy tokens equal to the
    CPU's. An f32 KV cache, as test_golden.py: the tolerances are about the weights' numerics."""
    golden = load_golden(name)
    model = models(golden.path, device, kv_cache="f32")
    cpu = models(golden.path, "cpu", kv_cache="f32")
    for i, (prompt, reference) in enumerate(zip(golden.prompts, golden.logits)):
        check_logits(model.logits(prompt), reference, golden.atol, f"{name} prompt {i} on {device}")
        got = model.generate(list(prompt), max_tokens=GREEDY_TOKENS, temperature=0.0, ignore_eos=True).tokens
        want = cpu.generate(list(prompt), max_tokens=GREEDY_TOKENS, temperature=0.0, ignore_eos=True).tokens
        assert list(got) == list(want), f"{name} prompt {i}: greedy differs from the CPU's on {device}"


def check_rewind_and_fork(device: str, models: Models) -> None:
    model, cpu = models(BF16_MODEL, device, kv_cache="f32"), models(BF16_MODEL, "cpu", kv_cache="f32")
    tokens = tokens_of(100)
    session = model.session(checkpoint_interval=16, chunk_size=16)
    session.append(tokens)
    session.rewind(37)
    continued = session.append(tokens_of(5, seed=1))
    expected = tokens[:37] + tokens_of(5, seed=1)
    assert max_diff(continued, model.session().append(expected)) < TOLERANCE
    assert max_diff(continued, cpu.session().append(expected)) < CPU_TOLERANCE

    prompt = tokens_of(300, seed=2)  # two KV pages
    session = model.session()
    session.append(prompt)
    fork = session.fork()
    a, b = session.append([10, 11]), fork.append([12])
    assert max_diff(a, model.session().append(prompt + [10, 11])) < TOLERANCE
    assert max_diff(b, model.session().append(prompt + [12])) < TOLERANCE


def check_snapshots_move_to_and_from_the_cpu(device: str, models: Models) -> None:
    """With the same KV type the state is the same bytes, and saved again it is the same snapshot;
    continuations (also after a rewind through the restored conv checkpoints) agree."""
    tokens = tokens_of(80, seed=3)
    for kv in ("f32", "f16", "q8_0"):
        model, cpu = models(BF16_MODEL, device, kv_cache=kv), models(BF16_MODEL, "cpu", kv_cache=kv)
        on_cpu = cpu.session(checkpoint_interval=16)
        on_cpu.append(tokens)
        snapshot = on_cpu.save()
        restored = model.load_session(snapshot)
        assert restored.tokens == tokens
        assert restored.save() == snapshot, kv
        back = cpu.load_session(restored.save())
        on_cpu_next = on_cpu.append([5])
        assert max_diff(back.append([5]), on_cpu_next) == 0.0
        assert max_diff(restored.append([5]), on_cpu_next) < CPU_TOLERANCE
        restored.rewind(20)
        assert max_diff(restored.append([7]), cpu.session().append(tokens[:20] + [7])) < CPU_TOLERANCE


def check_generate_batch_and_scheduler(device: str, models: Models) -> None:
    """Greedy tokens of generate_batch and of the Scheduler equal the CPU's generate_batch."""
    model, cpu = models(BF16_MODEL, device, kv_cache="f32"), models(BF16_MODEL, "cpu", kv_cache="f32")
    prompts = [tokens_of(n, seed=n) for n in (5, 40, 17, 90)]
    options = dict(max_tokens=20, temperature=0.0, ignore_eos=True)
    got = [list(c.tokens) for c in model.generate_batch(prompts, **options)]
    want = [list(c.tokens) for c in cpu.generate_batch(prompts, **options)]
    assert got == want
    scheduler = lfmrt.Scheduler(model, max_batch=3, prefill_chunk=24)
    requests = [scheduler.submit(p, **options) for p in prompts]
    scheduler.run()
    assert [list(r.completion.tokens) for r in requests] == want


def check_sessions_from_several_threads(device: str, models: Models) -> None:
    """Forks, rewinds and saves from other threads while forwards run equal the same work done
    alone: the backend serialises its queue, the pools hold their memory while they queue work
    on it (and it may be replaced as they grow)."""
    model = models(BF16_MODEL, device, kv_cache="f16")
    prompts = [tokens_of(120 + 40 * i, seed=10 + i) for i in range(4)]
    expected = [model.session().append(p + [3, 4]) for p in prompts]
    results: list = [None] * len(prompts)
    errors: list = []

    def work(i: int) -> None:
        try:
            session = model.session(checkpoint_interval=32)
            session.append(prompts[i])
            fork = session.fork()
            snapshot = fork.save()
            fork.rewind(len(prompts[i]) // 2)
            restored = model.load_session(snapshot)
            results[i] = restored.append([3, 4])
        except Exception as error:  # reported below, in the main thread
            errors.append(error)

    run_in_threads(work, len(prompts))
    assert not errors, errors
    for got, want in zip(results, expected):
        assert max_diff(got, want) < TOLERANCE


def check_the_cli_runs(device: str, capsys, kernels_mark: str) -> None:
    """``lfmrt bench --device DEVICE`` runs there; its kernel description names `kernels_mark`."""
    assert cli_main(["bench", "demo", "-p", "16", "-n", "4", "-r", "1", "--device", device, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["device"] == device and kernels_mark in results["kernels"]
    assert results["decode_tokens_per_s"] > 0
