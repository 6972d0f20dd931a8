"""Sessions: rewind, checkpoints, fork, snapshots, prefix reuse, batching, thread safety."""

from pathlib import Path

import numpy as np
import pytest

import lfmrt
from lfmrt.text.chat_template import ChatTemplate

from conftest import run_in_threads

MODELS = Path(__file__).parent / "fixtures" / "models"
MODEL_DIR = MODELS / "lfm2_350m_pattern_bf16"  # 6 conv + 2 attention layers, GQA 2
F32_DIR = MODELS / "mixed_mha_hd64_f32_dialectA"
TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def model() -> lfmrt.Model:
    # An f32 KV cache, so the state mechanics are checked to fp32 rounding (f16 and q8_0 caches
    # round the same keys differently along different paths).
    return lfmrt.Model.load(MODEL_DIR, n_threads=2, kv_cache="f32")


def tokens_of(n: int, seed: int = 0, vocab: int = 700):
    return np.random.default_rng(seed).integers(14, vocab, n).tolist()


def fresh_logits(model, tokens):
    return model.session().append(tokens)


@pytest.mark.parametrize("interval", [1, 7, 64])
@pytest.mark.parametrize("target", [0, 1, 13, 50, 99])
def test_rewind_equals_a_fresh_session(model, interval, target):
    tokens = tokens_of(100)
    session = model.session(checkpoint_interval=interval, chunk_size=16)
    session.append(tokens)
    session.rewind(target)
    assert session.tokens == tokens[:target] and session.n_tokens == target
    continued = session.append(tokens_of(5, seed=1))
    expected = fresh_logits(model, tokens[:target] + tokens_of(5, seed=1))
    assert np.abs(continued - expected).max() < TOLERANCE


def test_rewind_reruns_at_most_the_checkpoint_interval(model):
    session = model.session(checkpoint_interval=16)
    session.append(tokens_of(100))
    before = session.n_forwarded
    session.rewind(70)  # nearest checkpoint at 64
    assert session.n_forwarded - before == 6
    session.rewind(64)
    assert session.n_forwarded - before == 6


def test_checkpoint_memory_is_bounded(model):
    session = model.session(checkpoint_interval=4, max_checkpoints=5)
    session.append(tokens_of(200))
    for token in tokens_of(40, seed=2):
        session.append([token])
    assert session.n_checkpoints <= 5
    # Still exact after thinning, only the re-run is longer.
    session.rewind(123)
    assert np.abs(session.append([5]) - fresh_logits(model, (tokens_of(200) + tokens_of(40, seed=2))[:123] + [5])).max() < TOLERANCE


def test_rewind_past_the_end_is_an_error(model):
    session = model.session()
    session.append([1, 2, 3])
    with pytest.raises(ValueError, match="rewind"):
        session.rewind(4)


def test_fork_is_independent_and_shares_pages(model):
    prompt = tokens_of(300)
    session = model.session()
    session.append(prompt)
    memory_before = session.memory_bytes
    fork = session.fork()
    a = session.append([10, 11])
    b = fork.append([12])
    assert np.abs(a - fresh_logits(model, prompt + [10, 11])).max() < TOLERANCE
    assert np.abs(b - fresh_logits(model, prompt + [12])).max() < TOLERANCE
    assert fork.tokens == prompt + [12] and session.tokens == prompt + [10, 11]
    assert memory_before > 0


def test_save_and_restore_round_trip(model, tmp_path):
    session = model.session(checkpoint_interval=8)
    session.append(tokens_of(50))
    path = tmp_path / "chat.lfmrt"
    session.save(path)
    restored = model.load_session(path)
    assert restored.tokens == session.tokens
    assert np.array_equal(restored.append([42]), session.append([42]))
    # Rewinding a restored session uses its restored checkpoints.
    restored.rewind(20)
    assert np.abs(restored.append([7]) - fresh_logits(model, tokens_of(50)[:20] + [7])).max() < TOLERANCE


