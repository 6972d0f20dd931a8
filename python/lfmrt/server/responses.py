"""Engine events written as OpenAI response bodies and server-sent-event chunks."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..generation.completion import Completion, TokenLogprob
from .errors import APIError
from .metrics import cached_tokens
from .tool_stream import Split, ToolCallSplitter, split_answer

SYSTEM_FINGERPRINT = "lfmrt"


def sse(data: Any) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def sse_error(error: APIError) -> bytes:
    """The error event a stream ends with when it cannot finish (OpenAI's clients raise it)."""
    return sse(error.body())


def usage(completions: Sequence[Completion]) -> Dict[str, Any]:
    """OpenAI's usage object of a response's choices: the prompt counted once, as OpenAI does, and
    every choice's answer; ``prompt_tokens_details.cached_tokens`` counts the prompt tokens the
    first choice's pooled session already held (prefix reuse)."""
    prompt_tokens = completions[0].timings.prompt_tokens
    completion_tokens = sum(completion.timings.generated_tokens for completion in completions)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens(completions[0])},
    }


class ResponseWriter:
    """What the body and every chunk of one response share (id, creation time, model), and the
    writing of the parts that span its choices.

    Args:
        model_name: the served model's id.
        kind: ``"chat"`` (``chat.completion`` objects) or ``"text"`` (``text_completion``).
        include_usage: streaming: every chunk carries ``"usage": null`` and the stream ends with
            a chunk of the usage (``stream_options``).
    """

    def __init__(self, model_name: str, kind: str, *, include_usage: bool = False) -> None:
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.model_name = model_name
        self.include_usage = include_usage
        self._object, self._chunk_object = (("chat.completion", "chat.completion.chunk") if kind == "chat"
                                            else ("text_completion", "text_completion"))

    def _header(self, object_name: str) -> Dict[str, Any]:
        return {"id": self.id, "object": object_name, "created": self.created, "model": self.model_name,
                "system_fingerprint": SYSTEM_FINGERPRINT}

    def body(self, choices: List[Dict[str, Any]], completions: Sequence[Completion]) -> Dict[str, Any]:
        """The whole response object."""
        return {**self._header(self._object), "choices": choices, "usage": usage(completions)}

    def chunk(self, choice: Dict[str, Any]) -> bytes:
        """One streamed chunk of one choice."""
        chunk: Dict[str, Any] = {**self._header(self._chunk_object), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return sse(chunk)

    def usage_chunk(self, completions: Sequence[Completion]) -> Optional[bytes]:
        """The chunk a stream ends with when it asked for usage, else None."""
        if not self.include_usage:
            return None
        return sse({**self._header(self._chunk_object), "choices": [], "usage": usage(completions)})


def _token_bytes(text: str) -> List[int]:
    return list(text.encode("utf-8", errors="replace"))


def chat_logprobs(entries: Optional[Sequence[TokenLogprob]]) -> Optional[Dict[str, Any]]:
    """A chat choice's ``logprobs`` (OpenAI's ``{"content": [...]}``) for these tokens' entries;
    None when the request did not ask for logprobs."""
    if entries is None:
        return None
    return {
        "content": [
            {"token": entry.text, "logprob": entry.logprob, "bytes": _token_bytes(entry.text),
             "top_logprobs": [{"token": top.text, "logprob": top.logprob, "bytes": _token_bytes(top.text)}
                              for top in entry.top_logprobs]}
            for entry in entries
        ],
        "refusal": None,
    }


def text_logprobs(entries: Optional[Sequence[TokenLogprob]], offset: int) -> Optional[Dict[str, Any]]:
    """A text completion choice's ``logprobs`` (the legacy ``tokens`` / ``token_logprobs`` /
    ``top_logprobs`` / ``text_offset`` lists) for these tokens' entries, the first token's text
    starting at ``offset`` of the choice's text; None when the request did not ask for them."""
    if entries is None:
        return None
    offsets, position = [], offset
    for entry in entries:
        offsets.append(position)
        position += len(entry.text)
    return {
        "tokens": [entry.text for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{top.text: top.logprob for top in entry.top_logprobs} for entry in entries],
        "text_offset": offsets,
    }


class ChatAnswer:
    """Writes one choice of a chat completion: whole, or as ``chat.completion.chunk`` events.

    Args:
        response: the response the choice belongs to.
        index: the choice's index.
        parse_tools: whether the answer's tool-call blocks become ``tool_calls``.
        parallel_tool_calls: False keeps only the first call.
    """

    def __init__(self, response: ResponseWriter, index: int = 0, *, parse_tools: bool,
                 parallel_tool_calls: bool = True) -> None:
        self.response = response
        self.index = index
        self._parse_tools = parse_tools
        self._parallel = parallel_tool_calls
        self._splitter = ToolCallSplitter(parse_tools)
        self._logprobs: List[TokenLogprob] = []  # streamed tokens' entries not yet written
        self.parse_errors: List[str] = []  # why tool-call blocks could not be parsed (once written)

    def _calls(self, calls: Optional[List[Dict[str, Any]]]) -> Optional[List[Dict[str, Any]]]:
        if calls and not self._parallel:
            return calls[:1]
        return calls

    def _finish_reason(self, completion: Completion, made_calls: bool) -> str:
        return "tool_calls" if made_calls else completion.finish_reason

    def choice(self, completion: Completion) -> Dict[str, Any]:
        """The choice in the ``chat.completion`` object."""
        content, calls, self.parse_errors = split_answer(completion.text, self._parse_tools)
        calls = self._calls(calls)
        message: Dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["tool_calls"] = calls
            if not content.strip():
                message["content"] = None
        return {"index": self.index, "message": message, "logprobs": chat_logprobs(completion.logprobs),
                "finish_reason": self._finish_reason(completion, bool(calls))}

    def _chunk(self, delta: Dict[str, Any], finish_reason: Optional[str] = None) -> bytes:
        """A chunk; it carries the logprobs of the tokens streamed since the last one that did
        (a token whose text the tool-call splitter holds back is reported with the next chunk)."""
        logprobs = chat_logprobs(self._logprobs) if self._logprobs else None
        self._logprobs = []
        return self.response.chunk({"index": self.index, "delta": delta, "logprobs": logprobs,
                                    "finish_reason": finish_reason})

    def first_chunk(self) -> Optional[bytes]:
        return self._chunk({"role": "assistant", "content": ""})

    def _split_chunks(self, split: Split) -> Iterator[bytes]:
        if split.content:
            yield self._chunk({"content": split.content})
        for call in split.tool_calls:
            if call["index"] == 0 or self._parallel:
                yield self._chunk({"tool_calls": [call]})

    def piece_chunks(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> Iterator[bytes]:
        """Chunks for a piece of streamed text (and its tokens' logprobs): content, or tool
        calls whose block closed."""
        self._logprobs.extend(logprobs)
        return self._split_chunks(self._splitter.push(text))

    def final_chunks(self, completion: Completion) -> Iterator[bytes]:
        """The rest of the answer and the chunk with the finish reason."""
        yield from self._split_chunks(self._splitter.finish())
        self.parse_errors = self._splitter.errors
        yield self._chunk({}, self._finish_reason(completion, self._splitter.n_calls > 0))


class TextAnswer:
    """Writes one choice of a ``text_completion``: whole, or as chunks.

    Args:
        response: the response the choice belongs to.
        index: the choice's index.
        echo: the prompt's text when the request asked for ``echo`` (it precedes the answer).
    """

    def __init__(self, response: ResponseWriter, index: int = 0, *, echo: str = "") -> None:
        self.response = response
        self.index = index
        self._echo = echo
        self._offset = 0  # characters of the choice's text streamed so far (for text_offset)
        self.parse_errors: List[str] = []  # text completions parse no tool calls

    def choice(self, completion: Completion) -> Dict[str, Any]:
        """The choice in the ``text_completion`` object."""
        return {"index": self.index, "text": self._echo + completion.text,
                "logprobs": text_logprobs(completion.logprobs, len(self._echo)),
                "finish_reason": completion.finish_reason}

    def _chunk(self, text: str, finish_reason: Optional[str] = None,
               logprobs: Optional[Sequence[TokenLogprob]] = None) -> bytes:
        chunk = self.response.chunk({"index": self.index, "text": text, "finish_reason": finish_reason,
                                     "logprobs": text_logprobs(logprobs, self._offset) if logprobs else None})
        self._offset += len(text)
        return chunk

    def first_chunk(self) -> Optional[bytes]:
        return self._chunk(self._echo) if self._echo else None

    def piece_chunks(self, text: str, logprobs: Sequence[TokenLogprob] = ()) -> Iterator[bytes]:
        yield self._chunk(text, logprobs=logprobs)

    def final_chunks(self, completion: Completion) -> Iterator[bytes]:
        yield self._chunk("", completion.finish_reason)
