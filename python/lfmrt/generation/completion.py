"""What a generation returns: the finished :class:`Completion` (with its :class:`Timings` and,
when asked for, the :class:`TokenLogprob` of each token) and the streamed :class:`Piece`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class TopLogprob:
    """One of the most likely tokens at a step: its id, its text and its log-probability."""

    token: int
    text: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability, and the most likely tokens at its step.

    Log-probabilities are the log-softmax of the logits the sampler drew from after a
    constraint's mask, ``logit_bias`` and the penalties, before temperature and truncation
    (see :class:`~lfmrt.SamplingOptions`). ``text`` is the token decoded alone (a token holding
    part of a multi-byte character decodes to U+FFFD); special tokens keep their text.

    Attributes:
        token: the token id.
        text: its text.
        logprob: its log-probability.
        top_logprobs: the ``top_logprobs`` most likely tokens, most likely first (empty when
            ``top_logprobs=0``).
    """

    token: int
    text: str
    logprob: float
    top_logprobs: List[TopLogprob]


class Piece(str):
    """A streamed piece of text (a ``str``), with the log-probabilities of the tokens sampled
    since the previous piece in ``logprobs`` (``None`` unless ``logprobs=True``).

    With ``logprobs=True`` a piece comes at every token, with empty text while the token's
    text is held back (part of a character, or perhaps the start of a stop string), so each
    token's log-probability is streamed as it is sampled. Without, pieces are never empty.
    """

    logprobs: Optional[List[TokenLogprob]]

    def __new__(cls, text: str = "", logprobs: Optional[List[TokenLogprob]] = None) -> "Piece":
        piece = super().__new__(cls, text)
        piece.logprobs = logprobs
        return piece


@dataclass(frozen=True)
class Timings:
    """How long a generation took.

    Attributes:
        prompt_tokens: tokens of the prompt.
        prefilled_tokens: tokens run to reach the prompt: its tokens that the session did not
            already hold, plus any re-run from a conv checkpoint.
        generated_tokens: tokens sampled.
        prefill_seconds: time spent running the prompt through the model.
        decode_steps: forward passes after the prompt (each followed by a sample).
        decode_seconds: time from the first sampled token to the last.
    """

    prompt_tokens: int
    prefilled_tokens: int
    generated_tokens: int
    prefill_seconds: float
    decode_steps: int
    decode_seconds: float

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prefilled prompt tokens per second."""
        return self.prefilled_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Steady-state decoding speed: forward passes plus sampling per second."""
        if self.decode_steps == 0 or self.decode_seconds <= 0:
            return 0.0
        return self.decode_steps / self.decode_seconds


@dataclass(frozen=True)
class Completion:
    """The result of ``Model.generate`` / ``Model.chat``.

    Attributes:
        text: the generated text (stop strings and end-of-turn tokens excluded).
        tokens: the generated token ids (the stop token excluded).
        finish_reason: ``"stop"`` (end-of-sequence token, stop string, or the end of a
            constraint's answer), ``"length"`` (``max_tokens`` or the context ran out first:
            a constrained answer is then incomplete), ``"cancelled"`` (``Request.cancel``) or
            ``"error"`` (a ``Scheduler`` request whose constraint could not go on; see
            ``Request.error``).
        timings: prefill and decode speed.
        tool_calls: from ``Model.chat``: the answer's tool calls, OpenAI-style
            (``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``), or
            ``None`` when it made none (see :mod:`lfmrt.text.tool_calls`).
        tool_parse_error: why a tool call (or a whole tool-call block) in the answer could not
            be parsed, or ``None``; the calls that could be parsed are still in ``tool_calls``.
        content: the answer without its tool-call blocks; ``text`` when it made no calls.
            ``text`` keeps the blocks: it is what the model said, and what a conversation's
            assistant message must hold for LFM2's template to show the model its own calls.
            (The tool-call parser fills it in; left out, it is ``text``.)
        seed: the sampling seed this generation used (drawn from the operating system when
            none was given): pass it as ``seed=`` to repeat the run.
        logprobs: with ``logprobs=True``, one :class:`TokenLogprob` per token of ``tokens``;
            else ``None``.
    """

    text: str
    tokens: List[int]
    finish_reason: str
    timings: Timings
    tool_calls: Optional[List[Dict[str, Any]]] = None
    tool_parse_error: Optional[str] = None
    content: Optional[str] = None
    seed: Optional[int] = None
    logprobs: Optional[List[TokenLogprob]] = None

    def __post_init__(self) -> None:
        if self.content is None:
            object.__setattr__(self, "content", self.text)  # frozen: set once, here