def test_snapshot_of_another_model_is_refused_naming_what_differs(model):
    session = model.session()
    session.append([1, 2, 3])
    snapshot = session.save()
    other = lfmrt.Model.load(MODELS / "gqa2_hd64_bf16_jinja")
    with pytest.raises(lfmrt.LoadError, match="another architecture") as refused:
        other.load_session(snapshot)
    message = str(refused.value)
    assert "hidden_size 64 in the snapshot, 128 in this model" in message
    assert "layer_types ccaccacc in the snapshot, cac in this model" in message
    assert not message.startswith("session snapshot: session snapshot")  # said once
    requantized = lfmrt.Model.load(MODEL_DIR, quant="q8_0", kv_cache="f32")
    with pytest.raises(lfmrt.LoadError, match="same architecture but different weights"):
        requantized.load_session(snapshot)


def test_snapshot_loads_whatever_the_max_context(model):
    """max_context is a run-time limit, not part of the model's identity (issue 20)."""
    session = model.session(checkpoint_interval=8)
    session.append(tokens_of(30))
    snapshot = session.save()
    small = lfmrt.Model.load(MODEL_DIR, n_threads=2, kv_cache="f32", max_context=40)
    restored = small.load_session(snapshot)
    assert restored.tokens == session.tokens
    assert np.array_equal(restored.append([42]), session.append([42]))
    too_small = lfmrt.Model.load(MODEL_DIR, n_threads=2, kv_cache="f32", max_context=20)
    with pytest.raises(lfmrt.LoadError, match=r"holds 30 tokens, more than this model's max_context \(20\)"):
        too_small.load_session(snapshot)


def test_empty_append_raises_instead_of_returning_garbage(model):
    fresh = model.session()
    with pytest.raises(ValueError, match="at least one token"):
        fresh.append([])
    with pytest.raises(ValueError, match="at least one token"):
        fresh.append([], all_logits=True)
    fresh.append([5, 6])
    with pytest.raises(ValueError, match="at least one token"):
        fresh.append([])
    assert fresh.tokens == [5, 6]


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        ([1, 2**64], ValueError, r"token id 18446744073709551616 at index 1"),
        ([1, 2.0], TypeError, r"index 1 is float"),
        (["a"], TypeError, r"index 0 is str"),
        ("abc", TypeError, r"sequence of ints, got str"),
        ([True], TypeError, r"index 0 is bool"),
        ([-1], ValueError, r"token id -1 at index 0 .*outside the vocabulary"),
    ],
)
def test_bad_token_ids_are_clear_errors_not_binding_dumps(model, tokens, error, message):
    session = model.session()
    calls = (session.append, session.prefill, model.logits) + (() if isinstance(tokens, str) else (model.generate,))
    for call in calls:  # (a string is a text prompt to generate)
        with pytest.raises(error, match=message) as raised:
            call(tokens)
        assert "incompatible function arguments" not in str(raised.value)
    assert session.tokens == []
    assert model.session().append(np.array([1, 2], dtype=np.int32)).shape == (model.config.vocab_size,)


def test_a_conversation_file_given_to_load_session_says_what_it_is(model, tmp_path):
    path = tmp_path / "chat.lfmrt-chat"
    path.write_text('{"format": "lfmrt-chat", "version": 1, "messages": []}', encoding="utf-8")
    with pytest.raises(lfmrt.LoadError, match=r"chat\.lfmrt-chat: not a session snapshot .*lfmrt-chat's /save"):
        model.load_session(path)


