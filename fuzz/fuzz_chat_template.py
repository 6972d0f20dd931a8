#!/usr/bin/env python3
"""Fuzzes the chat-template renderer: templates and the conversations rendered with them.

An input that is a JSON object ``{"template", "messages", "tools", "add_generation_prompt"}`` is
rendered as it says (any of its values may be anything JSON holds); any other input is taken as
a template's source (UTF-8, undecodable bytes replaced) and renders a fixed conversation with a
tool. The renderer is ``ChatTemplate`` as ``Model.chat`` uses it: jinja2's sandbox configured
like transformers'.

Contract: ``ChatTemplate`` raises only ``TemplateError`` (a ``ValueError``: the template does not
compile, fails or calls raise_exception), ``ValueError`` (an empty conversation) or ``TypeError``
(a message or tool that is not a dict), and returns a ``str``; no crash, no hang.
Seeds: fuzz/corpus/chat_template (the fixtures' templates with the golden conversations).
"""
import functools
import json

import atheris

import harness

# jinja2 too: its lexer and parser are where a template's text goes.
with atheris.instrument_imports(include=["lfmrt", "jinja2"]):
    from lfmrt.text.chat_template import ChatTemplate

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "<|tool_call_start|>[get_weather(city='Paris')]<|tool_call_end|>"},
    {"role": "tool", "content": '{"temp": 21}'},
]
TOOLS = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@functools.lru_cache(maxsize=256)
def compiled(source: str) -> ChatTemplate:
    """Compiling costs tens of milliseconds, rendering a fraction of one: inputs that mutate the
    conversation only reuse the template they share (a failed compile is not cached; it raises)."""
    return ChatTemplate(source, "<|startoftext|>", "<|im_end|>")


def test_one_input(data: bytes) -> None:
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("template"), str):
        source, messages = document["template"], document.get("messages")
        tools, add_generation_prompt = document.get("tools"), bool(document.get("add_generation_prompt", True))
    else:
        source, messages, tools, add_generation_prompt = data.decode("utf-8", "replace"), CONVERSATION, TOOLS, True
    template = compiled(source)
    if not isinstance(messages, list):
        messages = [messages]
    text = template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt)
    if not isinstance(text, str):
        raise AssertionError(f"render returned {type(text).__name__}")


if __name__ == "__main__":
    harness.fuzz(test_one_input, (ValueError, TypeError))
