"""`lfmrt serve` through the official openai client: answers equal in-process generation, streams
concatenate to the whole answer, tool calls and JSON schemas come back valid, errors are OpenAI
error objects (never a 500), a client that goes away frees its sequence, turns reuse the prefix,
and SIGTERM shuts down gracefully. One in-process server (the demo model, uvicorn in a thread)
serves most tests; the shutdown tests start `lfmrt serve` as a subprocess.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterator, List

import pytest

pytest.importorskip("fastapi", reason="the server extra (pip install 'lfmrt[server]') is not installed")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
jsonschema = pytest.importorskip("jsonschema")

import lfmrt  # noqa: E402
from lfmrt.server import ServerConfig  # noqa: E402
from lfmrt.server.runner import bind, make_server, url_of  # noqa: E402

KEY = "test-key"
NAME = "lfmrt-demo"
HELLO = [{"role": "user", "content": "What is a tuple?"}]


@contextlib.contextmanager
def running_server(model: lfmrt.Model, config: ServerConfig) -> Iterator[str]:
    """uvicorn serving ``model`` in a thread on a free port of 127.0.0.1; yields its URL."""
    sock = bind("127.0.0.1", 0)
    server = make_server(model, config, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def model() -> lfmrt.Model:
    return lfmrt.Model.load("demo", n_threads=2)


@pytest.fixture(scope="module")
def url(model) -> Iterator[str]:
    with running_server(model, ServerConfig(model_name=NAME, api_key=KEY, max_sequences=8)) as address:
        yield address


@pytest.fixture()
def client(url) -> "openai.OpenAI":
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def metric(url: str, name: str) -> float:
    """The value of one sample of the server's /metrics (0 when absent)."""
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def no_eos(model) -> Dict[str, float]:
    return {str(token): -100 for token in model.eos_token_ids}


# --- answers --------------------------------------------------------------------------------------


def test_chat_equals_in_process_chat_with_usage(client, model):
    reference = model.chat(HELLO, max_tokens=24, temperature=0)
    response = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=24, temperature=0)
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == reference.text
    assert choice.finish_reason == reference.finish_reason and choice.message.tool_calls is None
    prompt = model.tokenize(model.apply_chat_template(HELLO), add_special_tokens=False)
    assert response.usage.prompt_tokens == len(prompt)
    assert response.usage.completion_tokens == reference.timings.generated_tokens == len(reference.tokens)
    assert response.usage.total_tokens == len(prompt) + len(reference.tokens)
    assert response.model == NAME and response.object == "chat.completion"


def test_stream_concatenates_to_the_whole_answer(client, model):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "How do I open a file?"}]
    whole = client.chat.completions.create(model=NAME, messages=messages, max_tokens=40, temperature=0,
                                           logit_bias=no_eos(model))
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_tokens=40, temperature=0,
                                                 logit_bias=no_eos(model), stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and len(text) > 20
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"] == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


# OpenAI fields that ask nothing of the answer, as apps and SDKs send them.
IGNORED_OPENAI_FIELDS = {"store": False, "metadata": {"app": "tests"}, "service_tier": "auto",
                         "prompt_cache_key": "session-7", "safety_identifier": "user-7", "user": "user-7",
                         "verbosity": "low", "modalities": ["text"]}


def test_openai_fields_that_ask_nothing_of_the_answer_are_accepted_and_change_nothing(client):
    plain = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=12, temperature=0)
    whole = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=12, temperature=0,
                                           extra_body=IGNORED_OPENAI_FIELDS)
    streamed = _streamed_answer(client.chat.completions.create(
        model=NAME, messages=HELLO, max_tokens=12, temperature=0, stream=True, extra_body=IGNORED_OPENAI_FIELDS,
        stream_options={"include_usage": True, "include_obfuscation": False}))
    assert whole.choices[0].message.content == streamed == plain.choices[0].message.content


