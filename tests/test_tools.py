"""Tool calling: definitions rendered with LFM2's template, the model's Pythonic calls parsed
safely (ast, never eval), malformed output returned as text with a parse error."""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Dict, List, Literal, Mapping, Optional, Sequence, Tuple

import pytest

import lfmrt
from lfmrt.text.chat_template import ChatTemplate, lfm2_default_template
from lfmrt.generation.completion import Completion, Timings
from lfmrt.text.tool_calls import (
    format_tool_calls,
    function_schema,
    messages_for_template,
    parse_call_list,
    parse_tool_calls,
    tool_schemas,
    with_tool_calls,
)

START, END = "<|tool_call_start|>", "<|tool_call_end|>"


def arguments(parsed, index=0):
    return json.loads(parsed.tool_calls[index]["function"]["arguments"])


# --- parsing -------------------------------------------------------------------------------


def test_one_call_is_openai_style():
    parsed = parse_tool_calls(f'{START}[get_weather(city="Paris", days=3)]{END}')
    assert parsed.error is None
    assert parsed.content == ""
    assert parsed.tool_calls == [
        {"id": "call_0", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'}}
    ]


def test_several_calls_and_text_around_them_is_content():
    text = f"Let me check.\n{START}[get_weather(city='Paris'), get_time(zone='CET')]{END}\nOne moment."
    parsed = parse_tool_calls(text)
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["get_weather", "get_time"]
    assert [c["id"] for c in parsed.tool_calls] == ["call_0", "call_1"]
    assert arguments(parsed, 1) == {"zone": "CET"}
    assert parsed.content == "Let me check. One moment."


def test_calls_from_several_blocks_are_collected_in_order():
    parsed = parse_tool_calls(f"{START}[a(x=1)]{END} and {START}[b(y=2)]{END}")
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls] == [
        ("a", {"x": 1}), ("b", {"y": 2})]
    assert parsed.content == "and"


def test_nested_arguments_as_python_or_json_literals():
    body = ('[create(event={"title": "Sync", "attendees": ["ann", "bo"], "room": None, '
            '"remote": true, "recurring": False, "slots": [{"h": 9}, {"h": -14.5}]}, '
            "tags=('a', 'b'), meta={'k': null, 1: [true, false]})]")
    parsed = parse_tool_calls(START + body + END)
    assert parsed.error is None
    assert arguments(parsed) == {
        "event": {"title": "Sync", "attendees": ["ann", "bo"], "room": None, "remote": True,
                  "recurring": False, "slots": [{"h": 9}, {"h": -14.5}]},
        "tags": ["a", "b"],
        "meta": {"k": None, "1": [True, False]},
    }


def test_strings_with_quotes_escapes_and_unicode():
    body = r'''[say(a="She said \"hi\"", b='it\'s', c="naïve café 🙂 日本語", d='back\\slash', e="line\nbreak", f='"', g="")]'''
    parsed = parse_tool_calls(START + body + END)
    assert parsed.error is None
    assert arguments(parsed) == {"a": 'She said "hi"', "b": "it's", "c": "naïve café 🙂 日本語",
                                 "d": "back\\slash", "e": "line\nbreak", "f": '"', "g": ""}
    assert "🙂" in parsed.tool_calls[0]["function"]["arguments"]  # kept, not \u-escaped


def test_bare_call_without_brackets_dotted_names_and_no_arguments():
    assert parse_call_list("ping()") == ([("ping", {})], [])
    assert parse_call_list("[tools.search(q='x')]") == ([("tools.search", {"q": "x"})], [])


def test_json_form_calls_are_accepted():
    parsed = parse_tool_calls(f'{START}[{{"name": "get_weather", "arguments": {{"city": "Oslo"}}}}]{END}')
    assert parsed.tool_calls[0]["function"]["name"] == "get_weather"
    assert arguments(parsed) == {"city": "Oslo"}


def test_text_without_calls():
    parsed = parse_tool_calls("Just an answer, mentioning get_weather(city='x') in passing.")
    assert parsed == type(parsed)(content="Just an answer, mentioning get_weather(city='x') in passing.",
                                  tool_calls=None, error=None)


