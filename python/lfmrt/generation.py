"""The generation loop: sample, stream text safely, stop, and time it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

from tokenizers import Tokenizer

from . import _core
from .detokenizer import IncrementalDetokenizer, StopStringMatcher
from .session import Session


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
        finish_reason: ``"stop"`` (end-of-sequence token or stop string) or ``"length"``.
        timings: prefill and decode speed.
        tool_calls: from ``Model.chat``: the answer's tool calls, OpenAI-style
            (``{"id", "type": "function", "function": {"name", "arguments": "<json>"}}``), or
            ``None`` when it made none (see :mod:`lfmrt.tools`).
        tool_parse_error: why the answer's tool-call block could not be parsed (its text is
            then returned as plain ``text``), or ``None``.
    """

    text: str
    tokens: List[int]
    finish_reason: str
    timings: Timings
    tool_calls: Optional[List[Dict[str, Any]]] = None
    tool_parse_error: Optional[str] = None

    @property
    def content(self) -> str:
        """The answer without its tool-call blocks (``text`` when it made no calls).

        ``text`` keeps the blocks: it is what the model said, and what a conversation's
        assistant message must hold for LFM2's template to show the model its own calls.
        """
        if not self.tool_calls:
            return self.text
        from .tools import parse_tool_calls

        return parse_tool_calls(self.text).content


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick each next token. ``temperature=0`` is greedy; the same seed gives the same output.

    Attributes:
        temperature: softmax temperature (0 = greedy).
        top_k: keep the k most likely tokens (0 = off).
        top_p: keep the smallest set holding this probability mass (1 = off).
        min_p: drop tokens less likely than min_p times the most likely one (0 = off).
        repetition_penalty: transformers' rule over the whole context (1 = off).
        presence_penalty, frequency_penalty: OpenAI's rules (0 = off).
        seed: random seed.
        logit_bias: token id -> value added to its logit.
    """

    temperature: float = 0.3
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.15
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = 0
    logit_bias: Dict[int, float] = field(default_factory=dict)

    def to_core(self, vocab_size: int) -> "_core.SamplingParams":
        """The C++ sampler's parameters; raises ValueError naming a field that is out of range."""
        params = _core.SamplingParams()
        params.temperature = float(self.temperature)
        params.top_k = int(self.top_k)
        params.top_p = float(self.top_p)
        params.min_p = float(self.min_p)
        params.repetition_penalty = float(self.repetition_penalty)
        params.presence_penalty = float(self.presence_penalty)
        params.frequency_penalty = float(self.frequency_penalty)
        if not 0 <= int(self.seed) < 2**64:
            raise ValueError("seed must be in [0, 2**64)")
        params.seed = int(self.seed)
        params.logit_bias = [(int(token), float(bias)) for token, bias in self.logit_bias.items()]
        params.validate(vocab_size)
        return params


def check_token_ids(tokens: Sequence[int], vocab_size: int) -> None:
    """Raises ValueError for a prompt token outside the vocabulary, before any of the prompt
    runs (a scheduler prefills prompts together: one bad prompt must not stall the others)."""
    for index, token in enumerate(tokens):
        if not 0 <= token < vocab_size:
            raise ValueError(
                f"token id {token} at index {index} of the prompt is outside the vocabulary [0, {vocab_size})"
            )


