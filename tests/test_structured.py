"""Constrained decoding on the demo model: answers follow a JSON schema, a grammar, a regular
expression or LFM2's tool-call syntax, sampled at a temperature (not only greedy), alone, in
``generate_batch`` and in the ``Scheduler``; and the package works without the grammar engine
for everything else.

Each test makes the model do what it would not do unconstrained (the demo model writes no JSON
and calls no tool on these prompts; ``logit_bias`` pushes it towards the forbidden token), so a
constraint that is not applied fails the test.
"""

import json
import re
import subprocess
import sys
import threading

import jsonschema
import numpy as np
import llguidance  # noqa: F401 - the grammar engine: a missing one is a failure, not a skip
import pytest

import lfmrt
import lfmrt.generation.state as generation_state
from lfmrt.text.structured import Constraint
from lfmrt.text.tool_calls import TOOL_CALL_START, TOOL_CALL_END, parse_tool_calls

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,6}$"}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 10}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "address"],
    "additionalProperties": False,
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 12},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}}, "required": ["zone"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def model():
    return lfmrt.Model.load("demo")


def test_json_schema_answers_validate_over_many_sampled_generations(model):
    constraint = model.constraint(response_format=PERSON_FORMAT)
    prompts = ["Once upon a time", "The user asked", "Hello", "def main():"] * 6
    completions = model.generate_batch(prompts, max_tokens=120, constraint=constraint, temperature=1.0, seed=7)
    assert len({c.text for c in completions}) > 1  # sampled, not one answer repeated
    for completion in completions:
        assert completion.finish_reason == "stop", completion.text
        jsonschema.validate(json.loads(completion.text), PERSON)
    unconstrained = model.generate_batch(prompts[:4], max_tokens=40, temperature=1.0, seed=7)
    assert not any(c.text.startswith("{") for c in unconstrained)  # the demo model writes no JSON unasked


def test_generate_stream_and_chat_take_response_format(model):
    completion = model.generate("Hello", max_tokens=200, response_format={"type": "json_object"}, temperature=0.8, seed=1)
    assert completion.finish_reason == "stop" and isinstance(json.loads(completion.text), dict)
    stream = model.stream("Hello", max_tokens=120, response_format=PERSON_FORMAT, temperature=0.8, seed=2)
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            completion = stop.value
            break
    assert "".join(pieces) == completion.text
    jsonschema.validate(json.loads(completion.text), PERSON)
    answer = model.chat(ASK, max_tokens=120, response_format=PERSON_FORMAT, temperature=0.8, seed=3)
    jsonschema.validate(json.loads(answer.text), PERSON)


def test_regex_and_grammars(model):
    for seed in range(4):
        text = model.generate("Hi", max_tokens=20, regex=r"[0-9]{3}-[a-z]{2,4}", temperature=1.0, seed=seed).text
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2,4}", text), text
    lark = 'start: "yes" | "no" | "maybe " NUMBER\nNUMBER: /[1-9][0-9]?/'
    gbnf = 'root ::= "(" [a-c]+ ")"'
    for seed in range(4):
        text = model.generate("Hi", max_tokens=20, grammar=lark, temperature=1.0, seed=seed).text
        assert re.fullmatch(r"yes|no|maybe [1-9][0-9]?", text), text
        completion = model.generate("Hi", max_tokens=8, grammar=gbnf, temperature=1.0, seed=seed)
        pattern = r"\([a-c]+\)" if completion.finish_reason == "stop" else r"\([a-c]*"
        assert re.fullmatch(pattern, completion.text), completion.text


def test_max_tokens_cuts_a_constrained_answer_with_finish_reason_length(model):
    completion = model.generate("Hi", max_tokens=3, response_format=PERSON_FORMAT, temperature=1.0, seed=0)
    assert completion.finish_reason == "length" and len(completion.tokens) == 3


def _arguments_valid(call, tool):
    arguments = json.loads(call["function"]["arguments"])
    jsonschema.validate(arguments, tool["function"]["parameters"])
    return arguments


@pytest.mark.parametrize("seed", range(6))
def test_tool_choice_required_gives_valid_calls(model, seed):
    answer = model.chat(ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=80, temperature=1.0, seed=seed)
    assert answer.finish_reason == "stop" and answer.tool_parse_error is None, answer.text
    assert answer.tool_calls
    tools = {"get_weather": WEATHER, "get_time": TIME}
    for call in answer.tool_calls:
        _arguments_valid(call, tools[call["function"]["name"]])