def _streamed_answer(chunks) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def test_reasoning_effort_and_chat_template_kwargs_reach_the_template(client, model, monkeypatch):
    from lfmrt.text.chat_template import ChatTemplate

    source = model.chat_template.source.replace(
        "{{- bos_token -}}", "{{- bos_token -}}{{ reasoning_effort or '' }} {{ greeting or '' }}", 1)
    assert source != model.chat_template.source, "the test's template edit found nothing to edit"
    monkeypatch.setattr(model, "chat_template", ChatTemplate(source, model.chat_template.bos_token,
                                                             model.chat_template.eos_token))
    response = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=1, reasoning_effort="low",
                                              extra_body={"chat_template_kwargs": {"greeting": "good morning"}})
    rendered = model.apply_chat_template(HELLO, reasoning_effort="low", greeting="good morning")
    assert "low good morning" in rendered
    assert response.usage.prompt_tokens == len(model.tokenize(rendered, add_special_tokens=False))
    assert response.usage.prompt_tokens > len(model.tokenize(model.apply_chat_template(HELLO), add_special_tokens=False))


def test_n_choices_are_the_answers_of_seed_plus_index_with_usage_summed(client):
    asked = dict(model=NAME, messages=HELLO, max_tokens=12, temperature=1.0, logprobs=True)
    singles = [client.chat.completions.create(seed=5 + index, **asked) for index in range(3)]
    response = client.chat.completions.create(n=3, seed=5, **asked)
    assert [choice.index for choice in response.choices] == [0, 1, 2]
    # Seeded draws from logits equal to float rounding (batched or alone, forked or prefilled)
    # agree but for a rare draw on a boundary.
    agree = sum(choice.message.content == single.choices[0].message.content
                for choice, single in zip(response.choices, singles))
    assert agree >= 2
    assert len({choice.message.content for choice in response.choices}) > 1  # the seeds differ
    assert response.usage.prompt_tokens == singles[0].usage.prompt_tokens  # counted once, as OpenAI does
    assert response.usage.completion_tokens == sum(len(choice.logprobs.content) for choice in response.choices)


def test_n_choices_stream_interleaved_each_whole(client, url):
    """More choices than the server's 8 sequences: the last ones start as the first finish, and
    the prompt of a new question is prefilled once for the eight that start together."""
    asked = dict(model=NAME, messages=[{"role": "user", "content": "Name a module of the standard library."}],
                 max_tokens=10, temperature=1.0, n=10, seed=11, logprobs=True)
    prefilled = metric(url, "lfmrt_prefilled_tokens_total")
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **asked))
    texts, tokens, finishes = [""] * 10, [""] * 10, [None] * 10
    counted = 0
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        for entry in choice.logprobs.content if choice.logprobs else []:
            tokens[choice.index] += entry.token
            counted += 1
        finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert texts == tokens and len(set(texts)) > 1  # each choice's chunks hold its own tokens
    assert all(finish in ("stop", "length") for finish in finishes)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage.completion_tokens == counted
    assert usage.prompt_tokens_details.cached_tokens == 0
    # The first eight prefill the prompt once. Choices 8 and 9 start when others have finished,
    # from pooled sessions rewound to the prompt, which re-runs it from the last checkpoint (here
    # its start). Without the shared prefill it would be ten times.
    assert metric(url, "lfmrt_prefilled_tokens_total") - prefilled <= 3 * usage.prompt_tokens


def test_n_forced_tool_calls_and_n_text_completions(client, model):
    response = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Weather in Oslo?"}],
                                              tools=TOOLS, tool_choice="required", n=2, seed=3, temperature=1.0,
                                              max_tokens=80)
    assert [choice.finish_reason for choice in response.choices] == ["tool_calls"] * 2
    assert all(choice.message.tool_calls for choice in response.choices)
    text = client.completions.create(model=NAME, prompt="The json module", max_tokens=8, n=2, seed=9, temperature=1.0)
    assert [choice.text for choice in text.choices] == [
        model.generate("The json module", max_tokens=8, temperature=1.0, seed=seed).text for seed in (9, 10)]