def test_corrupt_and_truncated_snapshots_are_refused_without_crashing(model):
    session = model.session()
    session.append(tokens_of(40))
    snapshot = session.save()
    rng = np.random.default_rng(0)
    for cut in [0, 5, 8, 20, 36, len(snapshot) // 2, len(snapshot) - 1]:
        with pytest.raises(lfmrt.LoadError):
            model.load_session(snapshot[:cut])
    for _ in range(50):
        data = bytearray(snapshot)
        for _ in range(3):
            data[rng.integers(0, len(data))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(lfmrt.LoadError):
            model.load_session(bytes(data))
    with pytest.raises(lfmrt.LoadError, match="nope"):
        model.load_session("/nonexistent/nope.lfmrt")


def test_prefill_reuses_the_common_prefix(model):
    session = model.session()
    first = tokens_of(80)
    assert session.prefill(first) == 80
    second = first + tokens_of(10, seed=3)
    before = session.n_forwarded
    assert session.prefill(second) == 10
    assert session.n_forwarded - before == 10
    assert np.abs(session.last_logits - fresh_logits(model, second)).max() < TOLERANCE
    # The same prompt again costs nothing: the session holds it, logits and all.
    before = session.n_forwarded
    assert session.prefill(second) == 0 and session.n_forwarded == before
    # A strict prefix re-runs from the nearest checkpoint (the end of `first`, a turn boundary).
    assert session.prefill(second[:85]) == 5
    assert session.n_forwarded - before == 5
    assert np.abs(session.last_logits - fresh_logits(model, second[:85])).max() < TOLERANCE


def test_divergence_in_the_middle_reprefills_from_the_turn_boundary(model):
    session = model.session(checkpoint_interval=256)
    turn_1 = tokens_of(60)
    session.prefill(turn_1)  # its end is a checkpoint (a turn boundary)
    reasoning = tokens_of(25, seed=4)
    answer = tokens_of(15, seed=5)
    for token in reasoning + answer:  # as if generated
        session.append([token])
    # The template re-renders the history without the reasoning: a divergence mid-sequence.
    turn_2 = turn_1 + answer + tokens_of(12, seed=6)
    before = session.n_forwarded
    session.prefill(turn_2)
    assert session.n_forwarded - before == len(turn_2) - len(turn_1)
    assert np.abs(session.last_logits - fresh_logits(model, turn_2)).max() < TOLERANCE


def test_ten_turn_chat_costs_only_new_tokens(model):
    session = model.session()
    messages = [{"role": "system", "content": "You are terse."}]
    prefix_cost = []
    for turn in range(10):
        messages.append({"role": "user", "content": f"Question number {turn}: what about item {turn * 7}?"})
        before = session.n_forwarded
        held_before = session.tokens
        reply = model.chat(messages, session=session, max_tokens=8, temperature=0)
        prompt = model.tokenize(model.apply_chat_template(messages), add_special_tokens=False)
        cost = session.n_forwarded - before - reply.timings.decode_steps
        new = len(prompt) - next((i for i, (a, b) in enumerate(zip(held_before, prompt)) if a != b), min(len(held_before), len(prompt)))
        prefix_cost.append((cost, reply.timings.prefilled_tokens, new))
        # Run alone on the full prompt, the answer is the same.
        assert reply.tokens == model.generate(prompt, max_tokens=8, temperature=0).tokens
        messages.append({"role": "assistant", "content": reply.text})
        assert reply.timings.prefilled_tokens <= len(prompt)
    # After the first turn, each turn runs its new tokens, plus at most the few between the
    # divergence (where re-tokenised text differs from what was generated) and the checkpoint
    # before it: the end of the previous prompt, a turn boundary.
    for turn, (cost, prefilled, new) in enumerate(prefix_cost[1:], start=1):
        assert cost == prefilled
        assert new <= prefilled <= new + 8, f"turn {turn}: ran {prefilled} tokens for {new} new ones"


LFM25_STYLE_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- set content = message['content'] -%}"
    "{%- if message['role'] == 'assistant' and not loop.last -%}"
    "{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def test_chat_with_a_template_that_rerenders_history(tmp_path):
    model = lfmrt.Model.load(MODEL_DIR, kv_cache="f32")
    model.chat_template = ChatTemplate(LFM25_STYLE_TEMPLATE, "<|startoftext|>", "<|im_end|>")
    session = model.session()
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>The user greets me, I should greet back.</think>Hello!"},
        {"role": "user", "content": "How are you?"},
    ]
    # Turn 1 as it happened: the prompt was prefilled, then the answer (with its reasoning) was
    # generated token by token.
    prompt_1 = model.tokenize(model.apply_chat_template(messages[:1]), add_special_tokens=False)
    history = model.tokenize(model.apply_chat_template(messages[:2], add_generation_prompt=False), add_special_tokens=False)
    assert history[: len(prompt_1)] == prompt_1
    session.prefill(prompt_1)
    for token in history[len(prompt_1) :]:
        session.append([token])
    session.checkpoint()
    # ...and turn 3 re-renders it without: the session diverges in the middle.
    reply = model.chat(messages, session=session, max_tokens=6, temperature=0)
    full = model.tokenize(model.apply_chat_template(messages), add_special_tokens=False)
    assert reply.tokens == model.generate(full, max_tokens=6, temperature=0).tokens
    # The divergence sits right after turn 1's prompt, a checkpoint: only turn 2's tokens run.
    assert reply.timings.prefilled_tokens == len(full) - len(prompt_1)