def test_a_forced_call_the_grammar_accepts_is_never_dropped_by_the_parser(model):
    """Numbers too large for a float or for Python's int-string limit satisfy a "number" schema
    (JSON has no bound) and so the grammar; the parser keeps such calls, writing the numbers as
    the model did."""
    scale = {"type": "function", "function": {"name": "scale", "parameters": {"type": "object", "properties": {
        "factor": {"type": "number"}, "steps": {"type": "array", "items": {"type": "number"}}}, "required": ["factor"]}}}
    constraint = model.constraint(tools=[scale], tool_choice="required")
    cases = {
        "scale(factor=1e999)": '{"factor": 1e999}',
        "scale(factor=-2.5E+400, steps=[1, 1e309, 0.5])": '{"factor": -2.5E+400, "steps": [1, 1e309, 0.5]}',
        f"scale(factor={'7' * 4400})": f'{{"factor": {"7" * 4400}}}',  # beyond Python's int-string limit
    }
    for call, arguments in cases.items():
        text = f"{TOOL_CALL_START}[{call}]{TOOL_CALL_END}"
        state = constraint.start()
        for token in model.tokenize(text, add_special_tokens=False):
            state.compute_mask()
            state.advance(token)
        assert state.finished
        parsed = parse_tool_calls(text)
        assert parsed.error is None, parsed.error
        assert [c["function"]["arguments"] for c in parsed.tool_calls] == [arguments]


