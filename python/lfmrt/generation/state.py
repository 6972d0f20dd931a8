"""The generation loop as steps: sample, stream text safely, stop, and time it.

:class:`GenerationState` is one generation that a caller advances step by step (the
``Scheduler`` advances many together); :class:`Generation` runs one alone. Build a state with
:func:`lfmrt.generation.requests.generation_state`, which checks the prompt and options first.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, AbstractSet, Iterator, List, Optional, Sequence

from .. import _core
from ..devices import physical_core_count
from ..session import Session
from ..text.detokenizer import IncrementalDetokenizer, StopStringMatcher
from .completion import Completion, Piece, Timings, TokenLogprob, TopLogprob
from .options import SamplingOptions

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from ..text.structured import Constraint


class GenerationState:
    """One generation as a sequence of steps, so a scheduler can advance many together.

    ``prefill()`` once, then repeatedly ``accept(sample())`` until ``finished``; between
    accepts the caller runs the accepted token through the model (``pending_token``), alone
    with ``Session.decode`` or batched with other generations. A scheduler that prefills many
    prompts together calls ``start_prefill()`` instead of ``prefill()``, runs ``prompt_to_run``
    in slices, and reports each with ``prompt_ran``.

    With a constraint, ``sample()`` computes the constraint's mask for the next token first,
    unless ``prepare_mask()`` already did (a scheduler calls it on another thread while the
    batch's forward step runs); ``accept()`` advances the constraint and ends the generation
    when the constrained answer is complete.
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
        constraint: Optional["Constraint"] = None,
    ) -> None:
        self.session = session
        sampling = sampling.seeded()
        self.seed = sampling.seed  # reported in the Completion, so the run can be repeated
        self._prompt_tokens = list(prompt_tokens)
        self._sampler = _core.Sampler(sampling.to_core(vocab_size))
        self._tokenizer = tokenizer
        self._constraint = constraint.start() if constraint is not None else None
        self._logprobs: Optional[List[TokenLogprob]] = [] if sampling.logprobs else None
        self._sampled_logprob: Optional[TokenLogprob] = None  # of the token sample() returned
        self._unstreamed = 0  # logprobs not yet handed out with a piece
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
    def prompt_tokens(self) -> List[int]:
        """The prompt's token ids."""
        return self._prompt_tokens

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

    @property
    def constrained(self) -> bool:
        """Whether a constraint restricts this generation's tokens."""
        return self._constraint is not None

    @property
    def mask_pending(self) -> bool:
        """Whether a constraint's mask for the next token is still to compute."""
        return self._constraint is not None and not self._constraint.mask_ready and not self.finished

    def prepare_mask(self) -> None:
        """Computes the constraint's mask for the next token, ahead of ``sample()`` (no-op
        without a constraint). Safe to run on another thread while the session's forward step
        runs, not while ``sample`` or ``accept`` does.

        Raises:
            ConstraintError: the constraint cannot go on.
        """
        if self._constraint is not None:
            self._constraint.compute_mask()

    def sample(self) -> int:
        """The next token, from the session's last logits (and the constraint's mask).

        Raises:
            ConstraintError: the constraint allows no token here (or logit_bias removed all it allows).
        """
        mask = None
        if self._constraint is not None:
            self._constraint.compute_mask()
            mask = self._constraint.mask
        token = self._sampler.sample(self.session._core, mask)
        if self._logprobs is not None:
            logprob, top = self._sampler.last_logprobs
            self._sampled_logprob = TokenLogprob(
                token=token,
                text=self._token_text(token),
                logprob=logprob,
                top_logprobs=[TopLogprob(t, self._token_text(t), lp) for t, lp in top],
            )
        return token

    def _token_text(self, token: int) -> str:
        return self._tokenizer.decode([token], skip_special_tokens=False)

    def accept(self, token: int) -> Piece:
        """Takes a sampled token; returns the text it completes (possibly empty), with the
        log-probabilities not yet handed out when ``logprobs`` is on.

        Raises:
            ConstraintError: the constraint rejects the token (one ``sample()`` did not give).
        """
        text = self._accept(token)
        if self._logprobs is None:
            return Piece(text)
        fresh = self._logprobs[self._unstreamed :]
        self._unstreamed = len(self._logprobs)
        return Piece(text, fresh)

    def _accept(self, token: int) -> str:
        sampled, self._sampled_logprob = self._sampled_logprob, None
        now = time.perf_counter()
        if not self._generated and self._decode_steps == 0:
            self._first_token_time = now
        self._last_token_time = now
        self.pending_token = None
        if token in self._stop_token_ids:
            self.finish_reason = "stop"
            return self._flush()
        if self._constraint is not None:
            self._constraint.advance(token)
        self._generated.append(token)
        if self._logprobs is not None and sampled is not None and sampled.token == token:
            self._logprobs.append(sampled)
        text = "" if token in self._hidden_token_ids else self._stopper.push(self._detokenizer.push(token))
        if self._stopper.stopped:
            self.finish_reason = "stop"
        elif self._constraint is not None and self._constraint.finished:
            self.finish_reason = "stop"  # the constrained answer is complete
            if text:
                self._pieces.append(text)
            return text + self._flush()
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

    def finish(self, reason: str) -> str:
        """Ends the generation early (``"cancelled"``, ``"error"``); returns the text held back."""
        self.finish_reason = reason
        self.pending_token = None
        return self._flush()

    def completion(self) -> Completion:
        """The finished generation's result."""
        assert self.finished, "the generation has not finished"
        return Completion(
            logprobs=list(self._logprobs) if self._logprobs is not None else None,
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


# Masks that take less CPU time than this are computed inline: handing work to a thread and
# joining it costs about 20-40 us of its own on this class of machine, more than llguidance
# takes for most masks on LFM2's vocabulary (a median of 2 us per token for a JSON schema,
# measured by bench/bench_structured.py's --masks-only). Slower ones (large grammars, big
# batches) overlap the forward step, where a core is left for them.
OFFLOAD_ABOVE_SECONDS = 50e-6


def _prepare_masks(states: Sequence[GenerationState]) -> float:
    """Computes each state's pending mask; returns the CPU seconds it took (the thread's own
    time: on the worker, waiting for a core while the forward step runs is not the masks' cost)."""
    start = time.thread_time()
    for state in states:
        try:
            state.prepare_mask()
        except Exception:  # noqa: BLE001 - sample() computes the mask again and raises it there
            pass
    return time.thread_time() - start


class MaskWorker:
    """Computes constraint masks while a forward step runs, on a thread of its own, when they
    take long enough for that to pay.

    The mask for a generation's next token depends only on the tokens it accepted, not on the
    logits, so it can be computed while the model runs the last accepted token (the engine and
    the forward pass both release the GIL). ``start`` is given the generations about to run a
    forward step and computes their pending masks: on the worker thread, which ``wait`` joins,
    when the last masks took more than :data:`OFFLOAD_ABOVE_SECONDS` and the forward step's
    threads leave a core free; else inline. (With every core computing, the worker takes one
    from the forward pass, whose other threads then wait for it at each barrier: on 2 cores and
    2 compute threads, offloading raised CPU time per token by half at batch 8 on the demo
    model.) An engine error is left for ``sample()`` to raise.
    """

    def __init__(self, compute_threads: int) -> None:
        """Args:
            compute_threads: the threads of the model's forward pass.
        """
        self._compute_threads = compute_threads
        self._spare_core: Optional[bool] = None  # known once masks are slow enough to ask
        self._executor: Optional[ThreadPoolExecutor] = None
        self._job: Optional["Future[float]"] = None
        self._seconds = 0.0  # a moving average of the CPU time one start()'s masks took

    def start(self, states: Sequence[GenerationState]) -> None:
        self.wait()
        pending = [state for state in states if state.mask_pending]
        if not pending:
            return
        if self._seconds >= OFFLOAD_ABOVE_SECONDS and self._spare_core is None:
            self._spare_core = self._compute_threads < physical_core_count()
        if self._seconds < OFFLOAD_ABOVE_SECONDS or not self._spare_core:
            self._note(_prepare_masks(pending))
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfmrt-mask")
        self._job = self._executor.submit(_prepare_masks, pending)

    def wait(self) -> None:
        if self._job is not None:
            job, self._job = self._job, None
            self._note(job.result())

    def _note(self, seconds: float) -> None:
        self._seconds += 0.25 * (seconds - self._seconds)

    def close(self) -> None:
        """Joins the work under way and ends the thread."""
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class Generation:
    """One generation run alone: iterate it for text pieces; ``completion`` once it is done."""

    def __init__(self, state: GenerationState, compute_threads: int) -> None:
        """Args:
            state: the generation.
            compute_threads: the threads of the model's forward pass (see :class:`MaskWorker`).
        """
        self._state = state
        self._compute_threads = compute_threads
        self.completion: Optional[Completion] = None

    def __iter__(self) -> Iterator[Piece]:
        state = self._state
        masks = MaskWorker(self._compute_threads)
        try:
            masks.start([state])  # the first mask, while the prompt is prefilled
            state.prefill()
            while True:
                masks.wait()
                piece = state.accept(state.sample())
                if piece or piece.logprobs:
                    yield piece
                if state.finished:
                    break
                masks.start([state])
                state.session.decode(state.pending_token)
                state.stepped()
        finally:
            masks.close()
        # The end of an answer is a turn boundary: a later turn may diverge right here.
        state.session.checkpoint()
        self.completion = state.completion()
