"""generate / stream / chat: greedy determinism, seeds, stop strings, end of sequence, timings."""

import _thread
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import lfmrt

MODELS = Path(__file__).parent / "fixtures" / "models"
MODEL_DIR = MODELS / "lfm2_350m_pattern_bf16"
EOS = 7  # <|im_end|>, the fixtures' end-of-turn token


@pytest.fixture(scope="module")
def model() -> lfmrt.Model:
    return lfmrt.Model.load(MODEL_DIR, n_threads=2, kv_cache="f32")  # exact comparisons below


def test_greedy_is_deterministic_and_matches_logits(model):
    prompt = model.tokenize("The model")
    a = model.generate(prompt, max_tokens=16, temperature=0, ignore_eos=True)
    b = model.generate(prompt, max_tokens=16, temperature=0, ignore_eos=True)
    assert a.tokens == b.tokens and len(a.tokens) == 16
    # Each greedy token is the argmax of the full-sequence logits at the position before it.
    logits = model.logits(prompt + a.tokens[:-1])
    assert np.argmax(logits[len(prompt) - 1 :], axis=1).tolist() == a.tokens


def test_text_prompt_is_tokenized_with_special_tokens(model):
    assert model.generate("Hello", max_tokens=4, temperature=0).tokens == model.generate(
        model.tokenize("Hello"), max_tokens=4, temperature=0
    ).tokens


def test_same_seed_same_output(model):
    a = model.generate("Once", max_tokens=24, temperature=1.0, seed=5, ignore_eos=True)
    b = model.generate("Once", max_tokens=24, temperature=1.0, seed=5, ignore_eos=True)
    c = model.generate("Once", max_tokens=24, temperature=1.0, seed=6, ignore_eos=True)
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens


def test_unseeded_sampling_draws_a_seed_and_reports_it(model):
    runs = [model.generate("Once", max_tokens=16, temperature=1.0, ignore_eos=True) for _ in range(5)]
    assert len({tuple(run.tokens) for run in runs}) > 1  # seed 0 every time gave one answer
    assert all(isinstance(run.seed, int) and 0 <= run.seed < 2**64 for run in runs)
    assert len({run.seed for run in runs}) == 5
    again = model.generate("Once", max_tokens=16, temperature=1.0, ignore_eos=True, seed=runs[0].seed)
    assert again.tokens == runs[0].tokens and again.seed == runs[0].seed
    assert model.generate("Once", max_tokens=4, temperature=1.0, seed=7).seed == 7
    batch = model.generate_batch(["Once", "Once"], max_tokens=16, temperature=1.0, ignore_eos=True)
    assert batch[0].seed != batch[1].seed
    chat = model.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=1.0)
    assert chat.seed is not None


def test_a_single_stop_string_is_one_stop_not_its_characters(model):
    text = model.generate("The", max_tokens=40, temperature=0, ignore_eos=True).text
    # A two-character stop whose characters each occur before it: iterating it would cut early.
    start = next(k for k in range(1, len(text) - 1)
                 if text.index(text[k : k + 2]) == k and min(text.find(text[k]), text.find(text[k + 1])) < k)
    stop = text[start : start + 2]
    cut = model.generate("The", max_tokens=40, temperature=0, ignore_eos=True, stop=stop)
    assert cut.text == text[:start] and cut.finish_reason == "stop"
    assert "".join(model.stream("The", max_tokens=40, temperature=0, ignore_eos=True, stop=stop)) == text[:start]
    with pytest.raises(TypeError, match="stop must be a string"):
        model.generate("The", max_tokens=2, stop=5)
    with pytest.raises(ValueError, match="non-empty"):
        model.generate("The", max_tokens=2, stop=[""])


def test_special_tokens_are_left_out_of_text_unless_asked_for(model):
    forced = dict(max_tokens=3, temperature=0, logit_bias={EOS: 1e4}, ignore_eos=True)
    quiet = model.generate("Once", **forced)
    assert quiet.tokens == [EOS] * 3 and quiet.text == ""
    assert "".join(model.stream("Once", **forced)) == ""
    kept = model.generate("Once", skip_special_tokens=False, **forced)
    assert kept.text == "<|im_end|>" * 3
    tool_start = model.tokenize("<|tool_call_start|>", add_special_tokens=False)[0]
    marked = model.generate("Once", max_tokens=2, temperature=0, logit_bias={tool_start: 1e4})
    assert marked.text == "<|tool_call_start|>" * 2  # the answer's own markup stays


def test_detokenize_rejects_ids_outside_the_vocabulary(model):
    vocab = model.config.vocab_size
    assert isinstance(model.detokenize([vocab - 1]), str)
    for bad in ([10**9], [-1], [vocab]):
        with pytest.raises(ValueError, match="outside the vocabulary"):
            model.detokenize(bad)
    with pytest.raises(TypeError, match="index 1 is float"):
        model.detokenize([1, 2.5])


