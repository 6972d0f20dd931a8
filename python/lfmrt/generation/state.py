"""The generation loop as steps: sample, stream text safely, stop, and time it.

:class:`GenerationState` is one generation that a caller advances step by step (the
``Scheduler`` advances many together); :class:`Generation` runs one alone. Build a state with
:func:`lfmrt.generation.requests.generation_state`, which checks the prompt and options first.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, AbstractSet, Iterator, List, Optional, Sequence

from .. import _core
from ..session import Session
from ..text.detokenizer import IncrementalDetokenizer, StopStringMatcher
from .completion import Completion, Timings
from .options import SamplingOptions

if TYPE_CHECKING:
    from tokenizers import Tokenizer


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
        tokenizer: "Tokenizer",
        prompt_tokens: Sequence[int],
        sampling: SamplingOptions,
        max_tokens: int,
        stop: Optional[Sequence[str]],
        stop_token_ids: Sequence[int],
        vocab_size: int,
        hidden_token_ids: AbstractSet[int] = frozenset(),
    ) -> None:
        self.session = session
        sampling = sampling.seeded()
        self.seed = sampling.seed  # reported in the Completion, so the run can be repeated
        self._prompt_tokens = list(prompt_tokens)
        self._sampler = _core.Sampler(sampling.to_core(vocab_size))
        self._max_tokens = max_tokens
        self._stop_token_ids = set(stop_token_ids)
        self._hidden_token_ids = hidden_token_ids  # generated, kept in tokens, left out of the text
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
        text = "" if token in self._hidden_token_ids else self._stopper.push(self._detokenizer.push(token))
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
            seed=self.seed,
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
