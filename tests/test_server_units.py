"""The server's pure parts, without HTTP: the tool-call splitter that keeps calls out of
content while streaming, and the configuration's checks."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the server extra (pip install 'lfmrt[server]') is not installed")

from lfmrt.server.config import ServerConfig, parse_size  # noqa: E402
from lfmrt.server.tool_stream import ToolCallSplitter, split_answer  # noqa: E402
from lfmrt.text.tool_calls import TOOL_CALL_END, TOOL_CALL_START  # noqa: E402

ANSWER = (f"Let me check. {TOOL_CALL_START}[get_weather(city='Paris', days=3), add(a=1, b=2)]{TOOL_CALL_END}"
          f" Done <|tool_ maybe")


def _stream(text: str, cut: int):
    """Every piece of ``text`` cut into ``cut``-character pieces through one splitter."""
    splitter = ToolCallSplitter(parse=True)
    content, calls = [], []
    for start in range(0, len(text), cut):
        split = splitter.push(text[start : start + cut])
        content.append(split.content)
        calls += split.tool_calls
    rest = splitter.finish()
    return "".join(content) + rest.content, calls + rest.tool_calls


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 19, 1000])
def test_streamed_split_equals_whole_split(cut):
    whole_content, whole_calls, errors = split_answer(ANSWER, parse=True)
    content, calls = _stream(ANSWER, cut)
    assert content == whole_content == "Let me check.  Done <|tool_ maybe"  # the markers never leak
    assert errors == []
    assert [c["function"] for c in calls] == [c["function"] for c in whole_calls]
    assert [c["index"] for c in calls] == [0, 1]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris", "days": 3}
    assert calls[1]["function"]["name"] == "add"
    assert len({c["id"] for c in calls + whole_calls}) == 4  # ids are unique, not call_0 again


def test_a_call_is_released_as_soon_as_its_block_closes():
    splitter = ToolCallSplitter(parse=True)
    assert splitter.push(f"{TOOL_CALL_START}[f(x=1)").tool_calls == []
    split = splitter.push(f"]{TOOL_CALL_END}after")
    assert [c["function"]["name"] for c in split.tool_calls] == ["f"] and split.content == "after"


def test_a_block_left_open_is_parsed_at_the_end_and_a_broken_one_is_reported_not_shown():
    content, calls, errors = split_answer(f"hi {TOOL_CALL_START}[f(x=1)]", parse=True)
    assert content == "hi " and calls[0]["function"]["name"] == "f" and errors == []
    content, calls, errors = split_answer(f"hi {TOOL_CALL_START}[f(x=]{TOOL_CALL_END}", parse=True)
    assert content == "hi " and calls is None and errors


def test_without_tools_everything_is_content():
    assert split_answer(ANSWER, parse=False) == (ANSWER, None, [])


def test_parse_size():
    assert parse_size("4MiB") == 4 * 2**20 and parse_size("2GB") == 2 * 10**9 and parse_size("512") == 512
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="max_sequences"):
        ServerConfig(model_name="m", max_sequences=0)
    with pytest.raises(ValueError, match="allowed_origins: 'app.example.com' is not an origin"):
        ServerConfig(model_name="m", allowed_origins=("app.example.com",))
    with pytest.raises(ValueError, match="is not an origin"):
        ServerConfig(model_name="m", allowed_origins=("https://app.example.com/chat",))
    assert ServerConfig(model_name="m", allowed_origins=("*", "http://localhost:5173")).allowed_origins


def test_a_server_reachable_from_other_machines_without_a_key_is_warned_about():
    from lfmrt.cli.serve import exposure_warning

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert exposure_warning(host, api_key=False) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "myhost.example"):
        assert "anyone who can reach this port" in exposure_warning(host, api_key=False)
        assert exposure_warning(host, api_key=True) is None