class GenerationState:
    """One generation as a sequence of steps, so a scheduler can advance many together.

    ``prefill()`` once, then repeatedly ``accept(sample())`` until ``finished``; between
    accepts the caller runs the accepted token through the model (``pending_token``), alone
    with ``Session.decode`` or batched with other generations. A scheduler that prefills many
    prompts together calls ``start_prefill()`` instead of ``prefill()``, runs ``prompt_to_run``
    in slices, and reports each with ``prompt_ran``.
    """

    def __init__(
        self,
        session: Session,
        tokenizer: Tokenizer,
        prompt_tokens: Sequence[int],
        sampling: SamplingOptions,
        max_tokens: int,
        stop: Optional[Sequence[str]],
        stop_token_ids: Sequence[int],
        vocab_size: int,
    ) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if len(prompt_tokens) == 0:
            raise ValueError("the prompt is empty: give at least one token")
        check_token_ids(prompt_tokens, vocab_size)
        self.session = session
        self._prompt_tokens = list(prompt_tokens)
        self._sampler = _core.Sampler(sampling.to_core(vocab_size))
        self._max_tokens = max_tokens
        self._stop_token_ids = set(stop_token_ids)
        self._detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=False)
        self._stopper = StopStringMatcher(list(stop or []))
        self._pieces: List[str] = []
        self._generated: List[int] = []
        self._prefilled = 0
        self._forwarded_before_prefill = 0
        self._prefill_seconds = 0.0
        self.prompt_to_run: List[int] = []  # prompt tokens not yet run (see start_prefill)
        self._first_token_time = self._last_token_time = 0.0
        self._decode_steps = 0
        self.finish_reason: Optional[str] = None
        self.pending_token: Optional[int] = None  # accepted, not yet run through the model

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def prefilling(self) -> bool:
        """Whether part of the prompt is still to run (after ``start_prefill``)."""
        return bool(self.prompt_to_run)

    def prefill(self) -> None:
        """Brings the session to the prompt, reusing what it already holds."""
        self.start_prefill()
        if self.prompt_to_run:
            start = time.perf_counter()
            self.session.append(self.prompt_to_run)
            self.prompt_ran(len(self.prompt_to_run), time.perf_counter() - start)

    def start_prefill(self) -> None:
        """Rewinds the session to the longest prefix it shares with the prompt; the rest of the
        prompt becomes ``prompt_to_run`` (empty when the session already holds all of it)."""
        start = time.perf_counter()
        self._forwarded_before_prefill = self.session.n_forwarded
        held = self.session.reuse_prefix(self._prompt_tokens)
        self.prompt_to_run = self._prompt_tokens[held:]
        self._prefilled = self.session.n_forwarded - self._forwarded_before_prefill
        self._prefill_seconds = time.perf_counter() - start

    def prompt_ran(self, n_tokens: int, seconds: float) -> None:
        """Notes that the first ``n_tokens`` of ``prompt_to_run`` went through the model, in a
        step that took ``seconds``."""
        self.prompt_to_run = self.prompt_to_run[n_tokens:]
        self._prefilled = self.session.n_forwarded - self._forwarded_before_prefill
        self._prefill_seconds += seconds

    def sample(self) -> int:
        """The next token, from the session's last logits."""
        return self._sampler.sample(self.session._core)

    def accept(self, token: int) -> str:
        """Takes a sampled token; returns the text it completes (possibly empty)."""
        now = time.perf_counter()
        if not self._generated and self._decode_steps == 0:
            self._first_token_time = now
        self._last_token_time = now
        self.pending_token = None
        if token in self._stop_token_ids:
            self.finish_reason = "stop"
            return self._flush()
        self._generated.append(token)
        text = self._stopper.push(self._detokenizer.push(token))
        if self._stopper.stopped:
            self.finish_reason = "stop"
        elif len(self._generated) >= self._max_tokens:
            self.finish_reason = "length"
            if text:
                self._pieces.append(text)
            return text + self._flush()  # _flush records its own tail
        else:
            self.pending_token = token
        if text:
            self._pieces.append(text)
        return text

    def stepped(self) -> None:
        """Notes that the pending token went through the model."""
        self._decode_steps += 1

    def _flush(self) -> str:
        tail = self._stopper.push(self._detokenizer.flush()) + self._stopper.flush()
        if tail:
            self._pieces.append(tail)
        return tail

    def completion(self) -> Completion:
        """The finished generation's result."""
        assert self.finished, "the generation has not finished"
        return Completion(
            text="".join(self._pieces),
            tokens=list(self._generated),
            finish_reason=self.finish_reason or "length",
            timings=Timings(
                prompt_tokens=len(self._prompt_tokens),
                prefilled_tokens=self._prefilled,
                generated_tokens=len(self._generated),
                prefill_seconds=self._prefill_seconds,
                decode_steps=self._decode_steps,
                decode_seconds=self._last_token_time - self._first_token_time,
            ),
        )


class Generation:
    """One generation run alone: iterate it for text pieces; ``completion`` once it is done."""

    def __init__(self, state: GenerationState) -> None:
        self._state = state
        self.completion: Optional[Completion] = None

    def __iter__(self) -> Iterator[str]:
        state = self._state
        state.prefill()
        while True:
            text = state.accept(state.sample())
            if text:
                yield text
            if state.finished:
                break
            state.session.decode(state.pending_token)
            state.stepped()
        # The end of an answer is a turn boundary: a later turn may diverge right here.
        state.session.checkpoint()
        self.completion = state.completion()