@pytest.mark.parametrize(
    "body, message",
    [
        ("[get_weather('Paris')]", "positional"),
        ("[get_weather(city=Paris)]", "not a literal"),
        ("[__import__('os').system('echo pwned')]", "not a function name"),
        ("[f(x=__import__('os'))]", "not a literal"),
        ("[f(x=1 + 2)]", "not a literal"),
        ("[f(x=f'{y}')]", "not a literal"),
        ("[f(**{'a': 1})]", "'**'"),
        ("[f(x={**d})]", "'**'"),
        ("[f(x=[i for i in range(3)])]", "not a literal"),
        ("[f(x=lambda: 0)]", "not a literal"),
        ("[1, 2]", "not a function call"),
        ("[get_weather(city='Paris'", "not a Python call list"),
        ("", "empty"),
        ("[]", "no call"),
        ("[f(x={'a'})]", "not a literal"),
    ],
)
def test_malformed_calls_become_text_with_an_error(body, message):
    text = f"Sure: {START}{body}{END}"
    parsed = parse_tool_calls(text)
    assert parsed.tool_calls is None
    assert parsed.content == text
    assert message in parsed.error


def test_an_unclosed_block_that_does_not_parse_is_an_error():
    text = f"{START}[get_weather(city='Paris'"
    parsed = parse_tool_calls(text)
    assert (parsed.tool_calls, parsed.content) == (None, text)
    assert END in parsed.error


def test_an_unclosed_block_at_the_end_still_gives_its_calls():
    """As vLLM's LFM2 parser: the text after an unmatched start marker is the call block."""
    parsed = parse_tool_calls(f"Checking. {START}[get_weather(city='Paris')]")
    assert parsed.content == "Checking." and parsed.error is None
    assert arguments(parsed) == {"city": "Paris"}


def test_a_bad_block_keeps_the_calls_of_the_good_one():
    parsed = parse_tool_calls(f"{START}[a(x=1)]{END}{START}[b(2)]{END}")
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["a"]
    assert "block 2" in parsed.error and "positional" in parsed.error


# --- leniency: what LFM2 really writes, as vLLM's and SGLang's LFM2 parsers accept it ------


def test_raw_newlines_and_tabs_inside_string_arguments():
    command = "cd /tmp &&\n\tls -la | wc -l"
    parsed = parse_tool_calls(f"{START}[run_shell(command=\"{command}\")]{END}")  # raw newline and tab
    assert parsed.error is None
    assert arguments(parsed) == {"command": "cd /tmp &&\n\tls -la | wc -l"}


def test_one_malformed_call_does_not_discard_its_siblings():
    parsed = parse_tool_calls(f"{START}[a(x=1), b('positional'), c(y=Paris), d(z=[1, 2])]{END}")
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["a", "d"]
    assert parsed.tool_calls[1]["id"] == "call_1"
    assert "call 2: b: positional" in parsed.error and "call 3: c: argument 'y'" in parsed.error


def test_siblings_survive_a_call_that_breaks_the_list_syntax():
    parsed = parse_tool_calls(f"{START}[a(x=1), b(y=\"no closing quote), c(z=3)]{END}")
    assert [c["function"]["name"] for c in parsed.tool_calls] == ["a", "c"]
    assert "call 2" in parsed.error


def test_numbers_too_large_for_a_float_are_kept_as_written_and_non_json_numbers_rejected():
    """1e999 is a JSON number (JSON has no bound) that a float would make Infinity: the call is
    kept and its arguments JSON writes the number as the model did; Infinity and NaN are no JSON
    numbers and reject their call with a reason."""
    parsed = parse_tool_calls(f"{START}[a(x=1e999), b(y=2.5), c(z=-1E+400, w=[1, - 2e999], k={{7e777: 1}})]{END}")
    assert parsed.error is None
    assert [c["function"]["arguments"] for c in parsed.tool_calls] == [
        '{"x": 1e999}', '{"y": 2.5}', '{"z": -1E+400, "w": [1, -2e999], "k": {"7e777": 1}}'
    ]
    for call in parsed.tool_calls:
        json.loads(call["function"]["arguments"], parse_constant=lambda name: pytest.fail(name))
    assert format_tool_calls(parsed.tool_calls) == f'{START}[a(x=1e999), b(y=2.5), c(z=-1E+400, w=[1, -2e999], k={{"7e777": 1}})]{END}'
    as_json = parse_tool_calls(f'{START}[{{"name": "f", "arguments": {{"a": 1e999, "s": "lfmrt-number-0"}}}}, '
                               f'{{"name": "g", "arguments": {{"b": NaN}}}}, {{"name": "i", "arguments": {{"c": -Infinity}}}},'
                               f' {{"name": "h", "arguments": {{}}}}]{END}')
    assert [c["function"]["name"] for c in as_json.tool_calls] == ["f", "h"]
    assert as_json.tool_calls[0]["function"]["arguments"] == '{"a": 1e999, "s": "lfmrt-number-0"}'
    assert "call 2: g: NaN is not a JSON number" in as_json.error
    assert "call 3: i: -Infinity is not a JSON number" in as_json.error