# Tools named as OpenAI's and MCP's names may be but Python's call syntax is not (hyphens,
# keywords, a dotted keyword), with arguments of every JSON type, bounded so that a walk ends.
AWKWARD_TOOLS = [
    {"type": "function", "function": {"name": "read-file", "parameters": {"type": "object", "properties": {
        "user-id": {"type": "integer", "minimum": -5, "maximum": 999},
        "from": {"type": "string", "maxLength": 4},
        "mode": {"enum": ["r", "w", None, 1.5, True]},
        "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["user-id"]}}},
    {"type": "function", "function": {"name": "db.import", "parameters": {"type": "object", "properties": {
        "$ref": {"type": "string", "maxLength": 3},
        "opts": {"type": "object", "properties": {"k": {"type": "integer", "minimum": 0, "maximum": 9}},
                 "required": ["k"], "additionalProperties": False}}, "required": ["opts"]}}},
    {"type": "function", "function": {"name": "class", "parameters": {"type": "object", "properties": {}}}},
]


def _random_walks(model, constraint, walks=60, max_steps=160):
    """The answers of ``walks`` walks through ``constraint``, each taking a uniformly random token
    the constraint allows until it is finished (walks that do not finish within ``max_steps``
    tokens, lost in a long string or number, are left out)."""
    rng = np.random.default_rng(0)
    answers = []
    for _ in range(walks):
        state, tokens = constraint.start(), []
        for _ in range(max_steps):
            state.compute_mask()
            allowed = np.flatnonzero(np.unpackbits(state.mask.view(np.uint8), bitorder="little")[: model.config.vocab_size])
            tokens.append(int(rng.choice(allowed)))
            state.advance(tokens[-1])
            if state.finished:
                answers.append(model.detokenize(tokens))
                break
    return answers


def test_random_walks_through_a_forced_call_always_parse_to_calls_that_satisfy_the_schemas(model):
    """Guaranteed-valid tool calls, checked against the grammar engine itself: random walks through
    the forced-call constraint (strings of odd escapes and code points, numbers in every JSON
    form, names Python cannot parse as written) must each parse as calls with no error, whose
    arguments jsonschema accepts."""
    constraint = model.constraint(tools=AWKWARD_TOOLS, tool_choice="required")
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in AWKWARD_TOOLS}
    answers = _random_walks(model, constraint)
    assert len(answers) >= 40, f"only {len(answers)} of 60 walks finished"
    counts = []
    for text in answers:
        parsed = parse_tool_calls(text)
        assert parsed.error is None and parsed.tool_calls, (text, parsed.error)
        for call in parsed.tool_calls:
            arguments = json.loads(call["function"]["arguments"])
            jsonschema.validate(arguments, schemas[call["function"]["name"]])
            call["function"]["arguments"].encode()  # valid UTF-8: no lone surrogate
        counts.append(len(parsed.tool_calls))
    assert max(counts) > 1  # a block may hold several calls


def test_parallel_tool_calls_false_forces_exactly_one_call(model):
    """With parallel_tool_calls=False a forced block ends after its first call: every random walk
    holds exactly one, and a chat's answer ends there even when the model is pushed to go on
    with "," (without it, the pushed model writes call after call until max_tokens)."""
    single = model.constraint(tools=AWKWARD_TOOLS, tool_choice="required", parallel_tool_calls=False)
    answers = _random_walks(model, single)
    assert len(answers) >= 40
    assert all(len(parse_tool_calls(text).tool_calls) == 1 for text in answers), answers
    (comma,) = model.tokenize(",", add_special_tokens=False)
    pushed = dict(tools=[WEATHER], max_tokens=60, temperature=0, logit_bias={comma: 50.0})
    many = model.chat(ASK, constraint=model.constraint(tools=[WEATHER], tool_choice="required"), **pushed)
    assert many.finish_reason == "length"  # the push writes call after call
    one = model.chat(ASK, constraint=model.constraint(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False),
                     **pushed)
    assert one.finish_reason == "stop" and len(one.tool_calls) == 1, one.text
    assert model.chat(ASK, tool_choice="required", parallel_tool_calls=False, **pushed).text == one.text
    with pytest.raises(ValueError, match="leave out parallel_tool_calls"):
        model.chat(ASK, constraint=single, parallel_tool_calls=False)


def test_tool_choice_naming_a_function_calls_exactly_it(model):
    choice = {"type": "function", "function": {"name": "get_time"}}
    for seed in range(4):
        answer = model.chat(ASK, tools=[WEATHER, TIME], tool_choice=choice, max_tokens=60, temperature=1.0, seed=seed)
        assert [call["function"]["name"] for call in answer.tool_calls] == ["get_time"], answer.text
        assert "zone" in _arguments_valid(answer.tool_calls[0], TIME)


def test_tool_choice_none_never_calls_and_auto_is_free(model):
    start = model.tokenizer.token_to_id(TOOL_CALL_START)
    pushed = {"logit_bias": {start: 30.0}, "temperature": 1.0, "seed": 0, "max_tokens": 30}
    assert model.chat(ASK, tools=[WEATHER], tool_choice="auto", **pushed).tokens[0] == start
    answer = model.chat(ASK, tools=[WEATHER], tool_choice="none", **pushed)
    assert start not in answer.tokens and answer.tool_calls is None
    assert model.constraint(tools=[WEATHER], tool_choice="auto") is None


def test_tool_choice_auto_with_a_format_gives_a_call_or_the_format(model):
    small = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}
    answer_format = {"type": "json_schema", "json_schema": {"name": "small", "schema": small}}
    constraint = model.constraint(tools=[WEATHER], tool_choice="auto", response_format=answer_format)
    start = model.tokenizer.token_to_id(TOOL_CALL_START)
    prompt = model.apply_chat_template(ASK, tools=[WEATHER])
    called = model.generate(prompt, max_tokens=60, constraint=constraint, logit_bias={start: 30.0}, temperature=1.0,
                            skip_special_tokens=False, seed=0)
    assert called.text.startswith(TOOL_CALL_START)
    answered = model.generate(prompt, max_tokens=60, constraint=constraint, logit_bias={start: -30.0}, temperature=1.0, seed=0)
    assert answered.finish_reason == "stop"
    jsonschema.validate(json.loads(answered.text), small)


@pytest.mark.parametrize("offload", ["always", "never"])
def test_scheduler_takes_a_constraint_per_request_and_masks_beside_the_forward_step(model, monkeypatch, offload):
    # Masks on the worker thread, overlapping each forward step, or all inline: the same answers.
    monkeypatch.setattr(generation_state, "OFFLOAD_ABOVE_SECONDS", 0.0 if offload == "always" else float("inf"))
    monkeypatch.setattr(generation_state, "physical_core_count", lambda: model.n_threads + 1)  # a core to spare
    scheduler = lfmrt.Scheduler(model, max_batch=3)  # five requests through three slots
    person = model.constraint(response_format=PERSON_FORMAT)
    requests = [
        scheduler.submit("Hello", max_tokens=120, constraint=person, temperature=1.0, seed=1),
        scheduler.submit("Hello", max_tokens=20, temperature=1.0, seed=1),
        scheduler.submit("Hello", max_tokens=20, regex=r"[0-9]{4}", temperature=1.0, seed=1),
        scheduler.submit("Once", max_tokens=120, response_format=PERSON_FORMAT, temperature=1.0, seed=2),
        scheduler.submit("Once", max_tokens=20, grammar='start: ("a" | "b") ("a" | "b")? "!"', temperature=1.0, seed=2),
    ]
    scheduler.run()
    assert (scheduler._masks._executor is not None) == (offload == "always")  # the worker thread ran
    texts = [request.completion.text for request in requests]
    jsonschema.validate(json.loads(texts[0]), PERSON)
    jsonschema.validate(json.loads(texts[3]), PERSON)
    assert not texts[1].startswith("{")
    assert re.fullmatch(r"[0-9]{4}", texts[2]) and re.fullmatch(r"[ab]{1,2}!", texts[4]), texts
    # The same answers as each request alone: masks computed ahead change nothing.
    alone = model.generate("Hello", max_tokens=120, constraint=person, temperature=1.0, seed=1)
    assert alone.text == texts[0]


def test_request_cancel_and_constraint_errors_end_only_their_request(model):
    scheduler = lfmrt.Scheduler(model)
    session = model.session()
    cancelled = scheduler.submit("Hello", max_tokens=50, session=session, response_format=PERSON_FORMAT)
    # The constraint allows only a digit; logit_bias forbids them all: the sampler has no token to draw.
    no_digits = {model.tokenizer.token_to_id(str(digit)): float("-inf") for digit in range(10)}
    failing = scheduler.submit("Hello", max_tokens=5, regex="[0-9]", logit_bias=no_digits)
    fine = scheduler.submit("Hello", max_tokens=5)
    scheduler.step()
    scheduler.step()
    cancelled.cancel()
    assert cancelled.done and cancelled.completion.finish_reason == "cancelled"
    assert failing.done and failing.completion.finish_reason == "error"
    assert isinstance(failing.error, lfmrt.ConstraintError)
    again = scheduler.submit("Hello", max_tokens=3, session=session)  # the cancelled one's session is free
    scheduler.run()
    assert fine.completion.finish_reason == "length" and again.completion.finish_reason == "length"
    with pytest.raises(lfmrt.ConstraintError):
        model.generate("Hello", max_tokens=5, regex="[0-9]", logit_bias=no_digits)


def test_submit_is_thread_safe_while_the_scheduler_runs(model):
    scheduler = lfmrt.Scheduler(model, max_batch=4)
    constraint = model.constraint(regex=r"[a-z]{3}")
    requests, lock = [], threading.Lock()

    def submit_some():
        for _ in range(5):
            request = scheduler.submit("Hi", max_tokens=6, constraint=constraint, temperature=1.0)
            with lock:
                requests.append(request)

    long_one = scheduler.submit("Hi", max_tokens=10_000, ignore_eos=True)
    cancel_soon = threading.Timer(0.2, long_one.cancel)  # from another thread, mid-run
    threads = [threading.Thread(target=submit_some) for _ in range(3)] + [cancel_soon]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads) or scheduler.active:
        scheduler.step()
    for thread in threads:
        thread.join()
    assert len(requests) == 15
    assert all(re.fullmatch("[a-z]{3}", request.completion.text) for request in requests)
    assert long_one.completion.finish_reason == "cancelled" and 0 < len(long_one.completion.tokens) < 10_000


def test_logprobs_come_with_the_completion_and_the_request(model):
    completion = model.generate("Hello", max_tokens=6, logprobs=True, top_logprobs=3, regex="[a-z ]+")
    assert [entry.token for entry in completion.logprobs] == completion.tokens
    for entry in completion.logprobs:
        assert entry.logprob <= 0 and all(re.fullmatch("[a-z ]+", top.text) for top in entry.top_logprobs)
    scheduler = lfmrt.Scheduler(model)
    request = scheduler.submit("Hello", max_tokens=6, logprobs=True, regex="[a-z ]+")
    scheduler.run()
    assert [entry.token for entry in request.logprobs] == request.completion.tokens
    assert [entry.logprob for entry in request.logprobs] == [entry.logprob for entry in completion.logprobs]


@pytest.mark.parametrize(
    "options, field",
    [
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer", "minimum": 5, "maximum": 1}}}},
         "response_format.json_schema.schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}}, "response_format.json_schema.name"),
        ({"grammar": "start: (("}, "grammar"),
        ({"regex": "("}, "regex"),
        ({"regex": "a", "grammar": 'start: "a"'}, "at most one"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice.function.name"),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
        ({"tool_choice": "required"}, "needs tools"),
        ({"tools": [{"name": "get weather", "parameters": {"type": "object"}}], "tool_choice": "required"}, "tools[0] (get weather)"),
        ({"tools": [{"name": "f", "parameters": {"type": "object", "properties": {"first name": {}}}}], "tool_choice": "required"},
         "argument name 'first name'"),
    ],
)
def test_bad_constraints_raise_value_error_naming_the_field(model, options, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        model.constraint(**options)


def test_constraint_reuse_rules(model):
    constraint = model.constraint(regex="[0-9]+")
    assert isinstance(constraint, Constraint)
    with pytest.raises(ValueError, match="leave out regex"):
        model.generate("Hi", max_tokens=2, constraint=constraint, regex="a")
    with pytest.raises(TypeError, match="Constraint"):
        model.generate("Hi", max_tokens=2, constraint="[0-9]+")


def test_the_package_works_without_the_grammar_engine():
    script = """
import sys
sys.modules["llguidance"] = None  # as if it were not installed
import lfmrt
model = lfmrt.Model.load("demo")
assert model.generate("Hello", max_tokens=3).tokens
assert model.constraint(tools=[{"name": "f", "parameters": {}}], tool_choice="none") is not None
try:
    model.generate("Hello", max_tokens=3, response_format={"type": "json_object"})
except ImportError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'pip install "lfmrt[structured]"' in result.stdout
