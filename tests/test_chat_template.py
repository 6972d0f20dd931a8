"""Tests for lfmrt.text.chat_template: the model's Jinja template rendered exactly as transformers does."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Dict, List

import numpy as np
import pytest

from lfmrt.text.chat_template import ChatTemplate, TemplateError, lfm2_default_template

BOS = "<|startoftext|>"
EOS = "<|im_end|>"

LFM2_TEMPLATE = lfm2_default_template()

# An LFM2.5-style template (the LFM2.5-2.6B template with the forced "<think>" dropped from the
# generation prompt, as published in a public repository): Pythonic tool calls, "List of tools:
# [...]" without wrapper tokens, {% generation %} blocks, raise_exception, thinking handling.
LFM25_TEMPLATE = r"""{{- bos_token -}}
{%- set preserve_thinking = preserve_thinking | default(false) -%}

{%- macro format_arg_value(arg_value) -%}
    {%- if arg_value is string -%}
        {{- "'" + (arg_value | replace("\\", "\\\\") | replace("'", "\\'") | replace("\n", "\\n") | replace("\r", "\\r")) + "'" -}}
    {%- elif arg_value is mapping or arg_value is iterable -%}
        {{- arg_value | tojson -}}
    {%- else -%}
        {{- arg_value | string -}}
    {%- endif -%}
{%- endmacro -%}