def test_ctrl_c_stops_a_long_logits_call_between_chunks(model, monkeypatch):
    """Ctrl-C during a long logits() call: Python sees the signal when the core returns, so the
    call must return to Python after each chunk, not once at the end."""
    tokens = (list(range(14, 700)) * 2)[:1300]  # three chunks of 512
    ran = []
    append = lfmrt.Session.append

    def append_then_ctrl_c(self, chunk, **kwargs):
        result = append(self, chunk, **kwargs)
        ran.append(len(chunk))
        _thread.interrupt_main()  # as if Ctrl-C came during this call
        return result

    monkeypatch.setattr(lfmrt.Session, "append", append_then_ctrl_c)
    # interrupt_main() is a no-op unless Python's own SIGINT handler is installed, which is the
    # interactive user's case; the test installs it rather than trust what ran before it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            model.logits(tokens)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sum(ran) < len(tokens)
    monkeypatch.undo()
    whole = model.logits(tokens)  # the slices give what one call gives
    assert whole.shape == (1300, model.config.vocab_size)
    assert np.allclose(whole[-1], model.session().append(tokens), atol=1e-5)


def test_length_finish_and_timings(model):
    completion = model.generate("Once", max_tokens=10, temperature=0, ignore_eos=True)
    assert completion.finish_reason == "length" and len(completion.tokens) == 10
    timings = completion.timings
    assert timings.prompt_tokens == len(model.tokenize("Once"))
    assert timings.generated_tokens == 10 and timings.decode_steps == 9
    assert timings.prefill_tokens_per_s > 0 and timings.decode_tokens_per_s > 0


def test_eos_token_stops_and_is_not_returned(model):
    completion = model.generate("Once", max_tokens=10, temperature=0, logit_bias={EOS: 1e4})
    assert completion.finish_reason == "stop" and completion.tokens == [] and completion.text == ""
    ignored = model.generate("Once", max_tokens=3, temperature=0, logit_bias={EOS: 1e4}, ignore_eos=True)
    assert ignored.tokens == [EOS] * 3


def test_stream_pieces_join_to_the_completion_text(model):
    pieces = list(model.stream("The", max_tokens=30, temperature=0, ignore_eos=True))
    completion = model.generate("The", max_tokens=30, temperature=0, ignore_eos=True)
    assert "".join(pieces) == completion.text
    assert len(pieces) > 1


def test_stop_string_across_tokens_is_honoured_and_not_leaked(model):
    full = model.generate("The", max_tokens=40, temperature=0, ignore_eos=True)
    # A stop string spanning several tokens, starting a few characters into the text.
    tokens_text = [model.detokenize([t]) for t in full.tokens]
    start = len(tokens_text[0]) + len(tokens_text[1]) - 1
    stop = full.text[start : start + 4]
    assert len(stop) == 4
    expected = full.text[: full.text.index(stop)]
    stopped = model.generate("The", max_tokens=40, temperature=0, ignore_eos=True, stop=[stop])
    assert stopped.finish_reason == "stop"
    assert stopped.text == expected
    streamed = "".join(model.stream("The", max_tokens=40, temperature=0, ignore_eos=True, stop=[stop]))
    assert streamed == expected


def test_chat_renders_the_template_and_stops_at_end_of_turn(model):
    messages = [{"role": "user", "content": "Hi there"}]
    rendered = model.apply_chat_template(messages)
    assert rendered.startswith("<|startoftext|><|im_start|>user\nHi there<|im_end|>\n")
    assert rendered.endswith("<|im_start|>assistant\n")
    answer = model.chat(messages, max_tokens=12, temperature=0)
    prompt = model.tokenize(rendered, add_special_tokens=False)
    expected = model.generate(prompt, max_tokens=12, temperature=0)
    assert answer.tokens == expected.tokens
    assert "".join(model.chat_stream(messages, max_tokens=12, temperature=0)) == answer.text
    ended = model.chat(messages, max_tokens=12, temperature=0, logit_bias={EOS: 1e4})
    assert ended.finish_reason == "stop" and ended.text == ""


@pytest.mark.parametrize(
    "messages, error, message",
    [
        ("hello", TypeError, "not a string"),
        ({"role": "user", "content": "hi"}, TypeError, "list of message dicts"),
        (["hello"], TypeError, "message 0 must be a dict"),
        ([{"role": "user"}], ValueError, r"message 0 \(user\) has no 'content'"),
        ([{"role": "user", "content": None}], ValueError, "has no 'content'"),
        ([{"content": "hi"}], ValueError, "message 0 has no 'role'"),
        ([{"role": "user", "content": "a"}, {"role": "usr", "content": "b"}], ValueError, "message 1 has role 'usr'"),
        ([{"role": "user", "content": 5}], TypeError, "'content' must be text"),
    ],
)
def test_chat_rejects_what_is_not_a_conversation(model, messages, error, message):
    for call in (model.chat, model.apply_chat_template):
        with pytest.raises(error, match=message) as raised:
            call(messages)
        assert "Undefined" not in str(raised.value) and "got 'h'" not in str(raised.value)