def test_context_limit_is_configurable_and_policies(tmp_path):
    small = lfmrt.Model.load(MODEL_DIR, max_context=64, kv_cache="f32")
    session = small.session()
    with pytest.raises(ValueError, match="context"):
        session.append(tokens_of(65))
    long_messages = [{"role": "user", "content": "word " * 20}, {"role": "assistant", "content": "ok " * 10}] * 2
    long_messages.append({"role": "user", "content": "last question"})
    with pytest.raises(ValueError, match="context"):
        small.chat(long_messages, max_tokens=4)
    reply = small.chat(long_messages, max_tokens=4, context_policy="drop_oldest", temperature=0)
    assert reply.finish_reason in ("stop", "length")
    # Generation stops at the context limit rather than overflowing it.
    completion = small.generate(tokens_of(60), max_tokens=50, temperature=0, ignore_eos=True)
    assert len(completion.tokens) == 4 and completion.finish_reason == "length"


@pytest.mark.parametrize("max_batch", [1, 3, 16])
def test_batched_greedy_equals_single(model, max_batch):
    prompts = [tokens_of(n, seed=n) for n in (3, 17, 40, 5, 9, 60, 2)]
    alone = [model.generate(p, max_tokens=12, temperature=0, ignore_eos=True).tokens for p in prompts]
    batched = model.generate_batch(prompts, max_tokens=12, temperature=0, ignore_eos=True, max_batch=max_batch)
    assert [c.tokens for c in batched] == alone


def test_scheduler_admits_and_retires_between_steps(model):
    scheduler = lfmrt.Scheduler(model, max_batch=2)
    short = scheduler.submit(tokens_of(5), max_tokens=2, temperature=0, ignore_eos=True)
    long = scheduler.submit(tokens_of(6, seed=1), max_tokens=6, temperature=0, ignore_eos=True)
    late = scheduler.submit(tokens_of(7, seed=2), max_tokens=3, temperature=0, ignore_eos=True)
    steps = 0
    while scheduler.active:
        scheduler.step()
        steps += 1
    # `late` joins when `short` leaves, so everything finishes in the long one's steps.
    assert steps == 6
    for request, prompt, n in ((short, tokens_of(5), 2), (long, tokens_of(6, seed=1), 6), (late, tokens_of(7, seed=2), 3)):
        assert request.completion.tokens == model.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True).tokens


def test_batched_sampling_with_seeds_matches_single(model):
    prompts = [tokens_of(8, seed=s) for s in range(4)]
    alone = [model.generate(p, max_tokens=10, temperature=1.0, seed=9, ignore_eos=True).tokens for p in prompts]
    batched = model.generate_batch(prompts, max_tokens=10, temperature=1.0, seed=9, ignore_eos=True)
    # Sampling draws from logits equal to float rounding; with seeds the draws agree.
    agree = sum(a == b.tokens for a, b in zip(alone, batched))
    assert agree >= 3


