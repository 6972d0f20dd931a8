"""lfmrt against the committed golden outputs of transformers (tests/fixtures/models/).

Each test runs once per fixture model (ids are the model names from MANIFEST.json). The
reference is transformers' Lfm2ForCausalLM in float32 on the stored weights (bf16 / f16
weights upcast), so the tolerance is fp32 rounding: 1e-4 max-abs on the logits for float32
weights, 1e-3 for bf16 / f16 weights. Greedy continuations must match token for token: every
golden greedy step has a top-1/top-2 logit gap of at least 2e-3, far above those tolerances.
"""
from __future__ import annotations

import numpy as np
import pytest

import lfmrt

N_DECODE = 16  # decode steps checked one token at a time after a prefill


@pytest.fixture(scope="module")
def _model_cache():
    return {}


def load(cache: dict, path, n_threads=None):
    key = (str(path), n_threads)
    if key not in cache:
        # An f32 KV cache isolates the weights' numerics, which these tolerances are about; the
        # f16 / q8_0 caches' own cost is measured in test_kv_cache.py.
        cache[key] = lfmrt.Model.load(str(path), n_threads=n_threads, kv_cache="f32")
    return cache[key]


@pytest.fixture
def model(golden, _model_cache):
    return load(_model_cache, golden.path)


def first_divergence(got: list[int], want: list[int]) -> int | None:
    for i, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return i
    return None if len(got) == len(want) else min(len(got), len(want))


# --------------------------------------------------------------------------------------------


def test_logits_match_reference(golden, model, check_logits):
    for i, (prompt, ref) in enumerate(zip(golden.prompts, golden.logits)):
        got = model.logits(prompt)
        check_logits(got, ref, golden.atol, f"{golden.name} prompt {i} ({len(prompt)} tokens)")
        assert (np.argmax(got, axis=-1) == np.argmax(ref, axis=-1)).all()


def test_greedy_matches_reference(golden, model):
    for i, (prompt, want) in enumerate(zip(golden.prompts, golden.greedy)):
        completion = model.generate(list(prompt), max_tokens=len(want), temperature=0.0, ignore_eos=True)
        got = [int(t) for t in completion.tokens]
        assert isinstance(completion.text, str)
        j = first_divergence(got, want)
        if j is not None:
            margin = float(golden.margins[i][j]) if j < len(want) else float("nan")
            pytest.fail(
                f"{golden.name} prompt {i}: greedy continuation diverges at step {j} "
                f"(got {got[j:j + 5]}, expected {want[j:j + 5]}; reference top-1/top-2 margin "
                f"there {margin:.4f}); got {len(got)} tokens, expected {len(want)}"
            )


def test_prefill_then_decode_matches_full_forward(golden, model, check_logits):
    for i, prompt in enumerate(golden.prompts):
        cont = golden.greedy[i][:N_DECODE]
        full = np.asarray(model.logits(prompt + cont))  # one full-sequence forward
        check_logits(full[: len(prompt)], golden.logits[i], golden.atol, f"{golden.name} prompt {i} full")

        session = model.session()
        assert session.n_tokens == 0
        last = session.append(prompt)
        assert session.n_tokens == len(prompt)
        check_logits(last, golden.logits[i][-1], golden.atol, f"{golden.name} prompt {i} prefill")
        for j, token in enumerate(cont):
            step = session.append([token])
            pos = len(prompt) + j
            assert session.n_tokens == pos + 1
            check_logits(step, full[pos], golden.atol, f"{golden.name} prompt {i} decode step {j}")
            if j + 1 < len(cont):
                assert int(np.argmax(step)) == cont[j + 1], f"{golden.name} prompt {i} decode step {j}: argmax"


@pytest.mark.parametrize("chunk_size", [1, 3, 7])
def test_chunked_prefill_matches_one_shot(golden, model, chunk_size, check_logits):
    for i, prompt in enumerate(golden.prompts):
        what = f"{golden.name} prompt {i} chunk_size={chunk_size}"
        one_shot = np.asarray(model.session().append(prompt, all_logits=True))
        session = model.session()
        chunked = session.append(prompt, chunk_size=chunk_size, all_logits=True)
        assert session.n_tokens == len(prompt)
        check_logits(chunked, one_shot, golden.atol, what + " vs one-shot")
        check_logits(chunked, golden.logits[i], golden.atol, what + " vs reference")
        last = model.session().append(prompt, chunk_size=chunk_size)
        check_logits(last, golden.logits[i][-1], golden.atol, what + " (last logits only)")


def test_appends_in_pieces_match_one_shot(golden, model, check_logits):
    prompt = golden.prompts[-1] + golden.greedy[-1]
    session = model.session()
    pieces, start = [], 0
    for size in (1, 4, 2, 9, 1, 16):
        out = session.append(prompt[start:start + size], all_logits=True)
        pieces.append(np.asarray(out).reshape(-1, golden.vocab_size))
        start += size
    pieces.append(np.asarray(session.append(prompt[start:], all_logits=True)))
    assert session.n_tokens == len(prompt)
    check_logits(np.concatenate(pieces), np.asarray(model.logits(prompt)), golden.atol,
                 f"{golden.name} uneven appends")


def test_thread_count_does_not_change_results(golden, _model_cache):
    m1 = load(_model_cache, golden.path, n_threads=1)
    m2 = load(_model_cache, golden.path, n_threads=2)
    for i, prompt in enumerate(golden.prompts):
        seq = prompt + golden.greedy[i]
        a, b = np.asarray(m1.logits(seq)), np.asarray(m2.logits(seq))
        assert np.array_equal(a, b), (
            f"{golden.name} prompt {i}: n_threads=1 and 2 differ by up to {float(np.abs(a - b).max()):.3g}")
        s1, s2 = m1.session(), m2.session()
        a = [np.asarray(s1.append(seq[:len(prompt)]))] + [np.asarray(s1.append([t])) for t in golden.greedy[i][:8]]
        b = [np.asarray(s2.append(seq[:len(prompt)]))] + [np.asarray(s2.append([t])) for t in golden.greedy[i][:8]]
        assert all(np.array_equal(x, y) for x, y in zip(a, b)), f"{golden.name} prompt {i}: decode differs by threads"
        g1 = m1.generate(list(prompt), max_tokens=len(golden.greedy[i]), temperature=0.0, ignore_eos=True)
        g2 = m2.generate(list(prompt), max_tokens=len(golden.greedy[i]), temperature=0.0, ignore_eos=True)
        assert list(g1.tokens) == list(g2.tokens)