def test_integers_longer_than_pythons_int_string_limit_are_kept_as_written():
    """JSON allows an integer of any length, but ast and json refuse one of more than 4300 digits
    (Python's int-string limit): such a call is kept, the integer written as the model did, in
    the Python form (also with a leading zero, negated, as a dict key, next to a string holding
    digits) and in the JSON form."""
    huge = "9" * 4301
    parsed = parse_tool_calls(f"{START}[a(x={huge}, y=[-0{huge}, 2], s='{huge}', k={{{huge}: 1}}), b(z=1)]{END}")
    assert parsed.error is None
    assert [c["function"]["arguments"] for c in parsed.tool_calls] == [
        f'{{"x": {huge}, "y": [-{huge}, 2], "s": "{huge}", "k": {{"{huge}": 1}}}}', '{"z": 1}'
    ]
    assert format_tool_calls(parsed.tool_calls) == f'{START}[a(x={huge}, y=[-{huge}, 2], s="{huge}", k={{"{huge}": 1}}), b(z=1)]{END}'
    as_json = parse_tool_calls(f'{START}[{{"name": "f", "arguments": {{"a": -{huge}, "b": [{huge}]}}}}]{END}')
    assert as_json.error is None
    assert as_json.tool_calls[0]["function"]["arguments"] == f'{{"a": -{huge}, "b": [{huge}]}}'


def test_leading_zeros_and_keyword_argument_names():
    parsed = parse_tool_calls(f"{START}[calendar(month=07, day=0, from='a', in_=1.05)]{END}")
    assert parsed.error is None
    assert arguments(parsed) == {"month": 7, "day": 0, "from": "a", "in_": 1.05}


def test_names_python_cannot_parse_as_written_are_read_and_survive_format_tool_calls():
    """Tool lists allow names Python's call syntax does not: keywords (``import``, a ``del``
    method), hyphens (OpenAI's ``^[a-zA-Z0-9_-]+$``, MCP's ``read-file``), a leading digit, and
    for arguments anything without spaces, quotes, brackets, commas, colons or ``=``. Each call
    parses under its names as written, and format_tool_calls writes it back in a form that
    parses again; a name inside a string stays as it is."""
    text = (f"{START}[import(path='a.csv'), db.del (key=1), read-file(user-id=7, from=1, a.b=2, $ref=3, é=4), "
            f"007-agent(x='read-file(y=1)'), klass.import.if(c=True), x.y-z(), get_weather(city='Paris'), "
            f"__lfmrt_name_6162(__lfmrt_name_ff=1)]{END}")
    parsed = parse_tool_calls(text)
    assert parsed.error is None
    named = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls]
    assert named == [
        ("import", {"path": "a.csv"}), ("db.del", {"key": 1}),
        ("read-file", {"user-id": 7, "from": 1, "a.b": 2, "$ref": 3, "é": 4}),
        ("007-agent", {"x": "read-file(y=1)"}), ("klass.import.if", {"c": True}), ("x.y-z", {}),
        ("get_weather", {"city": "Paris"}), ("__lfmrt_name_6162", {"__lfmrt_name_ff": 1}),  # the parser's stand-in form
    ]
    again = parse_tool_calls(format_tool_calls(parsed.tool_calls))
    assert again.error is None and [c["function"] for c in again.tool_calls] == [c["function"] for c in parsed.tool_calls]
    # An error names what the model wrote, not the parser's stand-in for a name.
    broken = parse_tool_calls(f"{START}[read-file(path=open-file(x=1)), ok()]{END}")
    assert [c["function"]["name"] for c in broken.tool_calls] == ["ok"]
    assert "read-file: argument 'path': 'open-file(x=1)' is not a literal value" in broken.error


def test_stray_end_markers_and_echoed_calls_are_not_content():
    echo = parse_tool_calls(f"Sure. {START}[a(x=1)]{END}[a(x=1)]{END} Done.")
    assert echo.content == "Sure. Done." and len(echo.tool_calls) == 1
    stray = parse_tool_calls(f"The answer is 4.{END}")
    assert (stray.content, stray.tool_calls, stray.error) == ("The answer is 4.", None, None)


def test_parsing_never_evaluates_anything(monkeypatch):
    calls = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: calls.append(a))
    parse_tool_calls(f"{START}[print(x=1), exec(code='print(2)')]{END}")
    assert calls == []