{%- macro parse_content(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is mapping -%}
        {{- content | tojson -}}
    {%- elif content is iterable -%}
        {%- set _ns = namespace(result="") -%}
        {%- for item in content -%}
            {%- if item is string -%}
                {%- set _ns.result = _ns.result + item -%}
            {%- elif item is mapping and item.get("type") == "image" -%}
                {%- set _ns.result = _ns.result + "<image>" -%}
            {%- elif item is mapping and item.get("type") == "text" -%}
                {%- set _ns.result = _ns.result + ((item.get("text") or "") | string) -%}
            {%- else -%}
                {%- set _ns.result = _ns.result + (item | tojson) -%}
            {%- endif -%}
        {%- endfor -%}
        {{- _ns.result -}}
    {%- endif -%}
{%- endmacro -%}

{%- macro render_tool_calls(tool_calls) -%}
    {%- set tool_calls_ns = namespace(tool_calls=[]) -%}
    {%- for tool_call in tool_calls -%}
        {%- set func = tool_call["function"] if "function" in tool_call else tool_call -%}
        {%- set func_name = func["name"] -%}
        {%- set func_args = func.get("arguments") -%}
        {%- set args_ns = namespace(arg_strings=[]) -%}
        {%- if func_args is mapping -%}
            {%- for arg_name, arg_value in func_args.items() -%}
                {%- set args_ns.arg_strings = args_ns.arg_strings + [arg_name + "=" + format_arg_value(arg_value)] -%}
            {%- endfor -%}
        {%- elif func_args is string and (func_args | trim) not in ["", "{}", "null"] -%}
            {{- raise_exception("Tool call arguments must be a mapping, got a JSON-encoded string: parse arguments with json.loads() before applying the chat template") -}}
        {%- endif -%}
        {%- set tool_calls_ns.tool_calls = tool_calls_ns.tool_calls + [func_name + "(" + (args_ns.arg_strings | join(", ")) + ")"] -%}
    {%- endfor -%}
    {{- "<|tool_call_start|>[" + (tool_calls_ns.tool_calls | join(", ")) + "]<|tool_call_end|>" -}}
{%- endmacro -%}

{%- set ns = namespace(system_prompt="", last_user_index=-1) -%}
{%- if messages and messages[0]["role"] == "system" -%}
    {%- if messages[0].get("content") -%}
        {%- set ns.system_prompt = parse_content(messages[0]["content"]) -%}
    {%- endif -%}
    {%- set messages = messages[1:] -%}
{%- endif -%}
{%- if tools -%}
    {%- set ns.system_prompt = ns.system_prompt + ("\n" if ns.system_prompt else "") + "List of tools: [" -%}
    {%- for tool in tools -%}
        {%- if tool is not string -%}
            {%- set tool = tool | tojson -%}
        {%- endif -%}
        {%- set ns.system_prompt = ns.system_prompt + tool -%}
        {%- if not loop.last -%}
            {%- set ns.system_prompt = ns.system_prompt + ", " -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set ns.system_prompt = ns.system_prompt + "]" -%}
{%- endif -%}
{%- if ns.system_prompt -%}
    {{- "<|im_start|>system\n" + ns.system_prompt + "<|im_end|>\n" -}}
{%- endif -%}
{%- for message in messages -%}
    {%- if message["role"] == "user" -%}
        {%- set ns.last_user_index = loop.index0 -%}
    {%- endif -%}
{%- endfor -%}
{%- for message in messages -%}
    {{- "<|im_start|>" + message.role + "\n" -}}
    {%- if message.role == "assistant" -%}
        {%- generation -%}
        {%- set keep_thinking = preserve_thinking or loop.index0 > ns.last_user_index -%}
        {%- set thinking = message.thinking or message.reasoning or message.reasoning_content -%}
        {%- set thinking = thinking if thinking is string else "" -%}
        {%- if thinking and keep_thinking -%}
            {{- "<think>" + thinking + "</think>" -}}
        {%- endif -%}
        {%- set _cfm_tag = "CONTINUE_FINAL_MESSAGE_TAG " -%}
        {%- set _has_cfm = false -%}
        {%- set content = "" -%}
        {%- if message.get("content") -%}
            {%- set content = parse_content(message.content) -%}
        {%- endif -%}
        {%- if not keep_thinking and "</think>" in content -%}
            {%- set content = content.split("</think>")[-1] | trim -%}
        {%- endif -%}
        {%- if content.endswith(_cfm_tag) -%}
            {%- set _has_cfm = true -%}
            {%- set _trunc_len = (content | length) - (_cfm_tag | length) -%}
            {%- set content = content[:_trunc_len] -%}
        {%- endif -%}
        {{- content -}}
        {%- if message.tool_calls -%}
            {{- render_tool_calls(message.tool_calls) -}}
        {%- endif -%}
        {%- if _has_cfm -%}
            {{- _cfm_tag -}}
        {%- endif -%}
        {{- "<|im_end|>\n" -}}
        {%- endgeneration -%}
    {%- else %}
        {%- if message.get("content") -%}
            {{- parse_content(message["content"]) -}}
        {%- endif -%}
        {{- "<|im_end|>\n" -}}
    {%- endif %}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- "<|im_start|>assistant\n" -}}
{%- endif -%}
"""

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Météo actuelle d'une ville — 天気",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}

CONVERSATIONS: Dict[str, List[Dict[str, Any]]] = {
    "single_user": [{"role": "user", "content": "What is C. elegans?"}],
    "system_and_history": [
        {"role": "system", "content": "You are a helpful assistant trained by Liquid AI."},
        {"role": "user", "content": "Bonjour, ça va ? 你好 👋"},
        {"role": "assistant", "content": "Très bien, merci !"},
        {"role": "user", "content": "Tell me a joke."},
    ],
    "tool_round_trip": [
        {"role": "user", "content": "Weather in Paris for 3 days?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "units": {"t": "°C"}, "flag": True}}}
            ],
        },
        {"role": "tool", "content": '{"temp": 21, "sky": "ensoleillé"}'},
    ],
    "thinking_history": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>simple sum</think>4", "reasoning_content": None},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6", "reasoning_content": "add three"},
    ],
    "structured_content": [
        {"role": "system", "content": [{"type": "text", "text": "Sys "}, {"type": "text", "text": "prompt"}]},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image"}]},
    ],
}


def render(source: str, messages: List[Dict[str, Any]], **kwargs: Any) -> str:
    return ChatTemplate(source, BOS, EOS).render(messages, **kwargs)


def test_lfm2_template_exact_text() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "<|tool_call_start|>[get_weather(city=\"Paris\")]<|tool_call_end|>"},
        {"role": "tool", "content": '{"temp": 21}'},
    ]
    tool = {"name": "get_weather", "parameters": {"city": "é"}}
    assert render(LFM2_TEMPLATE, messages, tools=[tool]) == (
        "<|startoftext|><|im_start|>system\n"
        "Be brief.\nList of tools: <|tool_list_start|>"
        '[{"name": "get_weather", "parameters": {"city": "é"}}]<|tool_list_end|><|im_end|>\n'
        "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
        '<|im_start|>assistant\n<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|><|im_end|>\n'
        '<|im_start|>tool\n<|tool_response_start|>{"temp": 21}<|tool_response_end|><|im_end|>\n'
        "<|im_start|>assistant\n"
    )
    assert render(LFM2_TEMPLATE, messages[1:2], add_generation_prompt=False) == (
        "<|startoftext|><|im_start|>user\nWeather in Paris?<|im_end|>\n"
    )


def test_lfm25_template_tool_calls_and_thinking() -> None:
    text = render(LFM25_TEMPLATE, CONVERSATIONS["tool_round_trip"], tools=[WEATHER_TOOL])
    assert "List of tools: [{" in text and "Météo actuelle d'une ville — 天気" in text
    assert (
        "<|tool_call_start|>[get_weather(city='Paris', days=3, units={\"t\": \"°C\"}, flag=True)]"
        "<|tool_call_end|><|im_end|>\n"
    ) in text
    assert text.endswith('<|im_start|>tool\n{"temp": 21, "sky": "ensoleillé"}<|im_end|>\n<|im_start|>assistant\n')

    history = render(LFM25_TEMPLATE, CONVERSATIONS["thinking_history"], add_generation_prompt=False)
    assert "<|im_start|>assistant\n4<|im_end|>" in history  # earlier turn's thinking dropped
    assert history.endswith("<|im_start|>assistant\n<think>add three</think>6<|im_end|>\n")
    kept = render(LFM25_TEMPLATE, CONVERSATIONS["thinking_history"], preserve_thinking=True)
    assert "<think>simple sum</think>4" in kept


def test_raise_exception_from_template() -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]},
    ]
    with pytest.raises(TemplateError, match="must be a mapping") as info:
        render(LFM25_TEMPLATE, messages)
    assert isinstance(info.value, ValueError)


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS)


@pytest.mark.parametrize("source", [LFM2_TEMPLATE, LFM25_TEMPLATE], ids=["lfm2", "lfm2.5"])
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize(
    "options",
    [
        {"add_generation_prompt": True},
        {"add_generation_prompt": False},
        {"add_generation_prompt": True, "tools": [WEATHER_TOOL, {"name": "noop", "parameters": {}}]},
        {"add_generation_prompt": True, "preserve_thinking": True},
    ],
    ids=["gen", "nogen", "tools", "extra"],
)
def test_matches_transformers(hf_tokenizer: Any, source: str, conversation: str, options: Dict[str, Any]) -> None:
    messages = CONVERSATIONS[conversation]
    try:
        expected = hf_tokenizer.apply_chat_template(messages, chat_template=source, tokenize=False, **options)
    except Exception:  # the template cannot render this conversation: neither may we
        with pytest.raises(TemplateError):
            render(source, messages, **options)
        return
    assert render(source, messages, **options) == expected


FEATURES_TEMPLATE = """
{%- for m in messages -%}
{%- if m.role == "skip" %}{% continue %}{% endif -%}
{%- if m.role == "stop" %}{% break %}{% endif -%}
{% generation %}[{{ m.role }}:{{ m.content | tojson }}]{% endgeneration %}
{%- endfor -%}
{{ tools | tojson(indent=2, sort_keys=true) if tools else "" }}
{%- if "content" in messages[-1] %}|has-content{% endif %}
{{ bos_token }}{{ eos_token }}{{ extra_var | default("none") }}
"""


def test_environment_features_match_transformers(hf_tokenizer: Any) -> None:
    messages = [
        {"role": "a", "content": "ünïcödé → 😀"},
        {"role": "skip", "content": "x"},
        {"role": "b", "content": {"k": [1, 2.5, None, True]}},
        {"role": "stop", "content": "y"},
        {"role": "c", "content": "never"},
        {"role": "last", "content": None},
    ]
    tools = [{"b": 1, "a": "é"}]
    for options in ({}, {"tools": tools, "extra_var": "E"}):
        expected = hf_tokenizer.apply_chat_template(
            messages, chat_template=FEATURES_TEMPLATE, tokenize=False, **options
        )
        assert render(FEATURES_TEMPLATE, messages, add_generation_prompt=False, **options) == expected


def test_environment_features() -> None:
    messages = [
        {"role": "a", "content": "ünïcödé <b>"},
        {"role": "skip", "content": "x"},
        {"role": "stop", "content": "y"},
        {"role": "last", "content": None},
    ]
    text = render(FEATURES_TEMPLATE, messages, tools=[{"b": 1, "a": "é"}])
    assert text.startswith('[a:"ünïcödé <b>"]')  # generation block body, non-ASCII and no HTML escaping
    assert "skip" not in text and "stop" not in text and "has-content" not in text
    assert '{\n    "a": "é",\n    "b": 1\n  }' in text
    assert text.endswith(f"{BOS}{EOS}none")


def test_strftime_now() -> None:
    before = datetime.datetime.now().strftime("%Y-%m-%d")
    text = render("{{ strftime_now('%Y-%m-%d') }}", [{"role": "user", "content": ""}])
    assert text in {before, datetime.datetime.now().strftime("%Y-%m-%d")}


@dataclasses.dataclass
class Message:
    role: str
    content: str


def test_plain_data_conversion() -> None:
    source = "{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ flag }}{{ n + 1 }}"
    text = render(source, [Message("user", "hi"), {"role": "x", "content": object()}], flag=np.bool_(False), n=np.int64(1))
    assert text == "user=hi;x=<object>;False2"


def test_reasoning_fields_are_aliased() -> None:
    source = "{% for m in messages %}{{ m.thinking }}|{{ m.reasoning_content }}{% endfor %}"
    assert render(source, [{"role": "assistant", "reasoning": "why"}]) == "why|why"


@pytest.mark.parametrize(
    "source",
    [
        "{% set ns = namespace(_private=1) %}",
        "{% set ns = namespace(a=1) %}{% set ns._b = 2 %}",
        "{{ messages.append(1) }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ undefined_thing.attr }}",
    ],
)
def test_sandbox_and_render_errors_raise_template_error(source: str) -> None:
    with pytest.raises(TemplateError):
        render(source, [{"role": "user", "content": "x"}])


def test_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateError, match="line 2"):
        ChatTemplate("ok\n{% if %}", BOS, EOS)


def test_bad_inputs() -> None:
    template = ChatTemplate(LFM2_TEMPLATE, BOS, EOS)
    with pytest.raises(ValueError, match="empty"):
        template.render([])
    with pytest.raises(TypeError):
        template.render(["not a dict"])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        template.render([{"role": "user", "content": "x"}], tools=["not a dict"])  # type: ignore[list-item]