def test_an_assistant_turn_may_carry_tool_calls_instead_of_content(model):
    calls = [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]
    rendered = model.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": calls}])
    assert "<|tool_call_start|>[f()]<|tool_call_end|>" in rendered


def test_bad_arguments_raise_clear_errors(model):
    with pytest.raises(ValueError, match="max_tokens"):
        model.generate("Hi", max_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        model.generate("Hi", max_tokens=2, temperature=-1)
    with pytest.raises(TypeError, match="unknown sampling option"):
        model.generate("Hi", max_tokens=2, temprature=0.5)
    with pytest.raises(ValueError, match="empty"):
        model.generate([], max_tokens=2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate([1, model.config.vocab_size], max_tokens=2)


def test_session_rejects_bad_tokens_and_overflow_without_changing_state(model):
    session = model.session()
    session.append([1, 2, 3])
    before = session.last_logits.copy()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        session.append([5, -1])
    with pytest.raises(ValueError, match="context"):
        session.append([5] * model.config.max_context)
    assert session.n_tokens == 3 and session.tokens == [1, 2, 3]
    assert np.array_equal(session.last_logits, before)
    # ...and it still continues exactly as a fresh one would.
    assert np.allclose(session.append([9]), model.logits([1, 2, 3, 9])[-1], atol=1e-5)


def test_session_reset_starts_over(model):
    session = model.session()
    first = session.append([1, 4, 9])
    session.reset()
    assert session.n_tokens == 0
    assert np.array_equal(session.append([1, 4, 9]), first)


def test_concurrent_generation_from_threads_matches_serial(model):
    prompts = [model.tokenize(text) for text in ("One", "Two words", "Three more words", "Four")]
    serial = [model.generate(p, max_tokens=12, temperature=0, ignore_eos=True).tokens for p in prompts]
    results = [None] * len(prompts)

    def run(i):
        results[i] = model.generate(prompts[i], max_tokens=12, temperature=0, ignore_eos=True).tokens

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == serial


def test_scalar_and_simd_kernel_sets_agree():
    f32_model = MODELS / "mixed_mha_hd64_f32_dialectA"
    scalar = lfmrt.Model.load(f32_model, device="cpu:scalar")
    best = lfmrt.Model.load(f32_model)
    tokens = list(range(1, 60))
    assert np.abs(scalar.logits(tokens) - best.logits(tokens)).max() < 1e-4


def test_unknown_kernel_set_is_a_clear_error():
    with pytest.raises(ValueError, match="kernel set 'avx9000' \\(device cpu:avx9000"):
        lfmrt.Model.load(MODEL_DIR, device="cpu:avx9000")
    with pytest.raises(ValueError, match="unknown device 'tpu:0'"):
        lfmrt.Model.load(MODEL_DIR, device="tpu:0")


def test_devices_lists_the_cpu_first(model):
    devices = lfmrt.devices()
    assert devices[0]["id"] == "cpu" and devices[0]["kind"] == "cpu" and devices[0]["memory_bytes"] > 0
    assert lfmrt.cpu_info()["kernels"] in devices[0]["details"]
    assert model.device == "cpu:" + lfmrt.cpu_info()["kernels"]


def test_repr_and_cpu_info(model):
    text = repr(model)
    assert "layers=8" in text and "BF16" in text and "device=cpu:" in text
    info = lfmrt.cpu_info()
    assert info["physical_cores"] >= 1 and info["kernels"] in info["kernel_sets"]
    assert info["kernel_sets"][0] == "scalar" and info["machine"]


def test_lfmrt_isa_forces_a_lower_kernel_set(monkeypatch):
    monkeypatch.delenv("LFMRT_ISA", raising=False)
    best = lfmrt.cpu_info()["kernels"]
    assert best == lfmrt.cpu_info()["kernel_sets"][-1]
    monkeypatch.setenv("LFMRT_ISA", "scalar")
    assert lfmrt.cpu_info()["kernels"] == "scalar"
    assert lfmrt.Model.load(MODEL_DIR, n_threads=1)._core.kernel_set == "scalar"
    monkeypatch.setenv("LFMRT_ISA", "avx9000")
    with pytest.raises(ValueError, match="unknown CPU kernel set 'avx9000' \\(device cpu:avx9000 or LFMRT_ISA\\)"):
        lfmrt.cpu_info()