def test_scheduler_prefills_prompts_admitted_together_in_one_forward(model, monkeypatch):
    prefill_calls = []
    append_batch = lfmrt._core.Session.append_batch

    def counting_append_batch(sessions, tokens, chunk_size):
        prefill_calls.append([len(t) for t in tokens])
        return append_batch(sessions, tokens, chunk_size)

    monkeypatch.setattr(lfmrt._core.Session, "append_batch", staticmethod(counting_append_batch))
    prompts = [tokens_of(n, seed=n) for n in (1, 9, 33, 70, 4)]
    alone = [model.generate(p, max_tokens=8, temperature=0, ignore_eos=True).tokens for p in prompts]
    scheduler = lfmrt.Scheduler(model, max_batch=8)
    requests = [scheduler.submit(p, max_tokens=8, temperature=0, ignore_eos=True) for p in prompts]
    scheduler.step()
    # One prefill call with one token list per prompt, and every request already has its first token.
    assert prefill_calls == [[len(p) for p in prompts]]
    assert all(len(r._state._generated) == 1 for r in requests)
    scheduler.run()
    assert len(prefill_calls) == 1
    assert [r.completion.tokens for r in requests] == alone
    assert [r.completion.timings.prefilled_tokens for r in requests] == [len(p) for p in prompts]


def test_requests_join_while_others_decode(model):
    early = [tokens_of(n, seed=100 + n) for n in (6, 25)]
    late = [tokens_of(n, seed=200 + n) for n in (2, 48, 11)]
    alone = [model.generate(p, max_tokens=10, temperature=0, ignore_eos=True).tokens for p in early + late]
    scheduler = lfmrt.Scheduler(model, max_batch=8)
    requests = [scheduler.submit(p, max_tokens=10, temperature=0, ignore_eos=True) for p in early]
    for _ in range(4):
        scheduler.step()
    requests += [scheduler.submit(p, max_tokens=10, temperature=0, ignore_eos=True) for p in late]
    scheduler.run()
    assert [r.completion.tokens for r in requests] == alone


def test_long_prompt_is_prefilled_in_slices_while_others_decode(model):
    short, long = tokens_of(5, seed=7), tokens_of(70, seed=8)
    scheduler = lfmrt.Scheduler(model, max_batch=4, prefill_chunk=16)
    decoding = scheduler.submit(short, max_tokens=12, temperature=0, ignore_eos=True)
    scheduler.step()
    prefilling = scheduler.submit(long, max_tokens=4, temperature=0, ignore_eos=True)
    for step in range(1, 5):  # 70 prompt tokens take 5 steps of 16: the short one decodes meanwhile
        scheduler.step()
        assert len(decoding._state._generated) == 1 + step
        assert prefilling._state.prefilling and not prefilling._state._generated
    scheduler.step()
    assert not prefilling._state.prefilling and len(prefilling._state._generated) == 1
    scheduler.run()
    assert decoding.completion.tokens == model.generate(short, max_tokens=12, temperature=0, ignore_eos=True).tokens
    assert prefilling.completion.tokens == model.generate(long, max_tokens=4, temperature=0, ignore_eos=True).tokens


def test_scheduler_continues_a_session_prefilling_only_the_new_suffix(model):
    history = tokens_of(30, seed=11)
    follow_up = history + tokens_of(9, seed=12)
    alone_session = model.session()
    alone_session.prefill(history)
    alone = model.generate(follow_up, max_tokens=6, temperature=0, ignore_eos=True, session=alone_session)

    session = model.session()
    session.prefill(history)
    scheduler = lfmrt.Scheduler(model)
    request = scheduler.submit(follow_up, max_tokens=6, temperature=0, ignore_eos=True, session=session)
    other = scheduler.submit(tokens_of(12, seed=13), max_tokens=6, temperature=0, ignore_eos=True)
    with pytest.raises(ValueError, match="already in use"):
        scheduler.submit(follow_up, max_tokens=2, session=session)
    scheduler.run()
    assert request.completion.tokens == alone.tokens
    assert request.completion.timings.prefilled_tokens == 9
    assert session.tokens == alone_session.tokens
    assert other.completion.tokens == model.generate(tokens_of(12, seed=13), max_tokens=6, temperature=0, ignore_eos=True).tokens


