"""Streaming text out of a token stream: incremental detokenization and stop strings.

:class:`IncrementalDetokenizer` turns token ids into text as they arrive without ever emitting
half a character: a byte-level BPE token can end in the middle of a multi-byte UTF-8 character,
which decodes as U+FFFD until the next token completes it. It uses the prefix / read-offset
technique of vLLM and TGI: decode a short window that starts a little before the new tokens, and
emit only what the new tokens added to it, so decoders that depend on context (leading-space
handling) stay exact.

:class:`StopStringMatcher` holds back any text that could be the start of a stop string, so a
stop string split across tokens is still caught and never reaches the user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, FrozenSet, List, Optional, Sequence

from .tool_calls import TOOL_CALL_END, TOOL_CALL_START

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_REPLACEMENT = "\ufffd"

# Special tokens that are part of an answer's text rather than the chat's scaffolding: the
# tool-call markers (the tool-call parser and the conversation history need them) and LFM2.5's
# reasoning tags. Every other special token (<|im_end|>, <|startoftext|>, ...) is left out of
# user-facing text unless asked for.
ANSWER_MARKUP = (TOOL_CALL_START, TOOL_CALL_END, "<think>", "</think>")


def hidden_special_ids(tokenizer: "Tokenizer", keep: Sequence[str] = ANSWER_MARKUP) -> FrozenSet[int]:
    """Ids of the tokenizer's special tokens whose text is not ``keep``: what user-facing text
    leaves out."""
    return frozenset(
        token_id
        for token_id, token in tokenizer.get_added_tokens_decoder().items()
        if token.special and token.content not in keep
    )


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of complete text pieces.

    The concatenation of everything :meth:`push` and :meth:`flush` return equals
    ``tokenizer.decode(all_ids, skip_special_tokens=...)``.

    Args:
        tokenizer: the model's ``tokenizers.Tokenizer``.
        skip_special_tokens: leave special tokens (``<|im_end|>``, ...) out of the text.
    """

    def __init__(self, tokenizer: "Tokenizer", skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._ids: List[int] = []
        self._prefix_offset = 0  # start of the decode window (text already emitted)
        self._read_offset = 0  # first token whose text has not been emitted

    def _decode(self, ids: Sequence[int]) -> str:
        """Decodes ``ids`` with this detokenizer's special-token policy."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=self._skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Adds one token and returns the text it completed ("" while a character is partial)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset :])
        if len(full_text) <= len(prefix_text) or full_text.endswith(_REPLACEMENT):
            return ""
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]

    def flush(self) -> str:
        """Returns whatever is still held back (an incomplete character decodes as U+FFFD)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        full_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return full_text[len(prefix_text) :]


class StopStringMatcher:
    """Cuts a text stream at the first occurrence of any stop string.

    Text is emitted as soon as it cannot be part of a stop string; a suffix that could start
    one is held until the stream shows otherwise. Once a stop string is seen, the text before it
    is emitted and the stop string and everything after it are dropped.

    Args:
        stop: the stop strings (non-empty).

    Raises:
        ValueError: a stop string is empty.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        if any(not s for s in stop):
            raise ValueError("stop strings must be non-empty")
        self._stop = list(stop)
        self._held = ""
        self.stopped = False
        self.stop_string: Optional[str] = None  # the stop string that ended the stream

    def _held_suffix_length(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        longest = 0
        for stop in self._stop:
            for length in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:length]):
                    longest = length
                    break
        return longest

    def push(self, text: str) -> str:
        """Adds text and returns the part that is safe to emit ("" once stopped)."""
        if self.stopped:
            return ""
        text = self._held + text
        first: Optional[int] = None
        for stop in self._stop:
            index = text.find(stop)
            if index >= 0 and (first is None or index < first):
                first, self.stop_string = index, stop
        if first is not None:
            self.stopped = True
            self._held = ""
            return text[:first]
        held = self._held_suffix_length(text)
        self._held = text[len(text) - held :]
        return text[: len(text) - held]

    def flush(self) -> str:
        """Ends the stream: returns the held text (it never completed a stop string)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
