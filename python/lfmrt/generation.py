"""The generation loop: sample, stream text safely, stop, and time it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

from tokenizers import Tokenizer

from . import _core
from .detokenizer import IncrementalDetokenizer, StopStringMatcher
from .session import Session


@dataclass(frozen=True)
class Timings:
    """How long a generation took.

    Attributes:
        prompt_tokens: tokens prefilled before generation.
        generated_tokens: tokens sampled.
        prefill_seconds: time spent running the prompt through the model.
        decode_steps: forward passes after the prompt (each followed by a sample).
        decode_seconds: time from the first sampled token to the last.
    """

    prompt_tokens: int
    generated_tokens: int
    prefill_seconds: float
    decode_steps: int
    decode_seconds: float

    @property
    def prefill_tokens_per_s(self) -> float:
        """Prompt tokens per second of prefill."""
        return self.prompt_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0

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
    """

    text: str
    tokens: List[int]
    finish_reason: str
    timings: Timings


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


class Generation:
    """One generation in progress: iterate it for text pieces; ``completion`` once it is done."""

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
        if any(not s for s in stop or ()):
            raise ValueError("stop strings must be non-empty")
        self._session = session
        self._tokenizer = tokenizer
        self._prompt_tokens = list(prompt_tokens)
        self._sampler = _core.Sampler(sampling.to_core(vocab_size))
        self._max_tokens = max_tokens
        self._stop = list(stop or [])
        self._stop_token_ids = set(stop_token_ids)
        self.completion: Optional[Completion] = None

    def __iter__(self) -> Iterator[str]:
        session = self._session
        detokenizer = IncrementalDetokenizer(self._tokenizer, skip_special_tokens=False)
        stopper = StopStringMatcher(self._stop)
        pieces: List[str] = []
        generated: List[int] = []
        finish_reason = "length"

        start = time.perf_counter()
        session.append(self._prompt_tokens)
        prefill_seconds = time.perf_counter() - start

        first_token_time = last_token_time = 0.0
        decode_steps = 0
        while True:
            token = self._sampler.sample(session._core)
            last_token_time = time.perf_counter()
            if not generated:
                first_token_time = last_token_time
            if token in self._stop_token_ids:
                finish_reason = "stop"
                break
            generated.append(token)
            text = stopper.push(detokenizer.push(token))
            if text:
                pieces.append(text)
                yield text
            if stopper.stopped:
                finish_reason = "stop"
                break
            if len(generated) >= self._max_tokens:
                break
            session.append([token])
            decode_steps += 1

        if not stopper.stopped:
            tail = stopper.push(detokenizer.flush()) + stopper.flush()
            if tail:
                pieces.append(tail)
                yield tail
        self.completion = Completion(
            text="".join(pieces),
            tokens=generated,
            finish_reason=finish_reason,
            timings=Timings(
                prompt_tokens=len(self._prompt_tokens),
                generated_tokens=len(generated),
                prefill_seconds=prefill_seconds,
                decode_steps=decode_steps,
                decode_seconds=last_token_time - first_token_time,
            ),
        )
