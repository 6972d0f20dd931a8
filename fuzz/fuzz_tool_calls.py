#!/usr/bin/env python3
"""Fuzzes the tool-call parser on arbitrary model answers.

Each input, decoded as UTF-8 (undecodable bytes replaced, as the detokenizer does), is an
assistant answer given to ``parse_tool_calls``, which is documented never to raise. What it
returns must be well-formed: either calls (OpenAI-style dicts whose ``arguments`` is a JSON object
as text) and no error, or no calls, an error and the whole answer as content; and calls written
back with ``format_tool_calls`` must parse to the same calls where LFM2's Pythonic form can
spell them (a dotted identifier for the name, identifiers for the argument names: the JSON form
also admits names like ``get-weather`` or ``c;ty``, which that form cannot write).

Contract: no exception at all; no crash, no hang.
Seeds: fuzz/corpus/tool_calls (the golden conversation's answer, calls in every accepted form).
"""
import json
import keyword

import atheris

import harness

with atheris.instrument_imports(include=["lfmrt"]):
    from lfmrt.tools import format_tool_calls, parse_tool_calls


def calls_of(parsed) -> list:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls]


def pythonic(name: str, arguments: dict) -> bool:
    """Whether ``name(argument=...)`` is a call Python's grammar reads."""
    names = name.split(".") + list(arguments)
    return all(n.isidentifier() and not keyword.iskeyword(n) for n in names)


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    parsed = parse_tool_calls(text)
    if not isinstance(parsed.content, str):
        raise AssertionError(f"content is {type(parsed.content).__name__}")
    if parsed.tool_calls is None:
        if parsed.error is not None and parsed.content != text:
            raise AssertionError("an unparsable answer must come back whole as content")
        return
    if parsed.error is not None:
        raise AssertionError("calls and an error together")
    calls = calls_of(parsed)
    for name, arguments in calls:
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise AssertionError(f"malformed call {name!r}({arguments!r})")
    if not all(pythonic(name, arguments) for name, arguments in calls):
        return
    again = parse_tool_calls(format_tool_calls(parsed.tool_calls))
    if again.tool_calls is None or calls_of(again) != calls:
        raise AssertionError(f"calls do not survive format_tool_calls: {calls!r} -> {again!r}")


if __name__ == "__main__":
    harness.fuzz(test_one_input, ())