def test_completions_endpoint_equals_generate(client, model):
    prompt = "The json module"
    reference = model.generate(prompt, max_tokens=16, temperature=0)
    response = client.completions.create(model=NAME, prompt=prompt, max_tokens=16, temperature=0)
    assert response.choices[0].text == reference.text
    assert response.usage.prompt_tokens == len(model.tokenize(prompt))
    streamed = client.completions.create(model=NAME, prompt=prompt, max_tokens=16, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == reference.text
    echoed = client.completions.create(model=NAME, prompt=prompt, max_tokens=4, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(prompt)


def test_concurrent_requests_share_steps_and_equal_each_alone(client, model, url):
    prompts = [f"Question {i}: what does list.{name} do?" for i, name in
               enumerate(["append", "pop", "sort", "copy", "index", "count"])]
    references = [model.chat([{"role": "user", "content": p}], max_tokens=20, temperature=0).text for p in prompts]
    steps_alone = metric(url, 'lfmrt_step_sequences_bucket{le="1.0"}')
    steps_before = metric(url, "lfmrt_step_sequences_count")
    answers: List[str] = [""] * len(prompts)

    def ask(i: int) -> None:
        response = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": prompts[i]}],
                                                  max_tokens=20, temperature=0)
        answers[i] = response.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == references
    steps = metric(url, "lfmrt_step_sequences_count") - steps_before
    batched = steps - (metric(url, 'lfmrt_step_sequences_bucket{le="1.0"}') - steps_alone)
    assert batched > 0, "no engine step ran more than one sequence"


def test_tool_call_in_an_answer_is_never_left_in_content(client, model):
    # The demo model answers this with a call (see test_demo.py); with tool_choice auto it is
    # parsed out of the text into tool_calls, streamed or not.
    tools = [{"type": "function", "function": {"name": "add", "description": "add two numbers",
              "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                             "required": ["a", "b"]}}}]
    messages = [{"role": "user", "content": "What is 73 plus 92?"}]
    reference = model.chat(messages, tools=tools, max_tokens=40, temperature=0)
    assert reference.tool_calls, "the demo model no longer calls a tool here; pick another prompt"
    response = client.chat.completions.create(model=NAME, messages=messages, tools=tools, max_tokens=40, temperature=0)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert "<|tool_call" not in (choice.message.content or "")
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, json.loads(call.function.arguments)) == (
        reference.tool_calls[0]["function"]["name"], json.loads(reference.tool_calls[0]["function"]["arguments"]))
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, tools=tools, max_tokens=40,
                                                 temperature=0, stream=True))
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.function.name, json.loads(d.function.arguments)) for d in deltas] == [
        (0, call.function.name, json.loads(call.function.arguments))]
    assert "<|tool_call" not in "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # The answer goes back into the conversation as OpenAI clients send it.
    follow_up = messages + [choice.message.model_dump(exclude_none=True),
                            {"role": "tool", "tool_call_id": call.id, "content": "165"}]
    again = client.chat.completions.create(model=NAME, messages=follow_up, tools=tools, max_tokens=8, temperature=0)
    assert again.choices[0].finish_reason in ("stop", "length", "tool_calls")


# --- constrained answers and logprobs ------------------------------------------------------------

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "the weather forecast of a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 16}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "add", "description": "add two numbers",
        "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                       "required": ["a", "b"], "additionalProperties": False}}},
]
SCHEMAS = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"], "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 10}}}}
STORY = [{"role": "user", "content": "Tell me a story about a cat."}]  # no reason to call a tool


def _valid_calls(calls, only=None) -> List[str]:
    names = []
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in SCHEMAS and (only is None or call.function.name == only)
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])
        names.append(call.function.name)
    return names


