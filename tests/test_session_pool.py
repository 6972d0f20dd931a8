"""The session pool (lfmrt.generation.session_pool): sessions handed out by longest token prefix,
forked when only a start is shared, bounded by count and memory; and Model.generate / stream /
chat / chat_stream without ``session=`` drawing on it, so a conversation sent again with one more
turn runs only the new tokens, with the same answers as a fresh session gives."""
from __future__ import annotations

import numpy as np
import pytest

import lfmrt
from lfmrt.generation.session_pool import SessionPool, common_prefix

from conftest import run_in_threads


@pytest.fixture(scope="module")
def demo():
    return lfmrt.Model.load("demo", n_threads=1)


@pytest.fixture()
def model():
    """A model of its own, so its pool starts empty."""
    return lfmrt.Model.load("demo", n_threads=1)


def _held(demo, tokens):
    session = demo.session()
    session.append(tokens)
    return session


def _shared(a, b) -> int:
    return common_prefix(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))


# --- the pool -----------------------------------------------------------------------------------


def test_common_prefix():
    assert common_prefix(np.array([1, 2, 3]), np.array([1, 2, 4, 5])) == 2
    assert common_prefix(np.array([1, 2]), np.array([1, 2, 3])) == 2
    assert common_prefix(np.array([], dtype=np.int64), np.array([1])) == 0


def test_pool_hands_out_the_longest_prefix_and_forks_a_shared_start(demo):
    pool = SessionPool(demo.session, max_sessions=8, max_bytes=2**30)
    a = _held(demo, [1, 10, 11, 12, 13, 14, 15, 16])
    b = _held(demo, [1, 20, 21, 22, 23])
    pool.release(a)
    pool.release(b)
    session, held = pool.acquire([1, 10, 11, 12, 13, 14, 15, 16, 17, 18])  # a's next turn
    assert session is a and held == 8 and len(pool) == 1
    pool.release(a)
    pool.release(a)  # twice is once
    assert len(pool) == 2
    session, held = pool.acquire([1, 20, 99])  # shares only [1, 20] of b's 5 tokens: forked
    assert session is not b and held == 2 and session.tokens == b.tokens
    assert len(pool) == 2  # b stays for its own conversation
    session, held = pool.acquire([5, 6])  # nothing shared: a new session
    assert session.n_tokens == 0 and held == 0


def test_pool_drops_the_least_recently_used_beyond_its_bounds(demo):
    pool = SessionPool(demo.session, max_sessions=2, max_bytes=2**30)
    sessions = [_held(demo, [30 + i, 40 + i, 50]) for i in range(3)]
    for session in sessions:
        pool.release(session)
    assert len(pool) == 2
    assert pool.acquire([30, 40, 50, 7])[1] == 0  # the oldest went first
    assert pool.acquire([32, 42, 50, 7])[1] == 3
    small = SessionPool(demo.session, max_sessions=8, max_bytes=sessions[0].memory_bytes + 1)
    for session in sessions:
        small.release(session)
    assert len(small) == 1 and small.memory_bytes <= sessions[0].memory_bytes + 1
    small.set_bounds(max_sessions=0)
    assert len(small) == 0
    small.release(sessions[0])  # reuse is off
    assert len(small) == 0
    with pytest.raises(ValueError, match="max_bytes"):
        small.set_bounds(max_bytes=-1)


# --- in-process calls without session= ----------------------------------------------------------


def _conversation_turns(model, n_turns: int, session_for_turn):
    """Answers of a conversation sent again whole each turn, and each turn's prompt tokens."""
    messages = [{"role": "system", "content": "You answer questions about Python."}]
    answers, prompts, timings = [], [], []
    for turn in range(n_turns):
        messages.append({"role": "user", "content": f"Turn {turn}: what does the {turn}th built-in do?"})
        prompts.append(model.tokenize(model.apply_chat_template(messages), add_special_tokens=False))
        completion = model.chat(messages, max_tokens=10, temperature=0, session=session_for_turn())
        answers.append(completion.text)
        timings.append(completion.timings)
        messages.append({"role": "assistant", "content": completion.text})
    return answers, prompts, timings


def test_chat_without_a_session_runs_only_each_turns_new_tokens(model):
    fresh_answers, _, fresh_timings = _conversation_turns(model, 4, model.session)
    assert all(t.prefilled_tokens == t.prompt_tokens for t in fresh_timings)  # session= is as before
    assert len(model.session_pool) == 0  # explicit sessions are never pooled
    answers, prompts, timings = _conversation_turns(model, 4, lambda: None)
    assert answers == fresh_answers  # greedy answers as a fresh session gives them
    assert timings[0].prefilled_tokens == len(prompts[0])
    for turn in range(1, 4):
        previous = prompts[turn - 1] + model.tokenize(answers[turn - 1], add_special_tokens=False)
        shared = _shared(previous, prompts[turn])
        assert shared > len(prompts[turn]) // 2
        assert timings[turn].prefilled_tokens <= len(prompts[turn]) - shared + 1, (turn, shared)
    assert len(model.session_pool) == 1  # the conversation's one session, taken and given back


def test_an_abandoned_stream_gives_its_session_back(model):
    prompt = "The itertools module has a function called"
    stream = model.stream(prompt, max_tokens=30, temperature=0)
    next(stream)
    assert len(model.session_pool) == 0  # in use
    stream.close()
    assert len(model.session_pool) == 1
    completion = model.generate(prompt + " chain", max_tokens=4, temperature=0)
    assert completion.timings.prefilled_tokens < len(model.tokenize(prompt))
    assert completion.text == model.generate(prompt + " chain", max_tokens=4, temperature=0,
                                             session=model.session()).text


def test_a_failed_call_gives_its_session_back_and_the_pool_stays_bounded(model):
    model.generate("Lists and tuples", max_tokens=3, temperature=0)
    assert len(model.session_pool) == 1
    with pytest.raises(ValueError, match="temperature"):
        model.generate("Lists and tuples are", max_tokens=3, temperature=-1)
    assert len(model.session_pool) == 1
    model.session_pool.set_bounds(max_sessions=3)
    for i in range(6):
        model.generate(f"{i} unrelated prompt number {i}", max_tokens=2, temperature=0)
    assert len(model.session_pool) == 3
    cap = model.session_pool.memory_bytes // 2
    model.session_pool.set_bounds(max_bytes=cap)
    assert 0 < len(model.session_pool) < 3 and model.session_pool.memory_bytes <= cap


def test_threads_continuing_one_history_each_get_their_own_session(model):
    history = [{"role": "user", "content": "Name a sorting algorithm."}]
    first = model.chat(history, max_tokens=8, temperature=0)
    follow_up = history + [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Why?"}]
    reference = model.chat(follow_up, max_tokens=8, temperature=0, session=model.session()).text
    answers = [None] * 3

    def answer(i: int) -> None:
        answers[i] = model.chat(follow_up, max_tokens=8, temperature=0).text

    run_in_threads(answer, 3)
    assert answers == [reference] * 3