def test_random_garbage_never_raises():
    rng = random.Random(5)
    alphabet = list("[](){}=,'\"\\:._ -+*/0123456789abcxyzTrueFalseNonenull") + [START, END, "\n", "é"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        parsed = parse_tool_calls(START + text + END)
        assert parsed.tool_calls is not None or parsed.error is not None
        assert parsed.tool_calls is None or len(parsed.tool_calls) > 0
        for call in parsed.tool_calls or []:
            json.loads(call["function"]["arguments"], parse_constant=lambda name: pytest.fail(name))
    deep = START + "[f(x=" + "[" * 5000 + "]" * 5000 + ")]" + END
    assert parse_tool_calls(deep).tool_calls is None


def test_format_tool_calls_round_trips():
    text = f'{START}[get_weather(city="Paris", days=3), f(x={{"a": [1, true, null]}}, s="it\'s \\"q\\" é")]{END}'
    calls = parse_tool_calls(text).tool_calls
    again = parse_tool_calls(format_tool_calls(calls)).tool_calls
    assert again == calls


# --- definitions ---------------------------------------------------------------------------

GOLDEN_TOOL = {
    "name": "get_weather",
    "description": "Get the weather for a city (°C).",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city"]},
}


def get_weather(city: str, days: int = 1) -> dict:
    """Get the weather for a city (°C)."""
    return {}


def test_openai_style_and_bare_definitions_and_functions_give_the_same_schema():
    openai_style = {"type": "function", "function": GOLDEN_TOOL}
    assert tool_schemas([openai_style]) == [GOLDEN_TOOL]
    assert tool_schemas([GOLDEN_TOOL]) == [GOLDEN_TOOL]
    assert tool_schemas([get_weather]) == [GOLDEN_TOOL]


def test_function_schema_from_hints_and_google_docstring():
    def book(room: str, people: List[str], when: Optional[Dict[str, int]] = None,
             mode: Literal["quiet", "open"] = "quiet", ratio: float = 1.0, confirm: bool = True, note=None):
        """Book a meeting room.

        Longer explanation that is part of the description.

        Args:
            room: the room's name,
                as on the door.
            people (list): who comes.
            when: start time.

        Returns:
            the booking.
        """

    schema = function_schema(book)
    assert schema["name"] == "book"
    assert schema["description"] == "Book a meeting room. Longer explanation that is part of the description."
    props = schema["parameters"]["properties"]
    assert props["room"] == {"type": "string", "description": "the room's name, as on the door."}
    assert props["people"] == {"type": "array", "items": {"type": "string"}, "description": "who comes."}
    assert props["when"] == {"type": "object", "additionalProperties": {"type": "integer"}, "description": "start time."}
    assert props["mode"] == {"enum": ["quiet", "open"]}
    assert props["ratio"] == {"type": "number"} and props["confirm"] == {"type": "boolean"} and props["note"] == {}
    assert schema["parameters"]["required"] == ["room", "people"]


def test_function_schema_abstract_containers():
    def f(a: Sequence[int], b: Mapping[str, float], c: Tuple[int, str] = (1, "x")):
        """F."""

    props = function_schema(f)["parameters"]["properties"]
    assert props == {"a": {"type": "array", "items": {"type": "integer"}},
                     "b": {"type": "object", "additionalProperties": {"type": "number"}},
                     "c": {"type": "array"}}


def test_bad_tool_definitions():
    with pytest.raises(TypeError):
        tool_schemas([42])
    with pytest.raises(ValueError, match="without a name"):
        tool_schemas([{"description": "x"}])
    with pytest.raises(ValueError, match="needs a name"):
        function_schema(lambda x: None)

    def star(**kwargs):
        """x"""

    with pytest.raises(ValueError, match="named parameters"):
        function_schema(star)


# --- rendering with LFM2's template -------------------------------------------------------


@pytest.fixture(scope="module")
def golden_chats(tokenizer_dir):
    return json.loads((tokenizer_dir / "golden_encodings.json").read_text(encoding="utf-8"))["chat"]


@pytest.fixture(scope="module")
def lfm2_template():
    return ChatTemplate(lfm2_default_template(), "<|startoftext|>", "<|im_end|>")


@pytest.mark.parametrize("form", ["openai", "function"])
def test_tools_render_as_transformers_renders_them(golden_chats, lfm2_template, form):
    tools = [{"type": "function", "function": GOLDEN_TOOL}] if form == "openai" else [get_weather]
    for chat in golden_chats:
        if chat["tools"] is None:
            continue
        rendered = lfm2_template.render(chat["messages"], tools=tool_schemas(tools),
                                        add_generation_prompt=chat["add_generation_prompt"])
        assert rendered == chat["rendered"]


def test_tool_results_render_in_tool_response_tokens(golden_chats, lfm2_template):
    chat = next(c for c in golden_chats if any(m["role"] == "tool" for m in c["messages"]))
    rendered = lfm2_template.render(chat["messages"], tools=tool_schemas([get_weather]))
    assert "<|im_start|>tool\n<|tool_response_start|>{\"temp\": 21}<|tool_response_end|><|im_end|>\n" in rendered


def test_openai_style_assistant_tool_calls_are_written_into_the_content(lfm2_template):
    call = {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21}'}]
    prepared = messages_for_template(messages, lfm2_template.source)
    assert prepared[1] == {"role": "assistant", "content": f'{START}[get_weather(city="Paris")]{END}'}
    assert messages[1]["content"] is None  # the caller's messages are not modified
    rendered = lfm2_template.render(prepared, tools=tool_schemas([get_weather]))
    assert f'<|im_start|>assistant\n{START}[get_weather(city="Paris")]{END}<|im_end|>\n' in rendered
    # A template that handles tool_calls itself gets the messages unchanged.
    assert messages_for_template(messages, "{{ message.tool_calls }}") == messages


# --- the Completion --------------------------------------------------------------------------


def completion(text: str) -> Completion:
    return Completion(text=text, tokens=[], finish_reason="stop",
                      timings=Timings(prompt_tokens=1, prefilled_tokens=1, generated_tokens=0,
                                      prefill_seconds=0.0, decode_steps=0, decode_seconds=0.0))


def test_with_tool_calls_fills_the_completion():
    done = with_tool_calls(completion(f"Checking. {START}[get_weather(city='Lima')]{END}"))
    assert done.tool_calls[0]["function"]["name"] == "get_weather"
    assert done.tool_parse_error is None
    assert done.content == "Checking."
    assert done.text.endswith(END)  # text keeps what the model said, for the history

    bad = with_tool_calls(completion(f"{START}[get_weather('Lima')]{END}"))
    assert bad.tool_calls is None and "positional" in bad.tool_parse_error
    assert bad.content == bad.text

    plain = completion("Hello")
    assert with_tool_calls(plain) is plain and plain.content == "Hello"


def test_with_tool_calls_without_parallel_calls_keeps_the_first():
    text = f"{START}[get_weather(city='Lima'), get_weather(city='Quito')]{END}"
    assert [call["function"]["arguments"] for call in with_tool_calls(completion(text)).tool_calls] == [
        '{"city": "Lima"}', '{"city": "Quito"}']
    assert [call["function"]["arguments"] for call in with_tool_calls(completion(text), parallel=False).tool_calls] == [
        '{"city": "Lima"}']


def test_apply_chat_template_takes_python_functions_as_chat_does(tiny_model_dir):
    model = lfmrt.Model.load(tiny_model_dir)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    from_function = model.apply_chat_template(messages, tools=[get_weather])
    assert from_function == model.apply_chat_template(messages, tools=tool_schemas([get_weather]))
    assert '"name": "get_weather"' in from_function


def test_tool_parameters_must_be_a_json_schema_object():
    with pytest.raises(ValueError, match=r"tool 'f': 'parameters' must be a JSON-schema object"):
        tool_schemas([{"name": "f", "parameters": "city: str"}])
    with pytest.raises(ValueError, match="'parameters' must be a JSON-schema object"):
        tool_schemas([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}])
    assert tool_schemas([{"name": "f"}, {"name": "g", "parameters": {"properties": {}}}])[1]["name"] == "g"


def test_chat_with_tools_end_to_end(tiny_model_dir):
    """The fixture model (random weights) is pushed by a logit bias to write tool-call starts
    only: the unfinished block comes back as text with a parse error, never an exception."""
    model = lfmrt.Model.load(tiny_model_dir)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    plain_prompt = model.apply_chat_template(messages)
    tool_prompt = model.apply_chat_template(messages, tools=tool_schemas([get_weather]))
    assert "<|tool_list_start|>" in tool_prompt and "<|tool_list_start|>" not in plain_prompt

    start_id = model.tokenize(START, add_special_tokens=False)
    assert len(start_id) == 1
    reply = model.chat(messages, tools=[get_weather], max_tokens=3, temperature=0,
                       logit_bias={start_id[0]: 100.0})
    assert reply.text == START * 3
    assert reply.tool_calls is None and END in reply.tool_parse_error

    pieces = []
    stream = model.chat_stream(messages, tools=[get_weather], max_tokens=3, temperature=0,
                               logit_bias={start_id[0]: 100.0})
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            streamed = done.value
            break
    assert "".join(pieces) == streamed.text == reply.text
    assert dataclasses.replace(streamed, timings=reply.timings, seed=reply.seed) == reply