def test_requests_sharing_a_prefill_continue_forks_of_it(model):
    """Choices of one prompt: the first prefills it (in three 16-token steps), the others wait,
    then continue forks of its session and run no prompt token of their own."""
    prompt = tokens_of(40, seed=21)
    lengths = (8, 5, 11)
    alone = [model.generate(prompt, max_tokens=n, temperature=0, ignore_eos=True).tokens for n in lengths]
    scheduler = lfmrt.Scheduler(model, max_batch=4, prefill_chunk=16)
    first = scheduler.submit(prompt, max_tokens=lengths[0], temperature=0, ignore_eos=True)
    others = [scheduler.submit(prompt, max_tokens=n, temperature=0, ignore_eos=True, prefill_from=first)
              for n in lengths[1:]]
    scheduler.step()
    assert all(not request.session.tokens for request in others)  # waiting for the first's prefill
    scheduler.run()
    requests = [first, *others]
    assert [r.completion.tokens for r in requests] == alone
    assert [r.completion.timings.prefilled_tokens for r in requests] == [40, 0, 0]
    assert [r.session.tokens for r in requests] == [prompt + tokens[:-1] for tokens in alone]


def test_a_request_whose_prefill_source_ended_or_moved_on_prefills_its_own(model):
    prompt = tokens_of(40, seed=22)
    alone = model.generate(prompt, max_tokens=6, temperature=0, ignore_eos=True).tokens
    scheduler = lfmrt.Scheduler(model, max_batch=4, prefill_chunk=16)
    cancelled = scheduler.submit(prompt, max_tokens=6, temperature=0, ignore_eos=True)
    orphan = scheduler.submit(prompt, max_tokens=6, temperature=0, ignore_eos=True, prefill_from=cancelled)
    scheduler.step()
    cancelled.cancel()  # a third of its prompt in
    decoding = scheduler.submit(prompt, max_tokens=6, temperature=0, ignore_eos=True)
    for _ in range(4):
        scheduler.step()  # its prompt is in and it has decoded a token
    late = scheduler.submit(prompt, max_tokens=6, temperature=0, ignore_eos=True, prefill_from=decoding)
    scheduler.run()
    assert [r.completion.tokens for r in (orphan, decoding, late)] == [alone] * 3
    assert orphan.completion.timings.prefilled_tokens == 40 and late.completion.timings.prefilled_tokens == 40
    with pytest.raises(ValueError, match="not both"):
        scheduler.submit(prompt, max_tokens=2, session=model.session(), prefill_from=late)
    with pytest.raises(ValueError, match="this scheduler"):
        lfmrt.Scheduler(model).submit(prompt, max_tokens=2, prefill_from=late)


def test_a_bad_prompt_is_refused_at_submit_and_the_others_run(model):
    scheduler = lfmrt.Scheduler(model)
    good = scheduler.submit(tokens_of(5), max_tokens=3, temperature=0, ignore_eos=True)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        scheduler.submit([1, model.config.vocab_size], max_tokens=3)
    scheduler.run()
    assert good.completion.tokens == model.generate(tokens_of(5), max_tokens=3, temperature=0, ignore_eos=True).tokens