def test_tool_choice_required_always_gives_valid_tool_calls(client):
    for seed in range(3):  # sampled, not only greedy
        response = client.chat.completions.create(model=NAME, messages=STORY, tools=TOOLS, tool_choice="required",
                                                  max_tokens=96, temperature=1.0, seed=seed)
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        assert _valid_calls(choice.message.tool_calls)
        assert "<|tool_call" not in (choice.message.content or "")
    named = client.chat.completions.create(
        model=NAME, messages=STORY, tools=TOOLS, max_tokens=96, temperature=1.0, seed=7,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert _valid_calls(named.choices[0].message.tool_calls, only="get_weather") == ["get_weather"]
    chunks = list(client.chat.completions.create(model=NAME, messages=STORY, tools=TOOLS, tool_choice="required",
                                                 max_tokens=96, temperature=0, stream=True))
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas and _valid_calls(deltas)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_parallel_tool_calls_false_ends_a_forced_block_after_one_call(client, model):
    """parallel_tool_calls=false: the forced block holds one call, so the answer ends with it
    ("tool_calls") even when the model is pushed to go on with ","; with parallel calls allowed
    the same push writes call after call until max_tokens."""
    (comma,) = model.tokenize(",", add_special_tokens=False)
    pushed = dict(model=NAME, messages=STORY, tools=TOOLS[:1], tool_choice="required", max_tokens=60, temperature=0,
                  logit_bias={str(comma): 50})
    many = client.chat.completions.create(**pushed)
    assert many.choices[0].finish_reason == "length"
    one = client.chat.completions.create(**pushed, parallel_tool_calls=False)
    assert one.choices[0].finish_reason == "tool_calls"
    assert _valid_calls(one.choices[0].message.tool_calls) == ["get_weather"]


def test_forced_calls_of_tools_named_as_mcp_names_them(client):
    """OpenAI's tool names may hold hyphens (``^[a-zA-Z0-9_-]{1,64}$``, as MCP's tools do) and
    argument names may too; Python's call syntax cannot parse either, yet a forced call of such a
    tool comes back under its names, its arguments valid, streamed or not."""
    read_file = {"type": "function", "function": {"name": "read-file", "parameters": {
        "type": "object", "properties": {"file-path": {"type": "string", "maxLength": 12},
                                         "max-lines": {"type": "integer", "minimum": 1, "maximum": 50}},
        "required": ["file-path", "max-lines"], "additionalProperties": False}}}
    choice = {"type": "function", "function": {"name": "read-file"}}
    for stream in (False, True):
        response = client.chat.completions.create(model=NAME, messages=STORY, tools=[read_file], tool_choice=choice,
                                                  max_tokens=96, temperature=1.0, seed=3, stream=stream)
        if stream:
            calls = [d for c in response for d in (c.choices[0].delta.tool_calls or [])]
        else:
            assert response.choices[0].finish_reason == "tool_calls"
            calls = response.choices[0].message.tool_calls
        assert [call.function.name for call in calls] == ["read-file"]
        jsonschema.validate(json.loads(calls[0].function.arguments), read_file["function"]["parameters"])


def test_response_format_json_schema_answers_validate(client):
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    messages = [{"role": "user", "content": "Describe a person."}]
    for seed in range(4):
        response = client.chat.completions.create(model=NAME, messages=messages, response_format=response_format,
                                                  max_tokens=120, temperature=0.8, seed=seed)
        choice = response.choices[0]
        assert choice.finish_reason == "stop", choice
        jsonschema.validate(json.loads(choice.message.content), PERSON)
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, response_format=response_format,
                                                 max_tokens=120, temperature=0, stream=True))
    jsonschema.validate(json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices)), PERSON)
    # json_object: any object; the demo model's greedy object runs past max_tokens, so check the start.
    whole = client.chat.completions.create(model=NAME, messages=messages, response_format={"type": "json_object"},
                                           max_tokens=40, temperature=0)
    assert whole.choices[0].message.content.startswith("{") and whole.choices[0].finish_reason == "length"


def test_chat_logprobs_whole_and_streamed(client, model):
    request = dict(model=NAME, messages=HELLO, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3,
                   logit_bias=no_eos(model))
    whole = client.chat.completions.create(**request)
    entries = whole.choices[0].logprobs.content
    assert len(entries) == whole.usage.completion_tokens == 12
    assert "".join(entry.token for entry in entries) == whole.choices[0].message.content
    for entry in entries:  # greedy: the sampled token is the most likely one
        assert len(entry.top_logprobs) == 3 and entry.top_logprobs[0].token == entry.token
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob) and entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
    chunks = list(client.chat.completions.create(**request, stream=True))
    streamed = [entry for c in chunks if c.choices and c.choices[0].logprobs for entry in c.choices[0].logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in entries]
    # The second request reuses the first one's pooled session, re-running its last tokens in
    # other batch shapes: the same tokens, log-probabilities equal to fp32 rounding.
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in entries], abs=1e-4)
    text = client.completions.create(model=NAME, prompt="The json module", max_tokens=6, temperature=0, logprobs=2)
    legacy = text.choices[0].logprobs
    assert len(legacy.tokens) == len(legacy.token_logprobs) == len(legacy.top_logprobs) == 6
    assert all(len(top) <= 2 for top in legacy.top_logprobs) and legacy.text_offset[0] == 0


