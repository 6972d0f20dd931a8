#!/usr/bin/env python3
"""Fuzzes the tool-call parser on arbitrary model answers.

Each input, decoded as UTF-8 (undecodable bytes replaced, as the detokenizer does), is an
assistant answer given to ``parse_tool_calls``, which is documented never to raise. What it
returns must be well-formed: calls are OpenAI-style dicts whose ``arguments`` is a JSON object as
text that a strict JSON parser reads (no NaN or Infinity); when no call could be parsed from the
answer's blocks, the content is the whole answer and the error says why; and calls written back
with ``format_tool_calls`` must parse to the same calls where LFM2's Pythonic form can spell them
(CALL_NAME and ARGUMENT_NAME: the JSON form also admits names like ``get weather`` or ``c,ty``,
which that form cannot write).

Contract: no exception at all; no crash, no hang.
Seeds: fuzz/corpus/tool_calls (the golden conversation's answer, calls in every accepted form).
"""
import json

import atheris

import harness

with atheris.instrument_imports(include=["lfmrt"]):
    from lfmrt.text.tool_calls import ARGUMENT_NAME, CALL_NAME, TOOL_CALL_START, format_tool_calls, parse_tool_calls


def strict_json(text: str):
    """``json.loads`` refusing the NaN / Infinity literals Python's parser accepts; integers are
    read as their digits, since JSON allows more than Python's int-string limit."""

    def refuse(constant: str):
        raise AssertionError(f"arguments {text!r} hold {constant}, which is not JSON")

    return json.loads(text, parse_constant=refuse, parse_int=lambda digits: ("integer", digits))


def calls_of(parsed) -> list:
    return [(c["function"]["name"], strict_json(c["function"]["arguments"])) for c in parsed.tool_calls]


def pythonic(name: str, arguments: dict) -> bool:
    """Whether ``name(argument=...)`` can be written in LFM2's Pythonic call syntax."""
    return bool(CALL_NAME.fullmatch(name)) and all(ARGUMENT_NAME.fullmatch(argument) for argument in arguments)


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    parsed = parse_tool_calls(text)
    if not isinstance(parsed.content, str):
        raise AssertionError(f"content is {type(parsed.content).__name__}")
    if parsed.tool_calls is None:
        if parsed.error is not None and parsed.content != text:
            raise AssertionError("an answer none of whose calls parse must come back whole as content")
        if parsed.error is not None and TOOL_CALL_START not in text:
            raise AssertionError(f"an error without a tool-call block: {parsed.error}")
        return
    calls = calls_of(parsed)
    for name, arguments in calls:
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise AssertionError(f"malformed call {name!r}({arguments!r})")
    if not all(pythonic(name, arguments) for name, arguments in calls):
        return
    again = parse_tool_calls(format_tool_calls(parsed.tool_calls))
    if again.tool_calls is None or again.error is not None or calls_of(again) != calls:
        raise AssertionError(f"calls do not survive format_tool_calls: {calls!r} -> {again!r}")


if __name__ == "__main__":
    harness.fuzz(test_one_input, ())
