"""Answer text split into content and tool calls as it streams.

LFM2 writes a call as ``<|tool_call_start|>[name(arg=value, ...)]<|tool_call_end|>``. The
server never leaves a call in ``content``: text outside the blocks is content (streamed as it
comes, holding back only what could be the start of a marker), each block is parsed once it
closes (or when the answer ends inside it) and comes out as OpenAI ``tool_calls``. Streamed and
non-streamed answers go through this same splitter, so they agree.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..text.tool_calls import TOOL_CALL_END, TOOL_CALL_START, parse_tool_calls


def _held_back(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could begin ``marker``."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-length:]):
            return length
    return 0


def new_call_id() -> str:
    """A tool-call id unique across conversations, as OpenAI's are (``call_`` + 24 hex digits)."""
    return "call_" + secrets.token_hex(12)


@dataclass
class Split:
    """What one push of text yields: content to send, and calls completed by it."""

    content: str = ""
    tool_calls: List[Dict[str, Any]] = field(default_factory=list)


class ToolCallSplitter:
    """Feeds on answer text; yields content and parsed tool calls (see the module docstring).

    Args:
        parse: whether the answer may hold tool calls (the request had tools); without it all
            text is content.
    """

    def __init__(self, parse: bool = True) -> None:
        self._parse = parse
        self._buffer = ""
        self._in_block = False
        self.n_calls = 0
        self.errors: List[str] = []

    def push(self, text: str) -> Split:
        if not self._parse:
            return Split(content=text)
        self._buffer += text
        out = Split()
        while True:
            if self._in_block:
                end = self._buffer.find(TOOL_CALL_END)
                if end < 0:
                    return out
                out.tool_calls += self._calls(self._buffer[:end])
                self._buffer = self._buffer[end + len(TOOL_CALL_END) :]
                self._in_block = False
            else:
                start = self._buffer.find(TOOL_CALL_START)
                if start < 0:
                    keep = _held_back(self._buffer, TOOL_CALL_START)
                    out.content += self._buffer[: len(self._buffer) - keep]
                    self._buffer = self._buffer[len(self._buffer) - keep :]
                    return out
                out.content += self._buffer[:start]
                self._buffer = self._buffer[start + len(TOOL_CALL_START) :]
                self._in_block = True

    def finish(self) -> Split:
        """The rest, at the end of the answer: held-back text, or a block left open."""
        if self._in_block:
            calls, self._buffer, self._in_block = self._calls(self._buffer), "", False
            return Split(tool_calls=calls)
        rest, self._buffer = self._buffer, ""
        return Split(content=rest)

    def _calls(self, body: str) -> List[Dict[str, Any]]:
        parsed = parse_tool_calls(f"{TOOL_CALL_START}{body}{TOOL_CALL_END}")
        if parsed.error:
            self.errors.append(parsed.error)
        calls = []
        for call in parsed.tool_calls or []:
            calls.append({"index": self.n_calls, "id": new_call_id(), "type": "function",
                          "function": dict(call["function"])})
            self.n_calls += 1
        return calls


def split_answer(text: str, parse: bool) -> Tuple[str, Optional[List[Dict[str, Any]]], List[str]]:
    """A whole answer's content, tool calls (None when it made none) and parse errors."""
    splitter = ToolCallSplitter(parse)
    first, last = splitter.push(text), splitter.finish()
    calls = first.tool_calls + last.tool_calls
    for call in calls:
        del call["index"]  # a message's calls are a list; only stream deltas carry an index
    return first.content + last.content, calls or None, splitter.errors