@pytest.mark.parametrize("chunk_size", [3, 64, 512])
def test_append_batch_equals_appending_to_each_alone(model, chunk_size):
    # Checkpoints every 7 positions, so batched steps must stop at each session's own ones.
    options = dict(checkpoint_interval=7)
    lists = [tokens_of(n, seed=300 + n) for n in (1, 20, 0, 45, 8)]
    held = [tokens_of(n, seed=400 + n) for n in (0, 5, 3, 13, 1)]
    alone, batched = [], []
    for prefix, tokens in zip(held, lists):
        session = model.session(**options)
        if prefix:
            session.append(prefix)
        if tokens:
            session.append(tokens, chunk_size=chunk_size)
        alone.append(session)
        session = model.session(**options)
        if prefix:
            session.append(prefix)
        batched.append(session)
    lfmrt._core.Session.append_batch([s._core for s in batched], lists, chunk_size)
    for a, b in zip(alone, batched):
        assert b.tokens == a.tokens and b.n_forwarded == a.n_forwarded and b.n_checkpoints == a.n_checkpoints
        if a.n_tokens:
            assert np.abs(b.last_logits - a.last_logits).max() < TOLERANCE
        # ...and the checkpoints are the same: a rewind lands on the same state.
        a.rewind(a.n_tokens // 2)
        b.rewind(b.n_tokens // 2)
        assert np.abs(b.append([5]) - a.append([5])).max() < TOLERANCE


def test_append_batch_refuses_bad_input_leaving_every_session_unchanged(model):
    first, second = model.session(), model.session()
    first.append([1, 2])
    before = first.last_logits.copy()
    batch = lfmrt._core.Session.append_batch
    with pytest.raises(ValueError, match="outside the vocabulary"):
        batch([first._core, second._core], [[3, 4], [5, model.config.vocab_size]], 64)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        batch([first._core], [[2**40]], 64)
    with pytest.raises(ValueError, match="context overflow"):
        batch([first._core, second._core], [[3], [5] * (model.config.max_context + 1)], 64)
    with pytest.raises(ValueError, match="same session twice"):
        batch([first._core, first._core], [[3], [4]], 64)
    with pytest.raises(ValueError, match="one token list per session"):
        batch([first._core, second._core], [[3]], 64)
    with pytest.raises(ValueError, match="None"):
        batch([first._core, None], [[3], [4]], 64)
    with pytest.raises(ValueError, match="chunk_size"):
        batch([first._core], [[3]], 0)
    assert first.tokens == [1, 2] and second.n_tokens == 0
    assert np.array_equal(first.last_logits, before)


def test_decode_equals_append_of_one_token_bit_for_bit(model):
    decoded, appended = model.session(), model.session()
    prompt = tokens_of(12, seed=21)
    decoded.append(prompt)
    appended.append(prompt)
    for token in tokens_of(20, seed=22):
        got = decoded.decode(token)
        want = appended.append([token])
        assert got.dtype == np.float32 and got.shape == (model.config.vocab_size,)
        assert np.array_equal(got, want)
        assert np.array_equal(decoded.last_logits, appended.last_logits)
    assert decoded.tokens == appended.tokens
    assert decoded.n_forwarded == appended.n_forwarded and decoded.n_checkpoints == appended.n_checkpoints
    assert np.array_equal(decoded.decode(np.int64(7)), appended.append([7]))


def test_decode_refuses_bad_tokens_leaving_the_session_unchanged(model):
    session = model.session()
    session.append([1, 2, 3])
    before = session.last_logits.copy()
    for token in (model.config.vocab_size, -1, 2**40):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            session.decode(token)
    for token in (3.0, "3", [3], None, True):
        with pytest.raises(TypeError, match="decode takes one token id"):
            session.decode(token)
    full = lfmrt.Model.load(MODEL_DIR, max_context=16, kv_cache="f32").session()
    full.append(tokens_of(16))
    with pytest.raises(ValueError, match="context overflow"):
        full.decode(1)
    assert full.n_tokens == 16
    assert session.tokens == [1, 2, 3]
    assert np.array_equal(session.last_logits, before)


def test_sessions_from_many_threads_are_correct(model):
    prompts = [tokens_of(20 + 5 * i, seed=i) for i in range(6)]
    expected = [fresh_logits(model, p + [3, 4, 5]) for p in prompts]
    results = [None] * len(prompts)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                session = model.session()
                session.append(prompts[i])
                for token in (3, 4, 5):
                    logits = session.append([token])
                results[i] = logits
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    run_in_threads(work, len(prompts))
    assert not errors
    for got, want in zip(results, expected):
        assert np.abs(got - want).max() < TOLERANCE


def test_one_session_shared_by_threads_stays_consistent(model):
    session = model.session()
    session.append([1])

    def work(seed):
        for token in tokens_of(15, seed=seed):
            session.append([token])

    run_in_threads(work, 4)
    assert session.n_tokens == 61
    assert np.abs(session.last_logits - fresh_logits(model, session.tokens)).max() < TOLERANCE