# --- errors ---------------------------------------------------------------------------------------


def _error(response: "httpx.Response", status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return body


def test_auth(url):
    no_key = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        no_key.models.list()
    assert _error(httpx.get(url + "/v1/models"), 401)["code"] == "invalid_api_key"
    assert _error(httpx.get(url + "/metrics"), 401)["type"] == "authentication_error"
    assert httpx.get(url + "/health").json()["status"] == "ok"  # open, for probes


def test_browser_pages_may_call_only_from_allowed_origins(url, model):
    page = "https://app.example.com"
    preflight = {"Origin": page, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"}
    body = {"messages": HELLO, "max_tokens": 2}
    auth = {"Authorization": f"Bearer {KEY}", "Origin": page}
    assert "access-control-allow-origin" not in httpx.options(url + "/v1/chat/completions", headers=preflight).headers
    assert "access-control-allow-origin" not in httpx.post(url + "/v1/chat/completions", json=body, headers=auth).headers
    config = ServerConfig(model_name=NAME, api_key=KEY, allowed_origins=(page,))
    with running_server(model, config) as allowed:
        answer = httpx.options(allowed + "/v1/chat/completions", headers=preflight)  # no key: browsers send none
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == page
        assert "x-stainless-os" in answer.headers["access-control-allow-headers"].lower()
        answer = httpx.post(allowed + "/v1/chat/completions", json=body, headers=auth)
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == page
        refused = httpx.options(allowed + "/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        assert _error(httpx.post(allowed + "/v1/chat/completions", json=body, headers={"Origin": page}), 401)


def test_models(client, url):
    assert [m.id for m in client.models.list().data] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


@pytest.mark.parametrize("body, status, param", [
    ({"messages": HELLO, "temperature": 5}, 400, "temperature"),
    ({"messages": "hello"}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ({"messages": HELLO, "max_tokens": "many"}, 400, "max_tokens"),
    ({"messages": HELLO, "max_tokens": True}, 400, "max_tokens"),
    ({"messages": HELLO, "max_tokens": 1.5}, 400, "max_tokens"),
    ({"messages": HELLO, "stream": "yes"}, 400, "stream"),
    ({"messages": HELLO, "logprobs": 1}, 400, "logprobs"),
    ({"messages": HELLO, "temperature": True}, 400, "temperature"),
    ({"messages": HELLO, "max_tokens": 10**6}, 400, "max_tokens"),
    ({"messages": HELLO, "max_completion_tokens": 10**6}, 400, "max_completion_tokens"),
    ({"messages": HELLO, "n": 1000}, 400, "n"),
    ({"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"messages": HELLO, "logit_bias": {"99999999": 5}}, 400, "logit_bias"),
    ({"messages": HELLO, "logit_bias": {"x": 5}}, 400, "logit_bias"),
    ({"messages": HELLO, "top_logprobs": 3}, 400, "top_logprobs"),
    ({"messages": HELLO, "tool_choice": "required"}, 400, "tool_choice"),
    ({"messages": HELLO, "frobnicate": True}, 400, "frobnicate"),
    ({"messages": HELLO, "modalities": ["text", "audio"]}, 400, "modalities"),
    ({"messages": HELLO, "verbosity": "loud"}, 400, "verbosity"),
    ({"messages": HELLO, "metadata": {"a": 1}}, 400, "metadata.a"),
    ({"messages": HELLO, "store": "yes please"}, 400, "store"),
    ({"messages": HELLO, "chat_template_kwargs": {"tools": []}}, 400, "chat_template_kwargs"),
    ({"messages": HELLO, "stream": True, "stream_options": {"include_usage": True, "frob": 1}}, 400,
     "stream_options.frob"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
     "messages.0.content.0.type"),
    ({"messages": [{"role": "user"}]}, 400, "messages.0.content"),
    ({"messages": [{"role": "user", "content": "x" * 30000}]}, 400, "messages"),  # over the 4096 context
    ({"messages": HELLO, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "integer", "minimum": 5, "maximum": 2}}}}, 400, "response_format"),
    ({"messages": HELLO, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "no-such-type"}}}}, 400, "response_format"),
    ({"messages": HELLO, "response_format": {"type": "yaml"}}, 400, "response_format"),
    ({"messages": HELLO, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, 400,
     "tool_choice.function.name"),
    ({"model": "gpt-4", "messages": HELLO}, 404, "model"),
])
def test_bad_chat_requests_are_4xx_naming_the_field(url, body, status, param):
    response = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert _error(response, status)["param"] == param


@pytest.mark.parametrize("field, value", [
    ("audio", {"voice": "alloy", "format": "wav"}), ("prediction", {"type": "content", "content": "x"}),
    ("web_search_options", {}), ("functions", [{"name": "f", "parameters": {}}]), ("function_call", "auto"),
])
def test_openai_fields_this_server_cannot_serve_are_a_400_saying_so(url, field, value):
    response = httpx.post(url + "/v1/chat/completions", json={"messages": HELLO, field: value},
                          headers={"Authorization": f"Bearer {KEY}"})
    error = _error(response, 400)
    assert error["param"] == field and error["code"] == "unsupported_parameter", error


def test_bad_bodies_and_routes(url):
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    assert _error(httpx.post(url + "/v1/chat/completions", content=b"{not json", headers=auth), 400)["code"] == "invalid_json"
    assert _error(httpx.post(url + "/v1/chat/completions", content=b"", headers=auth), 400)
    assert _error(httpx.post(url + "/v1/chat/completions", content=b"[1, 2]", headers=auth), 400)
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (5 * 2**20) + b'"}]}'
    assert _error(httpx.post(url + "/v1/chat/completions", content=huge, headers=auth), 413)["code"] == "body_too_large"
    assert _error(httpx.get(url + "/v1/nothing", headers=auth), 404)["code"] == "unknown_url"
    assert _error(httpx.get(url + "/v1/chat/completions", headers=auth), 405)
    assert _error(httpx.post(url + "/v1/completions", json={"prompt": [[1, 2], [3]]}, headers=auth), 400)["param"] == "prompt"
    assert _error(httpx.post(url + "/v1/completions", json={"prompt": [10**7]}, headers=auth), 400)["param"] == "prompt"
    assert _error(httpx.post(url + "/v1/completions", json={"prompt": [-10**30]}, headers=auth), 400)["param"] == "prompt"
    assert httpx.get(url + "/health").status_code == 200  # still serving


# --- lifecycle ------------------------------------------------------------------------------------


def _wait_for(condition, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_goes_away_frees_its_sequence(url, model):
    auth = {"Authorization": f"Bearer {KEY}"}
    long = {"model": NAME, "messages": HELLO, "temperature": 0, "logit_bias": no_eos(model)}  # runs to the context
    cancelled = metric(url, "lfmrt_cancelled_requests_total")
    with httpx.stream("POST", url + "/v1/chat/completions", json={**long, "stream": True}, headers=auth) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: dropping the iterator closes the connection
        next(lines)  # it is generating
        assert metric(url, "lfmrt_running_sequences") == 1
    assert _wait_for(lambda: metric(url, "lfmrt_running_sequences") == 0)
    assert metric(url, "lfmrt_cancelled_requests_total") == cancelled + 1
    with pytest.raises(httpx.ReadTimeout):  # a non-streamed request given up by its client
        httpx.post(url + "/v1/chat/completions", json=long, headers=auth, timeout=httpx.Timeout(5, read=0.5))
    assert _wait_for(lambda: metric(url, "lfmrt_cancelled_requests_total") == cancelled + 2)
    assert _wait_for(lambda: metric(url, "lfmrt_running_sequences") == 0)
    with httpx.stream("POST", url + "/v1/chat/completions", json={**long, "stream": True, "n": 3},
                      headers=auth) as response:  # every choice's sequence is freed
        lines = response.iter_lines()
        next(lines)
        assert _wait_for(lambda: metric(url, "lfmrt_running_sequences") == 3)
    assert _wait_for(lambda: metric(url, "lfmrt_running_sequences") == 0)
    assert _wait_for(lambda: metric(url, "lfmrt_cancelled_requests_total") == cancelled + 5)


def test_turns_reuse_the_prefix_of_their_conversation(client, url, model):
    """Two conversations alternate; each turn runs only what is new since its own last turn."""
    conversations = [[{"role": "system", "content": f"You are helper number {i}."}] for i in range(2)]
    last_tokens: List[List[int]] = [[], []]
    prefilled_before = metric(url, "lfmrt_prefilled_tokens_total")
    ran_total = 0
    for turn in range(3):
        for i, messages in enumerate(conversations):
            messages.append({"role": "user", "content": f"Turn {turn}: tell me about dict number {turn}."})
            prompt = model.tokenize(model.apply_chat_template(messages), add_special_tokens=False)
            response = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12, temperature=0)
            usage = response.usage
            assert usage.prompt_tokens == len(prompt)
            ran = usage.prompt_tokens - usage.prompt_tokens_details.cached_tokens
            ran_total += ran
            if turn > 0:  # everything the session held after the last turn is reused
                shared = 0
                for a, b in zip(last_tokens[i], prompt):
                    if a != b:
                        break
                    shared += 1
                assert shared > len(prompt) // 2
                assert usage.prompt_tokens_details.cached_tokens >= shared - 1, (turn, i, shared)
                assert ran <= len(prompt) - shared + 1
            answer = response.choices[0].message.content
            messages.append({"role": "assistant", "content": answer})
            last_tokens[i] = prompt + model.tokenize(answer, add_special_tokens=False)
    assert metric(url, "lfmrt_prefilled_tokens_total") - prefilled_before == ran_total


# --- lfmrt serve in a subprocess: the command line and SIGTERM --------------------------------


@contextlib.contextmanager
def serve_process(*args: str) -> Iterator[tuple]:
    """``lfmrt serve --demo --port 0 ARGS``; yields (process, url) once it prints its URL."""
    command = [sys.executable, "-m", "lfmrt.cli.main", "serve", "--demo", "--port", "0", "--threads", "2",
               "--log-level", "warning", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "LFMRT_API_KEY": ""})
    try:
        line = process.stdout.readline()
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/v1", line)
        assert match, f"no URL in: {line!r}"
        curl = process.stdout.readline() + process.stdout.readline()
        assert "curl http" in curl and "/v1/chat/completions" in curl
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _stream_until_done(url: str, started: threading.Event, out: dict, max_tokens: int) -> None:
    local = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    try:
        stream = local.chat.completions.create(model=NAME, messages=HELLO, max_tokens=max_tokens, temperature=0,
                                               logit_bias={"7": -100}, stream=True)
        for chunk in stream:
            started.set()
            out.setdefault("chunk_times", []).append(time.monotonic())
            if chunk.choices and chunk.choices[0].finish_reason:
                out["finish_reason"] = chunk.choices[0].finish_reason
        out["ended"] = True
    except openai.APIError as error:
        out["error"] = error
    finally:
        started.set()


def test_sigterm_finishes_in_flight_requests_then_exits(model):
    with serve_process() as (process, url):
        started, out = threading.Event(), {}
        thread = threading.Thread(target=_stream_until_done, args=(url, started, out, 600))
        thread.start()
        assert started.wait(30)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert out.get("finish_reason") == "length" and out.get("ended"), out  # finished, [DONE] and all
        assert sum(t > signalled for t in out["chunk_times"]) > 100  # most of it came after SIGTERM
        assert process.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")


def test_sigterm_cancels_what_outlasts_the_shutdown_timeout():
    with serve_process("--shutdown-timeout", "0.3") as (process, url):
        started, out = threading.Event(), {}
        thread = threading.Thread(target=_stream_until_done, args=(url, started, out, 4000))
        thread.start()
        assert started.wait(30)
        process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert "cancelled" in str(out.get("error", "")).lower() or "shutting down" in str(out.get("error", "")), out
        assert process.wait(30) == 0
